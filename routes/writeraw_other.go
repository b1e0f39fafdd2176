//go:build !unix

package routes

import (
	"errors"
	"net"
)

// Without unix write(2), every detached stream writes from a goroutine of
// its own (pump).
func descriptorOf(net.Conn) int { return -1 }

func writeNow(int, []byte) (int, error) { return 0, errors.ErrUnsupported }

func limitSendBuffer(int) {}
