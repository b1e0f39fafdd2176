package main

import (
	"slices"
	"testing"
)

func TestResumeCheck(t *testing.T) {
	recs := func(ids ...int64) []receipt {
		out := make([]receipt, len(ids))
		for i, id := range ids {
			out[i] = receipt{id: id}
		}
		return out
	}
	want := []int64{11, 12, 14, 15}
	tests := []struct {
		name                          string
		before, after                 []receipt
		missing, repeated, disordered int
	}{
		{"resumed where it left off", recs(11, 12), recs(14, 15), 0, 0, 0},
		{"dropped before any", nil, recs(11, 12, 14, 15), 0, 0, 0},
		{"a join between is not a message of ours", recs(11, 12, 13), recs(14, 15), 0, 0, 0},
		{"the backlog repeats the last one", recs(11, 12), recs(12, 14, 15), 0, 1, 0},
		{"the backlog starts late", recs(11), recs(14, 15), 1, 0, 0},
		{"the new stream got nothing", recs(11, 12), nil, 2, 0, 0},
		{"an older message comes after a newer", recs(11, 14), recs(12, 15), 0, 0, 1},
		{"a stranger's id twice", recs(11, 12, 13), recs(13, 14, 15), 0, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, r, d := resumeCheck(tc.before, tc.after, want)
			if m != tc.missing || r != tc.repeated || d != tc.disordered {
				t.Errorf("missing %d, repeated %d, out of order %d; want %d, %d, %d", m, r, d, tc.missing, tc.repeated, tc.disordered)
			}
		})
	}
}

func TestStoredByRoom(t *testing.T) {
	cfg := &config{room: "r", rooms: 2}
	posts := []postRec{
		{seq: 0, id: 9},     // r-0, at the base: stored before the run
		{seq: 1, id: 21},    // r-1
		{seq: 2, id: 23},    // r-0
		{seq: 3, err: true}, // refused
		{seq: 5, id: 22},    // r-1, answered before seq 1's
		{seq: 6, id: 30},    // r-0
	}
	got := storedByRoom(posts, cfg, map[string]int64{"r-0": 10, "r-1": 20})
	if w := []int64{23, 30}; !slices.Equal(got["r-0"], w) {
		t.Errorf("r-0: %v, want %v", got["r-0"], w)
	}
	if w := []int64{21, 22}; !slices.Equal(got["r-1"], w) {
		t.Errorf("r-1: %v, want %v", got["r-1"], w)
	}
	if n := countUpTo(got["r-1"], 21); n != 1 {
		t.Errorf("countUpTo 21: %d, want 1", n)
	}
	if n := countUpTo(got["r-0"], 25); n != 1 {
		t.Errorf("countUpTo 25: %d, want 1", n)
	}
}
