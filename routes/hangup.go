package routes

import "net"

// readHangup notices a client hanging up by reading from its connection in
// a goroutine of its own: the portable way, used where epoll is not. The
// goroutine ends when the connection is closed.
func readHangup(conn net.Conn, gone func()) func() {
	go func() {
		var b [512]byte
		for {
			if _, err := conn.Read(b[:]); err != nil {
				gone()
				return
			}
		}
	}()
	return func() {}
}
