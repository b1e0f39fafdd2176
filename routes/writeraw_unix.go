//go:build unix

package routes

import (
	"errors"
	"net"
	"syscall"
)

// descriptorOf is conn's socket descriptor for the writers' non-blocking
// writes, or -1 when it has none (TLS).
func descriptorOf(conn net.Conn) int {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return -1
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1
	}
	fd := -1
	if err := raw.Control(func(d uintptr) { fd = int(d) }); err != nil {
		return -1
	}
	return fd
}

// streamSendBuffer caps the kernel's send buffer of a detached stream.
// Left to autotuning it grows to megabytes for a client that stops
// reading, which hides a stuck client from the hub's queue for long and
// lets thousands of them pin gigabytes of kernel memory. 64 KiB (the
// kernel doubles it) holds many seconds of any room's traffic.
const streamSendBuffer = 64 << 10

// limitSendBuffer applies streamSendBuffer to the socket fd.
func limitSendBuffer(fd int) {
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, streamSendBuffer)
}

// writeNow writes what of b the socket fd takes now, and never waits: a
// short count means the socket buffer is full.
//
// It writes to the descriptor itself, not through RawConn.Write, whose
// lock on the descriptor and reset of the poller's state touched two more
// structures per stream (cache misses, in a fan-out to thousands) to guard
// against a close that cannot come: a detached stream's connection is
// closed only by end, which the holder of busy calls after its last write
// and without letting busy go.
func writeNow(fd int, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := sysWrite(fd, b[n:])
		if m > 0 {
			n += m
			continue
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil && !errors.Is(err, syscall.EAGAIN) {
			return n, err
		}
		break
	}
	return n, nil
}
