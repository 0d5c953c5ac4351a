package cloud

import (
	"bufio"
	"context"
	"fmt"
	"net"
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

// dialRoom connects n plain TCP clients to addr with d, authenticated as
// keys k0..k<n-1> in room, reads their AuthReplies, and closes them when
// the test ends. Reads after that time out after timeout.
func dialRoom(t *testing.T, addr string, n int, room string, d net.Dialer, timeout time.Duration) ([]net.Conn, []*bufio.Reader) {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	readers := make([]*bufio.Reader, 0, n)
	for i := 0; i < n; i++ {
		nc, err := d.Dial("tcp", addr)
		require.NoError(t, err)
		t.Cleanup(func() { _ = nc.Close() })
		br := writeAuth(t, nc, fmt.Sprintf("k%d", i), room, timeout)
		var f protocol.Frame
		require.NoError(t, protocol.ReadFrame(br, &f, 1<<20))
		require.Equal(t, protocol.OpAuthReply, f.Op)
		conns, readers = append(conns, nc), append(readers, br)
	}
	return conns, readers
}

// readNumbered reads pushes from..to-1 from br, in order: each body starts
// with its number as six digits (numbered).
func readNumbered(br *bufio.Reader, from, to int) error {
	var f protocol.Frame
	for want := from; want < to; want++ {
		if err := protocol.ReadFrame(br, &f, 1<<20); err != nil {
			return fmt.Errorf("push %d: %w", want, err)
		}
		if len(f.Body) < 6 || string(f.Body[:6]) != fmt.Sprintf("%06d", want) {
			return fmt.Errorf("push %d arrived as %.6q", want, f.Body)
		}
	}
	return nil
}

// numbered is the body of push i for readNumbered, padded with pad.
func numbered(i int, pad string) []byte { return []byte(fmt.Sprintf("%06d", i) + pad) }
