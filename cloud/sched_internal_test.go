package cloud

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
)

// TestSchedulerWritesBusyConnections: a stream of room pushes keeps every
// connection busy; the scheduler's writers write them all, in order, with
// never more than their limit of goroutines, and let go of every
// connection once the stream ends.
func TestSchedulerWritesBusyConnections(t *testing.T) {
	s, err := New(Config{Authenticator: DevAuthenticator(), Buckets: 4})
	require.NoError(t, err)
	addr := serveTCPForTest(t, s)
	const (
		clients = 200
		pushes  = 400
		room    = "live://busy"
	)
	var wg sync.WaitGroup
	_, readers := dialRoom(t, addr, clients, room, net.Dialer{}, 10*time.Second)
	for _, br := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := readNumbered(br, 0, pushes); err != nil {
				t.Error(err)
			}
		}()
	}
	require.Eventually(t, func() bool { return s.Stats().Sessions == clients }, 5*time.Second, 5*time.Millisecond)

	// Watch the writers while the pushes go out.
	stop := make(chan struct{})
	var most atomic.Int64
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			default:
			}
			s.sched.mu.Lock()
			n := int64(s.sched.running)
			s.sched.mu.Unlock()
			if n > most.Load() {
				most.Store(n)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}()
	for i := 0; i < pushes; i++ {
		require.NoError(t, s.Deliver(context.Background(), []*imcloud.Message{{
			ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Room: room, Op: 1000, Body: numbered(i, "")}}))
	}
	wg.Wait()
	close(stop)
	<-watched
	require.EqualValues(t, uint64(clients*pushes), s.Stats().Delivered)
	assert.LessOrEqual(t, most.Load(), int64(s.sched.burst), "more writers ran than their limit")

	require.Eventually(t, func() bool { return s.Stats().Writers == 0 }, 5*time.Second, 5*time.Millisecond,
		"writers still claimed after the stream ended")
	assert.Zero(t, s.Stats().QueuedBytes, "the backlog count drifted")
	s.sched.mu.Lock()
	defer s.sched.mu.Unlock()
	assert.NotZero(t, cap(s.sched.ready), "the stream never reached the ready list")
	assert.Zero(t, s.sched.running, "writers still running")
	assert.Zero(t, len(s.sched.ready)-s.sched.head, "connections left on the ready list")
}

// A fan-out that finds the writers idle may use a writer on every P; one
// that finds them busy sends the extra writers home at their next slice,
// without stranding what waits on the ready list.
func TestSchedulerBoostsOnlyIdleBursts(t *testing.T) {
	s := &scheduler{steady: 1, burst: 2}
	s.fanoutStarts()
	require.Equal(t, 2, s.limit(), "a fan-out onto idle writers is a burst")

	s.running = 2
	s.ready = []*conn{{}, {}}
	s.fanoutStarts()
	require.Equal(t, 1, s.limit(), "a fan-out onto busy writers is sustained load")

	var dst [schedSlice]*conn
	assert.Zero(t, s.take(dst[:]), "the extra writer stops")
	assert.Equal(t, 1, s.running)
	assert.Equal(t, 2, s.take(dst[:]), "the remaining writer takes what waits")
	assert.Zero(t, s.take(dst[:]))
	assert.Zero(t, s.running)
}
