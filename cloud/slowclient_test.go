package cloud_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
)

// TestFanoutClientNeverReads: in a room fan-out over real TCP, one client
// that never reads fills its socket buffer; the shared batch writer hands
// the rest to a goroutine of that connection's own and goes on, so every
// other client of the room receives every push long before WriteTimeout,
// and the stuck one is dropped when WriteTimeout passes.
func TestFanoutClientNeverReads(t *testing.T) {
	const writeTimeout = 30 * time.Second
	n := startNode(t, cloud.Config{WriteTimeout: writeTimeout, Buckets: 1})
	const room = "live://stuck"
	const readers = 8
	stuck := dialSmallWindow(t, n.tcpAddr)
	stuck.auth(1, goimAuth(1, "stuck", room))
	clients := make([]*goimClient, readers)
	for i := range clients {
		clients[i] = dialRaw(t, n.tcpAddr, false)
		clients[i].auth(1, goimAuth(int64(i+2), fmt.Sprintf("reader-%d", i), room))
	}
	// 4 MiB in 256 pushes: far more than the stuck client's small receive
	// window and the server's send buffer hold.
	const pushes = 256
	body := strings.Repeat("x", 16<<10)
	start := time.Now()
	done := make(chan error, readers)
	for _, c := range clients {
		go func(c *goimClient) {
			for i := 0; i < pushes; i++ {
				f, err := c.next(writeTimeout / 2)
				if err != nil {
					done <- fmt.Errorf("push %d: %w", i, err)
					return
				}
				if want := fmt.Sprintf("%08d", i); f.op != 1000 || len(f.body) != len(body)+8 || string(f.body[:8]) != want {
					done <- fmt.Errorf("push %d: op %d, %d bytes, %.8q", i, f.op, len(f.body), f.body)
					return
				}
			}
			done <- nil
		}(c)
	}
	for i := 0; i < pushes; i++ {
		deliver(t, n.srv, roomMsg(room, 1000, fmt.Sprintf("%08d", i)+body))
	}
	for range clients {
		require.NoError(t, <-done)
	}
	require.Less(t, time.Since(start), writeTimeout/2, "the readers waited on the stuck client's socket")
	st := n.srv.Stats()
	require.Zero(t, st.SlowDisconnects, "the stuck client is still inside WriteTimeout")
	require.GreaterOrEqual(t, st.Writers, int64(1), "the stuck client's write waits on its own goroutine")
	// The stuck client's socket is closed by the server (here: by the
	// client itself, ending the test without waiting WriteTimeout); the
	// blocked writer ends and nothing is left running.
	_ = stuck.nc.Close()
	waitFor(t, "writers to finish", func() bool { return n.srv.Stats().Writers == 0 })
}

// dialSmallWindow is dialRaw over TCP with a small receive buffer, so a
// client that does not read fills its window quickly.
func dialSmallWindow(t *testing.T, addr string) *goimClient {
	t.Helper()
	d := net.Dialer{Control: cloud.SmallReceiveWindow}
	nc, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	return &goimClient{t: t, nc: nc, br: newReader(nc)}
}

// TestFanoutStuckTLSBehindPlainTCP: a room fan-out batch holds a plain TCP
// connection (plain WebSocket through ServeHTTP) and, after it, a TLS
// connection that never reads. Once the TLS socket is full its write
// blocks (until WriteTimeout); the batch must not keep holding the plain
// connection's writer meanwhile. Pushes go one at a time, each after the
// healthy client received the one before, so the healthy client's queue
// never fills on its own: it must get every push, and the stuck client,
// whose queue does fill, is the only one dropped.
func TestFanoutStuckTLSBehindPlainTCP(t *testing.T) {
	const writeTimeout = 20 * time.Second
	cert, pool := selfSigned(t)
	n := startNode(t, cloud.Config{
		TLS:          &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		WriteTimeout: writeTimeout,
		QueueLength:  32,
		Buckets:      1,
	})
	hs := httptest.NewServer(n.srv) // plain HTTP: raw TCP under the WebSocket
	t.Cleanup(hs.Close)
	const room = "live://mixed"
	// Joined first, so it comes first in the room and in the batch.
	healthy := dialRaw(t, strings.TrimPrefix(hs.URL, "http://"), true)
	healthy.auth(1, goimAuth(1, "healthy", room))
	sc := dialSmallWindow(t, n.tcpAddr)
	tc := tls.Client(sc.nc, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	stuck := &goimClient{t: t, nc: tc, br: bufio.NewReader(tc)}
	stuck.auth(1, goimAuth(2, "stuck", room))

	const pushes = 256 // 4 MiB: far more than the stuck socket holds
	body := strings.Repeat("x", 16<<10)
	for i := 0; i < pushes; i++ {
		want := fmt.Sprintf("%08d", i)
		deliver(t, n.srv, roomMsg(room, 1000, want+body))
		f, err := healthy.next(writeTimeout / 2)
		require.NoError(t, err, "push %d: the healthy client waited on the stuck one", i)
		require.Equal(t, int32(1000), f.op)
		require.Equal(t, len(body)+8, len(f.body))
		require.Equal(t, want, string(f.body[:8]))
	}
	// The stuck client's queue overflowed: it, and only it, was dropped.
	waitFor(t, "the stuck client dropped", func() bool { return n.srv.Stats().Sessions == 1 })
	require.Equal(t, uint64(1), n.srv.Stats().SlowDisconnects)
	require.NoError(t, healthy.send(1, 2, 7, nil))
	require.Equal(t, int32(7), healthy.nextOp(3).seq, "the healthy client is still connected")
	waitFor(t, "writers to finish", func() bool { return n.srv.Stats().Writers == 0 })
}
