//go:build !windows

package cloud

import "syscall"

// smallReceiveWindow is a net.Dialer Control giving the socket a 4 KB
// receive buffer, so a client that does not read fills its window (and
// the server's socket) quickly.
func smallReceiveWindow(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	if err != nil {
		return err
	}
	return serr
}
