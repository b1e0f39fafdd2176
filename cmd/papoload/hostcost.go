package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// hostCost is what this machine charges for the two things a papo server
// does most under load besides its own code: entering the kernel, and
// touching memory it has not touched before. Virtual machines differ here
// by an order of magnitude (a system call took 0.19 µs on one host of
// BENCHMARKS.md and 1.0 µs on another of the same nominal kind), and every
// figure the tool prints moves with them, so each run prints them first.
type hostCost struct {
	syscall   time.Duration // one getppid(2), the cheapest call there is
	pageFault time.Duration // the first write to a fresh anonymous page; 0 if unmeasured
}

// probeHost times a short burst of each, taking the best of a few rounds so
// that a neighbour's burst does not pass for the machine's cost.
func probeHost() hostCost {
	const calls, rounds = 20000, 5
	var c hostCost
	for range rounds {
		t := time.Now()
		for range calls {
			getppid()
		}
		if d := time.Since(t) / calls; c.syscall == 0 || d < c.syscall {
			c.syscall = d
		}
		if d := timePageFaults(); d > 0 && (c.pageFault == 0 || d < c.pageFault) {
			c.pageFault = d
		}
	}
	return c
}

func (c hostCost) String() string {
	s := fmt.Sprintf("a system call %.2f µs", micros(c.syscall))
	if c.pageFault > 0 {
		s += fmt.Sprintf(", a page fault %.2f µs", micros(c.pageFault))
	}
	return s
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// cpuModel is the CPU's name, clock and cache as /proc/cpuinfo gives them
// ("AMD EPYC, 2096 MHz, 1024 KB cache"), or "" where there is none.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	return parseCPUInfo(bufio.NewScanner(f))
}

func parseCPUInfo(sc *bufio.Scanner) string {
	fields := map[string]string{}
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			if len(fields) > 0 && strings.TrimSpace(sc.Text()) == "" {
				break // the first CPU's block is enough
			}
			continue
		}
		k = strings.TrimSpace(k)
		if _, seen := fields[k]; !seen {
			fields[k] = strings.TrimSpace(v)
		}
	}
	var parts []string
	if m := fields["model name"]; m != "" {
		parts = append(parts, m)
	}
	if mhz := fields["cpu MHz"]; mhz != "" {
		parts = append(parts, strings.TrimSuffix(strings.TrimRight(mhz, "0"), ".")+" MHz")
	}
	if cache := fields["cache size"]; cache != "" {
		parts = append(parts, cache+" cache")
	}
	return strings.Join(parts, ", ")
}

// machineLine describes the machine and the tool, printed before a run.
func machineLine() string {
	host := fmt.Sprintf("%d CPUs", runtime.NumCPU())
	if m := cpuModel(); m != "" {
		host = m + ", " + host
	}
	return fmt.Sprintf("machine: %s; %s\nload tool: GOMAXPROCS=%d, %s", host, probeHost(), runtime.GOMAXPROCS(0), runtime.Version())
}
