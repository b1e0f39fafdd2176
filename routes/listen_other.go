//go:build !linux

package routes

import "net"

// Elsewhere accepted sockets may not inherit keep-alive from the listener:
// net.Listen's own setup, per connection.
func listenConfig() *net.ListenConfig { return &net.ListenConfig{} }
