package main

import (
	"bufio"
	"runtime"
	"strings"
	"testing"
)

func TestParseCPUInfo(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"x86, first CPU only", "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\ncpu MHz\t\t: 2596.000\ncache size\t: 1024 KB\n\nprocessor\t: 1\nmodel name\t: Other\ncpu MHz\t\t: 1.000\n", "AMD EPYC, 2596 MHz, 1024 KB cache"},
		{"a fractional clock", "model name\t: AMD EPYC\ncpu MHz\t\t: 2096.004\n", "AMD EPYC, 2096.004 MHz"},
		{"no clock or cache (arm64)", "processor\t: 0\nBogoMIPS\t: 50.00\nmodel name\t: Neoverse\n", "Neoverse"},
		{"nothing known", "processor\t: 0\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseCPUInfo(bufio.NewScanner(strings.NewReader(tc.in))); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// The probe's figures are what a reader compares hosts by: they must be
// measured, not zero, and within what any machine could charge.
func TestProbeHostMeasuresTheMachine(t *testing.T) {
	c := probeHost()
	if c.syscall <= 0 || c.syscall > 1e6 {
		t.Errorf("a system call measured %v", c.syscall)
	}
	if (c.pageFault <= 0 && runtime.GOOS != "windows") || c.pageFault > 1e7 {
		t.Errorf("a page fault measured %v", c.pageFault)
	}
	line := machineLine()
	for _, want := range []string{"machine: ", "CPUs; a system call ", " µs, a page fault ", "load tool: GOMAXPROCS="} {
		if !strings.Contains(line, want) {
			t.Errorf("machine line %q lacks %q", line, want)
		}
	}
}
