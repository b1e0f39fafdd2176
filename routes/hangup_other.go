//go:build !linux

package routes

import (
	"log/slog"
	"net"
)

// hangupWatcher, where there is no epoll, reads each connection in a
// goroutine of its own.
type hangupWatcher struct{}

func newHangupWatcher(*slog.Logger) *hangupWatcher { return &hangupWatcher{} }

func (*hangupWatcher) watch(conn net.Conn, gone func()) func() { return readHangup(conn, gone) }

func (*hangupWatcher) Close() {}
