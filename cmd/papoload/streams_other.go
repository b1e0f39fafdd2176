//go:build !linux

package main

// newStreamReader gives each stream a goroutine of its own: the epoll
// loops of the Linux reader have no portable counterpart here.
func newStreamReader(*streamSet) streamReader { return goroutineReader{} }
