package routes

import (
	"context"
	"net"
)

// Listen opens papo's TCP listener on addr. Connections get TCP keep-alive
// as net.Listen gives it (15 s idle, a probe every 15 s, 9 probes), so a
// client that vanished without a word is noticed in minutes even on an
// idle stream. On Linux the options are set once, on the listening socket,
// and every accepted socket inherits them: net.Listen sets them with four
// system calls per accepted connection, 7 % of the server's CPU while
// thousands of streams connect at once.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	return listenConfig().Listen(ctx, "tcp", addr)
}
