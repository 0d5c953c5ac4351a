package cloud

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/link"
	"github.com/imcloud/imcloud/protocol"
)

// pipeSession registers a connection for key in room whose client end is
// returned and never read: the AuthReply's write blocks on the pipe, so
// everything pushed afterwards stays queued and counts in the backlog.
func pipeSession(t *testing.T, s *Server, key, room string) net.Conn {
	t.Helper()
	srvEnd, cliEnd := net.Pipe()
	t.Cleanup(func() { _ = cliEnd.Close() })
	c := newConn(s, srvEnd, false)
	c.key, c.room, c.gen = key, room, s.gen.Add(1)
	acc := []int32{}
	c.accepts.Store(&acc)
	c.b = s.bs.of(key)
	c.b.put(c, outItem{b: protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerGoim, Op: protocol.OpAuthReply}), kind: itemFrame})
	return cliEnd
}

// TestLinkAcksAcceptedBeforeBacklogWait: job pipelines link requests, so
// the next one is often read already when one is acknowledged, and the
// ack stays buffered until that next one is handled. When the request
// handled first fills the node's backlog, the next one waits in Deliver
// for the sockets to drain; the ack of the one accepted must not wait with
// it (an ack never waits for sockets to drain, and job gives up on a link
// after AckTimeout).
func TestLinkAcksAcceptedBeforeBacklogWait(t *testing.T) {
	const (
		sessions = 20
		room     = "live://stuck"
	)
	s, err := New(Config{Authenticator: DevAuthenticator(), InsecureLink: true, WriteTimeout: time.Minute})
	require.NoError(t, err)
	var clients []net.Conn
	for i := 0; i < sessions; i++ {
		clients = append(clients, pipeSession(t, s, fmt.Sprintf("k%d", i), room))
	}
	// Every writer is blocked writing its AuthReply; nothing is queued.
	require.Eventually(t, func() bool { st := s.Stats(); return st.Writers == sessions && st.QueuedBytes == 0 },
		5*time.Second, time.Millisecond)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan struct{})
	go func() { defer close(served); _ = s.ServeLink(ln) }()
	t.Cleanup(func() {
		for _, c := range clients {
			_ = c.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
		<-served
	})

	nc, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer nc.Close()
	br := bufio.NewReader(nc)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = link.Connect(br, nc, "", "review", link.Version)
	require.NoError(t, err)
	var f protocol.Frame

	// Two pipelined requests in one write: the first puts 60 KiB on each
	// of the 20 queues (over the 1 MiB limit), the second must wait.
	big := &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Room: room, Op: 1000,
		Body: []byte(strings.Repeat("x", 60<<10))}
	small := &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Room: room, Op: 1000, Body: []byte("y")}
	reqs := protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerGoim, Op: link.OpDeliver, Seq: 1,
		Body: link.AppendMessages(nil, []*imcloud.Message{big})})
	reqs = protocol.AppendFrame(reqs, &protocol.Frame{Ver: protocol.VerGoim, Op: link.OpDeliver, Seq: 2,
		Body: link.AppendMessages(nil, []*imcloud.Message{small})})
	_, err = nc.Write(reqs)
	require.NoError(t, err)

	require.Eventually(t, func() bool { return s.Stats().Backpressured > 0 }, 5*time.Second, time.Millisecond,
		"the second request never waited for the backlog")
	assert.Greater(t, s.Stats().QueuedBytes, s.backlogLimit())

	_ = nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	require.NoError(t, protocol.ReadFrame(br, &f, 0), "the accepted request's ack waited for the backlog")
	assert.Equal(t, link.OpAck, f.Op)
	assert.EqualValues(t, 1, f.Seq)
	assert.Empty(t, f.Body)

	// The clients go away: their queues are dropped, the second request
	// goes through and the backlog count returns to zero.
	for _, c := range clients {
		_ = c.Close()
	}
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	require.NoError(t, protocol.ReadFrame(br, &f, 0))
	assert.Equal(t, link.OpAck, f.Op)
	assert.EqualValues(t, 2, f.Seq)
	require.Eventually(t, func() bool { st := s.Stats(); return st.Writers == 0 && st.QueuedBytes == 0 },
		5*time.Second, time.Millisecond)
}
