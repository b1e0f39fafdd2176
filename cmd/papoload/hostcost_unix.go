//go:build unix

package main

import (
	"syscall"
	"time"
)

func getppid() { syscall.Getppid() }

// timePageFaults maps fresh anonymous memory and writes one byte to each
// page: every write is a page fault that the kernel answers with a zeroed
// page.
func timePageFaults() time.Duration {
	const pages = 1024
	size := pages * syscall.Getpagesize()
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return 0
	}
	defer syscall.Munmap(b)
	t := time.Now()
	for i := 0; i < size; i += syscall.Getpagesize() {
		b[i] = 1
	}
	return time.Since(t) / pages
}
