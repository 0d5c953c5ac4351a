package cloud

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/protocol"
)

// TestSlowWriteKeepsNoBuffer: when a scheduler writer finds the socket
// full, the rest goes to a goroutine of the connection's own (state
// blocking); once the client caught up and the connection is idle again,
// it holds no buffer (an idle connection is this struct and one
// goroutine, whatever it went through: up to maxWriteBytes each would add
// up over many connections).
func TestSlowWriteKeepsNoBuffer(t *testing.T) {
	s, err := New(Config{Authenticator: DevAuthenticator(), Buckets: 1})
	require.NoError(t, err)
	addr := serveTCPForTest(t, s)

	// A client with a small receive window that reads only when told.
	d := net.Dialer{Control: smallReceiveWindow}
	nc, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	defer nc.Close()
	const room = "live://slow"
	br := writeAuth(t, nc, "slow", room, 10*time.Second)
	var f protocol.Frame
	require.NoError(t, protocol.ReadFrame(br, &f, 1<<20))
	require.Equal(t, protocol.OpAuthReply, f.Op)
	c := s.bs.of("slow").get("slow")
	require.NotNil(t, c)
	require.NotNil(t, c.w, "plain TCP writes without waiting")

	// Pushes until the socket is full and a write was handed off (a
	// writer left running while the client does not read).
	body := strings.Repeat("x", 16<<10)
	pushes := 0
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Writers == 0 || pushes < 64 {
		require.True(t, time.Now().Before(deadline), "no write was ever left waiting")
		require.NoError(t, s.Deliver(context.Background(), []*imcloud.Message{{
			ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Room: room, Op: 1000, Body: []byte(fmt.Sprintf("%08d", pushes) + body)}}))
		pushes++
		time.Sleep(time.Millisecond)
	}
	for i := 0; i < pushes; i++ {
		require.NoError(t, protocol.ReadFrame(br, &f, 1<<20), "push %d", i)
		require.Equal(t, fmt.Sprintf("%08d", i), string(f.Body[:8]))
	}
	deadline = time.Now().Add(5 * time.Second)
	for s.Stats().Writers != 0 {
		require.True(t, time.Now().Before(deadline), "writers did not finish")
		time.Sleep(5 * time.Millisecond)
	}
	c.out.mu.Lock()
	state, queueCap := c.out.state, cap(c.out.items)
	c.out.mu.Unlock()
	require.Equal(t, qIdle, state)
	require.LessOrEqual(t, queueCap, keepQueueCap, "an idle connection keeps a large queue array")
	require.Zero(t, s.Stats().QueuedBytes, "the backlog count drifted")
}
