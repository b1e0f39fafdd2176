//go:build unix && !linux

package routes

import "syscall"

func sysWrite(fd int, b []byte) (int, error) { return syscall.Write(fd, b) }
