package cloud

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
)

// TestBacklogBackpressure: when every client of a room falls behind (none
// reads for a while), Deliver waits for the queues to drain instead of
// filling them up to QueueLength and closing every connection as a slow
// consumer. Once the clients read again, everything accepted arrives, in
// order, and Deliver goes on.
func TestBacklogBackpressure(t *testing.T) {
	const (
		clients = 80
		qlen    = 16
		room    = "live://behind"
	)
	s, err := New(Config{Authenticator: DevAuthenticator(), QueueLength: qlen, WriteTimeout: time.Minute})
	require.NoError(t, err)
	addr := serveTCPForTest(t, s)

	conns, readers := dialRoom(t, addr, clients, room, net.Dialer{Control: smallReceiveWindow}, 30*time.Second)

	// Push until Deliver waits: the clients read nothing meanwhile.
	body := strings.Repeat("x", 32<<10)
	accepted := 0
	for ; ; accepted++ {
		require.Less(t, accepted, 2000, "Deliver never waited for the backlog")
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		err := s.Deliver(ctx, []*imcloud.Message{{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom,
			Room: room, Op: 1000, Body: numbered(accepted, body)}})
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		require.NoError(t, err)
	}
	st := s.Stats()
	assert.Positive(t, st.Backpressured)
	assert.Zero(t, st.SlowDisconnects, "clients closed as slow consumers")
	assert.EqualValues(t, clients, st.Sessions)
	assert.LessOrEqual(t, st.QueuedBytes, int64(clients*backlogConnCap))

	// The clients read again: everything accepted arrives in order, and
	// one more push goes through once the queues drained.
	var wg sync.WaitGroup
	for _, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := readNumbered(r, 0, accepted+1); err != nil {
				t.Error(err)
			}
		}()
	}
	require.NoError(t, s.Deliver(context.Background(), []*imcloud.Message{{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom,
		Room: room, Op: 1000, Body: numbered(accepted, body)}}))
	wg.Wait()
	assert.Zero(t, s.Stats().SlowDisconnects)
	require.Eventually(t, func() bool { return s.Stats().Writers == 0 }, 5*time.Second, 5*time.Millisecond)
	assert.Zero(t, s.Stats().QueuedBytes, "the backlog count drifted")

	// Clients that go away with pushes still queued take their bytes
	// out of the count.
	for i := 0; i < 3; i++ {
		require.NoError(t, s.Deliver(context.Background(), []*imcloud.Message{{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom,
			Room: room, Op: 1000, Body: []byte(body)}}))
	}
	for _, nc := range conns {
		nc.Close()
	}
	require.Eventually(t, func() bool { st := s.Stats(); return st.Sessions == 0 && st.Writers == 0 }, 10*time.Second, 5*time.Millisecond)
	assert.Zero(t, s.Stats().QueuedBytes, "closed connections left bytes in the backlog count")
}
