package job

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/stretchr/testify/require"
)

func TestLinkClientDeliverPipelined(t *testing.T) {
	n := startTestNode(t, "a", "s3cret")
	ctx := context.Background()
	c, err := DialLink(ctx, n.addr, "s3cret", LinkOptions{})
	require.NoError(t, err)
	defer c.Close()
	require.True(t, c.Connected())

	// Many concurrent callers share one connection; every call is acked.
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				require.NoError(t, c.Deliver(ctx, []*imcloud.Message{keysMsg("a", fmt.Sprint(g, "-", i))}))
			}
		}()
	}
	wg.Wait()
	got := n.messages()
	require.Len(t, got, 400)
	require.Equal(t, 1, n.hellos, "one connection for all requests")
	// Per caller, order is kept (each waited for its previous ack).
	next := map[string]int{}
	for _, m := range got {
		var g, i int
		_, err := fmt.Sscanf(string(m.Body), "%d-%d", &g, &i)
		require.NoError(t, err)
		require.Equal(t, next[fmt.Sprint(g)], i)
		next[fmt.Sprint(g)]++
	}
	require.NoError(t, c.Deliver(ctx, nil), "nothing to deliver is fine")
}

func TestLinkClientRefused(t *testing.T) {
	n := startTestNode(t, "a", "right")
	_, err := DialLink(context.Background(), n.addr, "wrong", LinkOptions{})
	require.ErrorIs(t, err, ErrLinkRefused)
	require.Contains(t, err.Error(), "secret")
}

func TestLinkClientNotAServer(t *testing.T) {
	// A listener that answers garbage to the hello.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
			c.Close()
		}
	}()
	_, err = DialLink(context.Background(), ln.Addr().String(), "s", LinkOptions{DialTimeout: time.Second})
	require.Error(t, err)
}

func TestLinkClientReconnects(t *testing.T) {
	n := startTestNode(t, "a", "s")
	ctx := context.Background()
	c, err := DialLink(ctx, n.addr, "s", LinkOptions{ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Deliver(ctx, []*imcloud.Message{keysMsg("a", "1")}))

	n.stop()
	// The broken connection is noticed, and dialing a stopped node fails.
	require.Eventually(t, func() bool {
		return c.Deliver(ctx, []*imcloud.Message{keysMsg("a", "x")}) != nil && !c.Connected()
	}, 5*time.Second, 10*time.Millisecond)
	n.restart(t)
	require.Eventually(t, func() bool {
		return c.Deliver(ctx, []*imcloud.Message{keysMsg("a", "2")}) == nil
	}, 5*time.Second, 10*time.Millisecond)
	require.Equal(t, []string{"1", "2"}, bodies(n.messages(), nil))
	require.Equal(t, 2, n.hellos)
}

func TestLinkClientRejectedAndTimeout(t *testing.T) {
	n := startTestNode(t, "a", "s")
	ctx := context.Background()
	rtt := imcloud.NewLatencyHistogram()
	c, err := DialLink(ctx, n.addr, "s", LinkOptions{AckTimeout: 200 * time.Millisecond, RoundTrip: rtt})
	require.NoError(t, err)
	defer c.Close()

	n.set(func(n *testNode) { n.reject = "no room" })
	err = c.Deliver(ctx, []*imcloud.Message{keysMsg("a", "1")})
	require.ErrorIs(t, err, ErrRejected)
	require.Contains(t, err.Error(), "no room")
	require.True(t, c.Connected(), "a rejection keeps the connection")
	require.EqualValues(t, 1, rtt.Snapshot().Count, "a rejection is a round trip")

	n.set(func(n *testNode) { n.reject = ""; n.silent = true })
	err = c.Deliver(ctx, []*imcloud.Message{keysMsg("a", "2")})
	require.ErrorIs(t, err, ErrAckTimeout)
	require.False(t, c.Connected(), "a node that does not ack is disconnected")
	require.EqualValues(t, 1, rtt.Snapshot().Count, "a timeout is no round trip")

	// A caller's context ends the wait without breaking the connection.
	n.set(func(n *testNode) { n.silent = false; n.ackDelay = 100 * time.Millisecond })
	require.NoError(t, c.Deliver(ctx, []*imcloud.Message{keysMsg("a", "3")}))
	s := rtt.Snapshot()
	require.EqualValues(t, 2, s.Count)
	require.GreaterOrEqual(t, s.Sum, 0.1, "the round trip includes the node's time to ack")
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, c.Deliver(short, []*imcloud.Message{keysMsg("a", "4")}), context.DeadlineExceeded)
	require.True(t, c.Connected())
	require.EqualValues(t, 2, rtt.Snapshot().Count, "an abandoned wait is no round trip")
}

func TestLinkClientClose(t *testing.T) {
	n := startTestNode(t, "a", "s")
	ctx := context.Background()
	c, err := DialLink(ctx, n.addr, "s", LinkOptions{})
	require.NoError(t, err)
	n.set(func(n *testNode) { n.ackDelay = time.Second })
	errc := make(chan error, 1)
	go func() { errc <- c.Deliver(ctx, []*imcloud.Message{keysMsg("a", "1")}) }()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "idempotent")
	require.ErrorIs(t, <-errc, ErrLinkClosed, "requests in flight fail")
	require.ErrorIs(t, c.Deliver(ctx, []*imcloud.Message{keysMsg("a", "2")}), ErrLinkClosed)
}

func TestLinkClientInFlightBound(t *testing.T) {
	n := startTestNode(t, "a", "s")
	n.set(func(n *testNode) { n.ackDelay = 100 * time.Millisecond })
	ctx := context.Background()
	c, err := DialLink(ctx, n.addr, "s", LinkOptions{MaxInFlight: 2})
	require.NoError(t, err)
	defer c.Close()
	go c.Deliver(ctx, []*imcloud.Message{keysMsg("a", "1"), keysMsg("a", "2")})
	time.Sleep(20 * time.Millisecond)
	// The bound is reached: a further call waits for room, here until
	// its context ends.
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, c.Deliver(short, []*imcloud.Message{keysMsg("a", "3")}), context.DeadlineExceeded)
	// A batch larger than the bound still goes, alone.
	require.NoError(t, c.Deliver(ctx, []*imcloud.Message{keysMsg("a", "4"), keysMsg("a", "5"), keysMsg("a", "6")}))
}

func TestLinkClientUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	c := NewLinkClient(addr, "s", LinkOptions{ReconnectMin: 20 * time.Millisecond})
	defer c.Close()
	ctx := context.Background()
	require.Error(t, c.Deliver(ctx, []*imcloud.Message{keysMsg("a", "1")}))
	start := time.Now()
	require.Error(t, c.Deliver(ctx, []*imcloud.Message{keysMsg("a", "1")}))
	require.GreaterOrEqual(t, time.Since(start), 15*time.Millisecond, "redials back off")
}

// A caller whose ctx ends while the client connects gets ctx's error, and
// the node is not taken to have failed: the next call dials at once,
// without backoff.
func TestLinkClientDialCancelled(t *testing.T) {
	n := startTestNode(t, "a", "s")
	// The first dial reaches a listener that never answers the hello.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer mute.Close()
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	var dials atomic.Int32
	c := NewLinkClient(n.addr, "s", LinkOptions{ReconnectMin: time.Minute, ReconnectMax: time.Minute,
		Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			if dials.Add(1) == 1 {
				addr = mute.Addr().String()
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}})
	defer c.Close()

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	require.ErrorIs(t, c.Deliver(ctx, []*imcloud.Message{keysMsg("a", "1")}), context.Canceled)

	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Deliver(ctx, []*imcloud.Message{keysMsg("a", "2")}), "no backoff after a caller gave up")
	require.Equal(t, []string{"2"}, bodies(n.messages(), nil))
}
