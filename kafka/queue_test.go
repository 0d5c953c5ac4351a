package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/queuetest"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/kafka"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newKafkaQueue(t testing.TB, brokers []string, topic string) *kafka.Queue {
	t.Helper()
	q, err := kafka.NewQueue(kafka.QueueConfig{Brokers: brokers, Topic: topic})
	require.NoError(t, err)
	t.Cleanup(func() { _ = q.Close() })
	return q
}

func TestKafkaQueueConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("consumer-group rebalances take seconds")
	}
	k := testenv.StartKafka(t)
	var n atomic.Int64
	queuetest.Run(t, func(t *testing.T) queuetest.Harness {
		id := n.Add(1)
		topic, group := fmt.Sprintf("push-%d", id), fmt.Sprintf("job-%d", id)
		q := newKafkaQueue(t, k.Brokers, topic)
		return queuetest.Harness{
			Publisher: q,
			OpenConsumer: func(t *testing.T) (queuetest.Consumer, func()) {
				src := openSource(t, k.Brokers, group, topic)
				t.Cleanup(func() { _ = src.Close() })
				return src, func() { _ = src.Close() }
			},
		}
	})
}

func TestKafkaQueuePartitionKeys(t *testing.T) {
	k := testenv.StartKafka(t, "keys")
	q := newKafkaQueue(t, k.Brokers, "keys")
	ctx := context.Background()
	msgs := []*imcloud.Message{
		{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Op: 1, Node: "node-a", Keys: []string{"k"}},
		{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Op: 1, Room: "live://1"},
		{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: 1},
		{ID: imcloud.NewMessageID(), Kind: imcloud.KindMids, Op: 1, Mids: []int64{42}},
	}
	require.NoError(t, q.Publish(ctx, msgs))

	keys := map[string]bool{}
	for _, m := range consumeTopic(t, k, "keys") {
		keys[string(m.Key)] = true
	}
	require.Equal(t, map[string]bool{"node-a": true, "live://1": true, logic.BroadcastKey: true, "u:42": true}, keys)
}

func TestKafkaQueueBadInput(t *testing.T) {
	_, err := kafka.NewQueue(kafka.QueueConfig{})
	require.ErrorIs(t, err, logic.ErrInvalidArgument)

	k := testenv.StartKafka(t, "bad")
	q := newKafkaQueue(t, k.Brokers, "bad")
	ctx := context.Background()
	require.NoError(t, q.Publish(ctx, nil))
	err = q.Publish(ctx, []*imcloud.Message{{Kind: imcloud.KindKeys, Op: 1}})
	require.ErrorIs(t, err, logic.ErrInvalidArgument)

	require.NoError(t, q.Close())
	require.NoError(t, q.Close(), "idempotent")
	err = q.Publish(ctx, []*imcloud.Message{{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: 1}})
	require.True(t, errors.Is(err, logic.ErrClosed))
}

// TestKafkaQueueCloseWhilePublishing: Close while publishers are sending
// waits for what was sent; every Publish returns nil or ErrClosed, and the
// messages acknowledged are in the topic.
func TestKafkaQueueCloseWhilePublishing(t *testing.T) {
	k := testenv.StartKafka(t, "closing")
	q := newKafkaQueue(t, k.Brokers, "closing")
	var acked atomic.Int64
	var wg sync.WaitGroup
	for p := 0; p < 8; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				err := q.Publish(context.Background(), []*imcloud.Message{nodeMessage(fmt.Sprintf("node-%d", p), i, 0)})
				if errors.Is(err, logic.ErrClosed) {
					return
				}
				if !assert.NoError(t, err) {
					return
				}
				acked.Add(1)
			}
		}()
	}
	require.Eventually(t, func() bool { return acked.Load() >= 100 }, 10*time.Second, time.Millisecond)
	require.NoError(t, q.Close())
	wg.Wait()
	assert.GreaterOrEqual(t, len(consumeTopic(t, k, "closing")), int(acked.Load()))
}
