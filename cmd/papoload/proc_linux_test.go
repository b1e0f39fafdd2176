//go:build linux

package main

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestParseSchedstat(t *testing.T) {
	tests := []struct {
		line      string
		run, wait time.Duration
		wantErr   bool
	}{
		{"81834836 72291235 475\n", 81834836, 72291235, false},
		{"0 0 1", 0, 0, false},
		{"12345", 0, 0, true},
		{"", 0, 0, true},
		{"ten 20 3", 0, 0, true},
		{"-1 20 3", 0, 0, true},
	}
	for _, tt := range tests {
		run, wait, err := parseSchedstat(tt.line)
		if (err != nil) != tt.wantErr || run != tt.run || wait != tt.wait {
			t.Errorf("parseSchedstat(%q) = %v, %v, %v; want %v, %v, error %v", tt.line, run, wait, err, tt.run, tt.wait, tt.wantErr)
		}
	}
}

// The per-message CPU of a fan-out rests on schedTimes: over a stretch of
// work it must count what the kernel's own accounting of the process
// (getrusage) counts.
func TestSchedTimesCountsWhatTheProcessSpends(t *testing.T) {
	self := []int{os.Getpid()}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	run0, _, err := schedTimes(self)
	if err != nil {
		t.Fatal(err)
	}
	ru0 := cpu()
	x := 0
	for cpu()-ru0 < 100*time.Millisecond {
		for i := range 100000 {
			x += i
		}
	}
	run1, wait1, err := schedTimes(self)
	if err != nil {
		t.Fatal(err)
	}
	spent := cpu() - ru0
	if got := run1 - run0; got < spent*8/10 || got > spent*12/10+10*time.Millisecond {
		t.Errorf("schedTimes counted %v on a CPU while getrusage counted %v (x=%d)", got, spent, x)
	}
	if wait1 < 0 {
		t.Errorf("waiting %v", wait1)
	}
	if _, _, err := schedTimes([]int{1 << 30}); err == nil {
		t.Error("no error for a pid that does not exist")
	}
}
