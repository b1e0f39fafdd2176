package main

import "testing"

func TestLastDeliveries(t *testing.T) {
	const ms = int64(1e6)
	tests := []struct {
		name  string
		posts []postRec
		byMsg map[int64][]int64
		want  string
	}{
		{"nothing posted", nil, nil, ""},
		{
			"in posting order, not by id",
			[]postRec{{id: 9}, {id: 4}, {id: 7}},
			map[int64][]int64{4: {2 * ms, 31500 * 1000}, 7: {12 * ms}, 9: {40 * ms, 5 * ms}},
			"40.0 31.5 12.0",
		},
		{
			"a post refused or never delivered is left out",
			[]postRec{{id: 0, err: true}, {id: 3}, {id: 5}},
			map[int64][]int64{3: {1250 * 1000}},
			"1.2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lastDeliveries(tt.posts, tt.byMsg); got != tt.want {
				t.Errorf("lastDeliveries = %q, want %q", got, tt.want)
			}
		})
	}
}
