package cloud_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
)

// removeCounter is fakeStore counting its RemoveSessions calls: those
// that failed, and how many times each session's removal was written.
type removeCounter struct {
	*fakeStore
	mu      sync.Mutex
	failed  int
	written map[string]int
}

func newRemoveCounter() *removeCounter {
	return &removeCounter{fakeStore: newFakeStore(), written: map[string]int{}}
}

func (r *removeCounter) RemoveSessions(ctx context.Context, ss []imcloud.Session) error {
	err := r.fakeStore.RemoveSessions(ctx, ss)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.failed++
		return err
	}
	for _, s := range ss {
		r.written[s.Key]++
	}
	return nil
}

func (r *removeCounter) failures() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

// writtenOnce reports whether every key's removal was written, and none
// twice.
func (r *removeCounter) writtenOnce(keys []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		if n := r.written[k]; n != 1 {
			return fmt.Errorf("session %s: removal written %d times", k, n)
		}
	}
	return nil
}

// storedClients connects n clients and waits until the store holds
// their sessions.
func storedClients(t *testing.T, nd *node, st *removeCounter, n int) ([]*goimClient, []string) {
	t.Helper()
	cs, keys := make([]*goimClient, n), make([]string, n)
	for i := range cs {
		cs[i] = dialRaw(t, nd.tcpAddr, false)
		keys[i] = cs[i].auth(1, goimAuth(int64(i+1), "", "live://retry")).Key
	}
	waitFor(t, "every session stored", func() bool {
		for _, k := range keys {
			if _, ok := st.session(k); !ok {
				return false
			}
		}
		return true
	})
	return cs, keys
}

// TestStoreOutageRemovalsBackOff: clients disconnecting while the store
// is down do not each cost a failed store call: after a failed flush the
// removals wait for a backoff (at least 100 ms, growing) or the store's
// recovery, so the failed calls are bounded by the outage's duration, not
// by the disconnects. Every removal is written once the store is back,
// and none twice.
func TestStoreOutageRemovalsBackOff(t *testing.T) {
	t.Parallel()
	st := newRemoveCounter()
	nd := startNode(t, cloud.Config{Store: st, NodeID: "node-r", MaxConnsPerIP: -1, AcceptRate: -1})
	const N = 300
	cs, keys := storedClients(t, nd, st, N)

	st.setDown(true)
	start := time.Now()
	for _, c := range cs {
		_ = c.nc.Close()
	}
	waitFor(t, "every connection ended", func() bool { return nd.srv.Stats().Sessions == 0 })
	waitFor(t, "a removal failed", func() bool { return st.failures() > 0 })
	failed, took := st.failures(), time.Since(start)
	// Each failed flush is followed by a wait of at least 100 ms.
	limit := 2 + int(took/(100*time.Millisecond))
	assert.LessOrEqual(t, failed, limit, "failed RemoveSessions calls for %d disconnects in %v", N, took)
	t.Logf("%d disconnects with the store down: %d failed RemoveSessions calls in %v", N, failed, took)

	st.setDown(false)
	waitFor(t, "every removal written once the store is back", func() bool { return st.writtenOnce(keys) == nil })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, nd.srv.Shutdown(ctx))
	assert.NoError(t, st.writtenOnce(keys))
}

// TestDrainStoreDownRemovalsWaitForFinal: with the store down, a drain
// does not retry its removals as each connection closes: after one
// failure they wait for the final flush, which writes them once the store
// is back (here while the drain waits for a connection held in its
// authenticator). Before, 300 connections cost about as many failed
// calls and Warn lines.
func TestDrainStoreDownRemovalsWaitForFinal(t *testing.T) {
	t.Parallel()
	st := newRemoveCounter()
	auth, entered, release := holdingAuth()
	nd := startNode(t, cloud.Config{Store: st, NodeID: "node-f", Authenticator: auth, MaxConnsPerIP: -1, AcceptRate: -1})
	const N = 300
	_, keys := storedClients(t, nd, st, N)
	held := dialRaw(t, nd.tcpAddr, false)
	require.NoError(t, held.send(1, 7, 1, []byte(goimAuth(N+1, "held", "live://retry"))))
	<-entered

	st.setDown(true)
	before := nd.srv.Stats().StoreErrors
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- nd.srv.Shutdown(ctx)
	}()
	waitFor(t, "every connection ended", func() bool { return nd.srv.Stats().Sessions == 0 })
	waitFor(t, "a removal failed", func() bool { return st.failures() > 0 })
	failed, errs := st.failures(), nd.srv.Stats().StoreErrors-before
	st.setDown(false)
	close(release)
	require.NoError(t, <-done)

	// One failed flush during the drain; the other failures counted are
	// the node's removal and calls of the background loops under way.
	assert.Equal(t, 1, failed, "failed RemoveSessions calls during the drain of %d connections", N)
	assert.LessOrEqual(t, errs, uint64(8), "store errors during the drain of %d connections", N)
	t.Logf("drain of %d connections with the store down: %d failed RemoveSessions calls, %d store errors", N, failed, errs)
	assert.NoError(t, st.writtenOnce(keys))
}
