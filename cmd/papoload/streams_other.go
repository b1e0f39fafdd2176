//go:build !linux

package main

import "syscall"

// newStreamReader gives each stream a goroutine of its own: the epoll
// loops of the Linux reader have no portable counterpart here.
func newStreamReader(*streamSet) streamReader { return goroutineReader{} }

// dialControl leaves the socket as it is: IP_BIND_ADDRESS_NO_PORT is
// Linux's.
func dialControl(string, string, syscall.RawConn) error { return nil }
