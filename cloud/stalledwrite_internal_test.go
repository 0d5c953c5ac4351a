package cloud

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
)

// blockConn is a socket whose writes block until release is closed;
// wrote receives each write's size when it does not block.
type blockConn struct {
	discardConn
	block   atomic.Bool
	release chan struct{}
	wrote   chan int
}

func (b *blockConn) Write(p []byte) (int, error) {
	if b.block.Load() {
		<-b.release
	}
	b.wrote <- len(p)
	return len(p), nil
}

// TestFanoutStalledWrite: a room fan-out to connections whose writes may
// block (no non-blocking path: TLS, wrapped sockets) reaches every
// connection while some of them block, long before WriteTimeout: one
// blocked socket holds up no other connection's write.
func TestFanoutStalledWrite(t *testing.T) {
	s, err := New(Config{Authenticator: DevAuthenticator(), Buckets: 1})
	require.NoError(t, err)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, s.Shutdown(ctx))
	}()
	const (
		n      = 96
		stride = 32 // every stride-th connection blocks
	)
	release := make(chan struct{})
	wrote := make(chan int, 4*n)
	var heads []*blockConn
	for i := 0; i < n; i++ {
		bc := &blockConn{release: release, wrote: wrote}
		c := newConn(s, bc, false)
		c.mid, c.key, c.room = int64(i), fmt.Sprintf("k%d", i), "live://stall"
		acc := []int32{}
		c.accepts.Store(&acc)
		c.b = s.bs.of(c.key)
		c.b.put(c, outItem{b: []byte("x"), kind: itemFrame})
		if i%stride == 0 {
			heads = append(heads, bc)
		}
	}
	for i := 0; i < n; i++ {
		<-wrote // the auth replies
	}
	waitWriters(s)
	for _, bc := range heads {
		bc.block.Store(true)
	}
	require.NoError(t, s.Deliver(context.Background(), []*imcloud.Message{{
		ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Room: "live://stall", Op: 1000, Body: []byte("hi")}}))
	healthy := n - len(heads)
	deadline := time.After(5 * time.Second) // WriteTimeout is 10 s
	for i := 0; i < healthy; i++ {
		select {
		case <-wrote:
		case <-deadline:
			t.Fatalf("only %d of %d connections written while %d writes block", i, healthy, len(heads))
		}
	}
	close(release)
	for range heads {
		<-wrote
	}
	waitWriters(s)
}
