// Package queuetest is the conformance suite for imcloud's queue contract:
// logic's Queue (publish) together with job's Source (consume, commit). The
// memory queue and the Kafka producer + consumer group both run it, so the
// roles can rely on one set of semantics:
//
//   - Publish returns once the queue holds the messages;
//   - a consumer receives every message, decodable, in order per partition
//     key (one node's keys messages, one room's messages);
//   - commits are per partition and mean "up to and including this offset";
//   - a consumer opened after another stopped (a restart, a crash) resumes
//     after the committed offsets: what was received but not committed is
//     delivered again, nothing is lost;
//   - Receive returns when its context ends.
//
// A new consumer group starts from the oldest record.
package queuetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/stretchr/testify/require"
)

// Publisher is logic's Queue.
type Publisher interface {
	Publish(ctx context.Context, msgs []*imcloud.Message) error
}

// Consumer is job's Source.
type Consumer interface {
	Receive(ctx context.Context) (imcloud.Record, error)
	Commit(ctx context.Context, partition int32, offset int64) error
}

// Harness is one fresh, empty queue under test.
type Harness struct {
	// Publisher publishes to the queue.
	Publisher Publisher
	// OpenConsumer opens a consumer of the queue in the suite's one
	// consumer group, resuming after the committed offsets. The returned
	// stop function ends it as a process exit would, committing nothing
	// more; it is called before the next OpenConsumer.
	OpenConsumer func(t *testing.T) (c Consumer, stop func())
}

// Timeout bounds each wait in the suite; the Kafka consumer group's first
// rebalance takes a few seconds.
const Timeout = 30 * time.Second

// Run runs the suite; newHarness is called once per subtest and must return
// an empty queue.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Run("PublishConsume", func(t *testing.T) { testPublishConsume(t, newHarness(t)) })
	t.Run("OrderPerKey", func(t *testing.T) { testOrderPerKey(t, newHarness(t)) })
	t.Run("RedeliveryAfterRestart", func(t *testing.T) { testRedelivery(t, newHarness(t)) })
	t.Run("ReceiveHonoursContext", func(t *testing.T) { testReceiveContext(t, newHarness(t)) })
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return ctx
}

func keysMessage(node string, seq int) *imcloud.Message {
	return &imcloud.Message{
		ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Op: 1000, Node: node,
		Keys: []string{"k1", "k2"}, Body: []byte(fmt.Sprint(seq)), Accepted: time.Now(),
	}
}

func roomMessage(room string, seq int) *imcloud.Message {
	return &imcloud.Message{
		ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Op: 1001, Room: room,
		Body: []byte(fmt.Sprint(seq)), Accepted: time.Now(),
	}
}

func receive(t *testing.T, ctx context.Context, c Consumer) (imcloud.Record, *imcloud.Message) {
	t.Helper()
	rec, err := c.Receive(ctx)
	require.NoError(t, err)
	var m imcloud.Message
	require.NoError(t, m.UnmarshalBinary(rec.Value), "every record decodes")
	return rec, &m
}

func testPublishConsume(t *testing.T, h Harness) {
	ctx := ctxTimeout(t)
	sent := []*imcloud.Message{
		keysMessage("node-a", 1),
		roomMessage("live://1000", 2),
		{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: 1002, Speed: 50, Body: []byte("3"),
			Accepted: time.Now(), Expires: time.Now().Add(time.Minute)},
	}
	require.NoError(t, h.Publisher.Publish(ctx, sent))
	c, stop := h.OpenConsumer(t)
	defer stop()
	got := map[imcloud.MessageID]*imcloud.Message{}
	for range sent {
		_, m := receive(t, ctx, c)
		got[m.ID] = m
	}
	for _, want := range sent {
		m, ok := got[want.ID]
		require.True(t, ok, "message %s received", want.ID)
		require.Equal(t, want.Kind, m.Kind)
		require.Equal(t, want.Op, m.Op)
		require.Equal(t, want.Node, m.Node)
		require.Equal(t, want.Keys, m.Keys)
		require.Equal(t, want.Room, m.Room)
		require.Equal(t, want.Body, m.Body)
		require.Equal(t, want.Speed, m.Speed)
		require.True(t, want.Accepted.Equal(m.Accepted))
		require.True(t, want.Expires.Equal(m.Expires))
	}
}

func testOrderPerKey(t *testing.T, h Harness) {
	ctx := ctxTimeout(t)
	const n = 200
	streams := []func(int) *imcloud.Message{
		func(i int) *imcloud.Message { return keysMessage("node-a", i) },
		func(i int) *imcloud.Message { return keysMessage("node-b", i) },
		func(i int) *imcloud.Message { return roomMessage("live://1", i) },
		func(i int) *imcloud.Message { return roomMessage("live://2", i) },
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(streams))
	for _, mk := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n; i++ {
				if err := h.Publisher.Publish(ctx, []*imcloud.Message{mk(i)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	c, stop := h.OpenConsumer(t)
	defer stop()
	next := map[string]int{}
	lastOffset := map[int32]int64{}
	for i := 0; i < n*len(streams); i++ {
		rec, m := receive(t, ctx, c)
		if last, ok := lastOffset[rec.Partition]; ok {
			require.Greater(t, rec.Offset, last, "offsets grow within a partition")
		}
		lastOffset[rec.Partition] = rec.Offset
		key := m.Node + m.Room
		require.Equal(t, fmt.Sprint(next[key]), string(m.Body), "order within %s", key)
		next[key]++
	}
	for _, v := range next {
		require.Equal(t, n, v)
	}
}

func testRedelivery(t *testing.T, h Harness) {
	ctx := ctxTimeout(t)
	const n = 10
	var batch []*imcloud.Message
	for i := 0; i < n; i++ {
		batch = append(batch, keysMessage("node-a", i))
	}
	require.NoError(t, h.Publisher.Publish(ctx, batch))

	c, stop := h.OpenConsumer(t)
	var recs []imcloud.Record
	for i := 0; i < n; i++ {
		rec, m := receive(t, ctx, c)
		require.Equal(t, fmt.Sprint(i), string(m.Body))
		recs = append(recs, rec)
	}
	// Handled the first five only, then the process goes away.
	require.NoError(t, c.Commit(ctx, recs[4].Partition, recs[4].Offset))
	stop()

	c, stop = h.OpenConsumer(t)
	defer stop()
	for i := 5; i < n; i++ {
		_, m := receive(t, ctx, c)
		require.Equal(t, fmt.Sprint(i), string(m.Body), "uncommitted records come again, in order")
	}
	// And nothing committed comes back.
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	_, err := c.Receive(short)
	require.Error(t, err, "no record beyond those published")
}

func testReceiveContext(t *testing.T, h Harness) {
	c, stop := h.OpenConsumer(t)
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Receive(ctx)
	require.Error(t, err)
	require.Less(t, time.Since(start), 10*time.Second, "Receive returns soon after its context ends")
}
