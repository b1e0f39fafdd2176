//go:build !unix

package routes

import (
	"errors"
	"net"
	"syscall"
)

// Without unix write(2), every detached stream writes from a goroutine of
// its own (pump).
func rawConnOf(net.Conn) syscall.RawConn { return nil }

func (*rawWriter) write(syscall.RawConn, []byte) (int, error) {
	return 0, errors.ErrUnsupported
}

func limitSendBuffer(syscall.RawConn) {}
