package cloud

import (
	"bufio"
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/protocol"
)

// serveTCPForTest serves s's TCP clients on a loopback listener until the
// test ends, then shuts s down; it returns the listener's address.
func serveTCPForTest(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan struct{})
	go func() { defer close(served); _ = s.ServeTCP(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
		<-served
	})
	return ln.Addr().String()
}

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

// SmallReceiveWindow is smallReceiveWindow for package cloud_test.
var SmallReceiveWindow = smallReceiveWindow

// writeAuth sends a goim v2 auth frame for key in room on nc, as a plain
// TCP client does first, and returns a reader for the server's answers
// with a read deadline of timeout.
func writeAuth(t *testing.T, nc net.Conn, key, room string, timeout time.Duration) *bufio.Reader {
	t.Helper()
	body := `{"mid":1,"key":"` + key + `","room_id":"` + room + `","platform":"web"}`
	_, err := nc.Write(protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerGoim, Op: protocol.OpAuth, Seq: 1, Body: []byte(body)}))
	require.NoError(t, err)
	_ = nc.SetReadDeadline(time.Now().Add(timeout))
	return bufio.NewReader(nc)
}
