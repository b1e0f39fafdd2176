//go:build unix

package routes

import (
	"errors"
	"net"
	"syscall"
)

// rawConnOf is conn's descriptor for non-blocking writes, or nil.
func rawConnOf(conn net.Conn) syscall.RawConn {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// streamSendBuffer caps the kernel's send buffer of a detached stream.
// Left to autotuning it grows to megabytes for a client that stops
// reading, which hides a stuck client from the hub's queue for long and
// lets thousands of them pin gigabytes of kernel memory. 64 KiB (the
// kernel doubles it) holds many seconds of any room's traffic.
const streamSendBuffer = 64 << 10

// limitSendBuffer applies streamSendBuffer to raw's socket.
func limitSendBuffer(raw syscall.RawConn) {
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, streamSendBuffer)
	})
}

// write writes what of b the socket takes now, and never waits: a short
// count means the socket buffer is full.
func (w *rawWriter) write(raw syscall.RawConn, b []byte) (int, error) {
	if w.call == nil {
		w.call = w.writeFd
	}
	w.b, w.n, w.err = b, 0, nil
	err := raw.Write(w.call)
	n, werr := w.n, w.err
	w.b, w.err = nil, nil // nothing kept past the write
	if err != nil {
		return n, err
	}
	return n, werr
}

func (w *rawWriter) writeFd(fd uintptr) bool {
	for w.n < len(w.b) {
		m, err := sysWrite(int(fd), w.b[w.n:])
		if m > 0 {
			w.n += m
			continue
		}
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil && !errors.Is(err, syscall.EAGAIN) {
			w.err = err
		}
		break
	}
	return true
}
