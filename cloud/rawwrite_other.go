//go:build !linux

package cloud

import "net"

// newSockWriter returns nil off Linux: every connection is written by a
// goroutine of its own through net.Conn.Write with a deadline (the
// scheduler's blocking path).
func newSockWriter(net.Conn) sockWriter { return nil }
