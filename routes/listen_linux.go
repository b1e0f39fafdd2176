package routes

import (
	"net"
	"syscall"
)

// Go's defaults for KeepAlive 0 (net.KeepAliveConfig), in seconds.
const (
	keepAliveIdle     = 15
	keepAliveInterval = 15
	keepAliveCount    = 9
)

func listenConfig() *net.ListenConfig {
	return &net.ListenConfig{
		KeepAlive: -1, // not per connection: inherited from the listener
		Control: func(_, _ string, c syscall.RawConn) error {
			var err error
			cerr := c.Control(func(fd uintptr) {
				for _, o := range []struct{ level, opt, value int }{
					{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, keepAliveIdle},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, keepAliveInterval},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepAliveCount},
				} {
					if err == nil {
						err = syscall.SetsockoptInt(int(fd), o.level, o.opt, o.value)
					}
				}
			})
			if cerr != nil {
				return cerr
			}
			return err
		},
	}
}
