//go:build unix

package main

import (
	"syscall"
	"time"
)

// selfCPU is the load tool's own CPU time, to show what it took from the
// machine it shares with the server.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
