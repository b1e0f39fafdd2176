package routes

import (
	"syscall"
	"unsafe"
)

// sysWrite is write(2) without telling the scheduler. The descriptor is
// non-blocking, so the call returns within microseconds; announcing it as
// a syscall costs more than the write itself under fan-out: the runtime's
// monitor takes the writer's P away from it mid-write and starts another
// thread to run it, thousands of times a second.
func sysWrite(fd int, b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
