//go:build !linux

package routes

import "net"

func watchHangup(conn net.Conn, gone func()) func() { return readHangup(conn, gone) }
