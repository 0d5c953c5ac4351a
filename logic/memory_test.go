package logic_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/queuetest"
	"github.com/imcloud/imcloud/internal/routertest"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/require"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestMemoryRouterConformance(t *testing.T) {
	routertest.Run(t, func(t *testing.T) routertest.Harness {
		clk := &fakeClock{now: time.Unix(1700000000, 0)}
		r := logic.NewMemoryRouter(logic.MemoryRouterConfig{Now: clk.Now})
		return routertest.Harness{Store: r, Advance: clk.Advance, Wipe: r.Wipe, RebuildWindow: logic.DefaultRebuildWindow}
	})
}

func TestMemoryQueueConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queuetest.Harness {
		q := logic.NewMemoryQueue(logic.MemoryQueueConfig{})
		t.Cleanup(func() { _ = q.Close() })
		return queuetest.Harness{
			Publisher: q,
			OpenConsumer: func(t *testing.T) (queuetest.Consumer, func()) {
				q.Rewind() // a new consumer resumes after the committed offsets
				return q, func() {}
			},
		}
	})
}

func TestMemoryQueueBounded(t *testing.T) {
	q := logic.NewMemoryQueue(logic.MemoryQueueConfig{Partitions: 1, Capacity: 2})
	defer q.Close()
	ctx := context.Background()
	msg := func() *imcloud.Message {
		return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Op: 1, Room: "live://1"}
	}
	require.NoError(t, q.Publish(ctx, []*imcloud.Message{msg(), msg()}))
	require.Equal(t, 2, q.Len())

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err := q.Publish(short, []*imcloud.Message{msg()})
	require.ErrorIs(t, err, logic.ErrQueue, "a full queue waits, then fails with ctx")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	err = q.Publish(ctx, []*imcloud.Message{msg(), msg(), msg()})
	require.ErrorIs(t, err, logic.ErrInvalidArgument, "a batch larger than the queue never fits")

	// A commit makes room and wakes a waiting publisher.
	done := make(chan error, 1)
	go func() { done <- q.Publish(ctx, []*imcloud.Message{msg()}) }()
	rec, err := q.Receive(ctx)
	require.NoError(t, err)
	require.NoError(t, q.Commit(ctx, rec.Partition, rec.Offset))
	require.NoError(t, <-done)
	require.Equal(t, 2, q.Len())
}

func TestMemoryQueueBadInput(t *testing.T) {
	q := logic.NewMemoryQueue(logic.MemoryQueueConfig{Partitions: 2})
	ctx := context.Background()
	err := q.Publish(ctx, []*imcloud.Message{{Kind: imcloud.KindKeys, Op: 1}})
	require.ErrorIs(t, err, logic.ErrInvalidArgument, "a keys message without node is refused")
	require.ErrorIs(t, q.Commit(ctx, 5, 0), logic.ErrInvalidArgument)
	require.ErrorIs(t, q.Commit(ctx, 0, 10), logic.ErrInvalidArgument, "offset never handed out")
	require.NoError(t, q.Commit(ctx, 0, -1), "committing nothing is a no-op")

	// Close wakes a blocked receiver.
	got := make(chan error, 1)
	go func() { _, err := q.Receive(ctx); got <- err }()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, q.Close())
	require.NoError(t, q.Close(), "Close is idempotent")
	require.ErrorIs(t, <-got, logic.ErrClosed)
	require.ErrorIs(t, q.Publish(ctx, []*imcloud.Message{{Kind: imcloud.KindBroadcast, Op: 1}}), logic.ErrClosed)
	require.ErrorIs(t, q.Commit(ctx, 0, 0), logic.ErrClosed)
}

func TestMemoryRouterSweepReclaims(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1700000000, 0)}
	r := logic.NewMemoryRouter(logic.MemoryRouterConfig{Now: clk.Now})
	ctx := context.Background()
	require.NoError(t, r.PutSessions(ctx, []imcloud.Session{{Mid: 1, Key: "k", Node: "n"}}, time.Second))
	clk.Advance(2 * time.Second)
	// The next write sweeps; the expired session is gone from lookups.
	require.NoError(t, r.PutSessions(ctx, []imcloud.Session{{Mid: 2, Key: "k2", Node: "n"}}, time.Second))
	got, err := r.NodesByMids(ctx, []int64{1, 2})
	require.NoError(t, err)
	require.Equal(t, map[string]string{"k2": "n"}, got)
}

// TestMemoryQueueMaxDelay: with MaxDelay, Publish is refused at once
// (ErrOverloaded, nothing queued) while the oldest record held waited
// longer, and accepted again once the consumer caught up.
func TestMemoryQueueMaxDelay(t *testing.T) {
	q := logic.NewMemoryQueue(logic.MemoryQueueConfig{Partitions: 2, MaxDelay: 50 * time.Millisecond})
	defer q.Close()
	ctx := context.Background()
	msg := func(room string) *imcloud.Message {
		return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Op: 1, Room: room}
	}
	require.NoError(t, q.Publish(ctx, []*imcloud.Message{msg("live://1")}))
	require.NoError(t, q.Publish(ctx, []*imcloud.Message{msg("live://2")}), "the consumer is not behind yet")

	time.Sleep(80 * time.Millisecond)
	err := q.Publish(ctx, []*imcloud.Message{msg("live://3")})
	require.ErrorIs(t, err, logic.ErrOverloaded, "the oldest record waited longer than MaxDelay")
	require.Equal(t, 2, q.Len(), "a refused publish queues nothing")

	// The consumer takes and commits one: the other is still too old.
	rec, err := q.Receive(ctx)
	require.NoError(t, err)
	require.NoError(t, q.Commit(ctx, rec.Partition, rec.Offset))
	require.ErrorIs(t, q.Publish(ctx, []*imcloud.Message{msg("live://3")}), logic.ErrOverloaded)

	// Caught up: accepted again.
	rec, err = q.Receive(ctx)
	require.NoError(t, err)
	require.NoError(t, q.Commit(ctx, rec.Partition, rec.Offset))
	require.NoError(t, q.Publish(ctx, []*imcloud.Message{msg("live://3")}))
	require.Equal(t, 1, q.Len())
}
