package logic_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/queuetest"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/require"
)

// groupConsumer is a minimal sarama consumer-group Source for the
// conformance suite; job has the real one.
type groupConsumer struct {
	topic   string
	records chan imcloud.Record
	group   sarama.ConsumerGroup
	cancel  context.CancelFunc
	done    chan struct{}

	mu      sync.Mutex
	session sarama.ConsumerGroupSession
}

func openGroupConsumer(t *testing.T, brokers []string, topic, group string) *groupConsumer {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_1_0_0
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	g, err := sarama.NewConsumerGroup(brokers, group, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	c := &groupConsumer{topic: topic, records: make(chan imcloud.Record), group: g, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{topic}, c); err != nil && ctx.Err() == nil {
				time.Sleep(50 * time.Millisecond)
			}
		}
	}()
	return c
}

func (c *groupConsumer) Setup(s sarama.ConsumerGroupSession) error {
	c.mu.Lock()
	c.session = s
	c.mu.Unlock()
	return nil
}

func (c *groupConsumer) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (c *groupConsumer) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		rec := imcloud.Record{Partition: m.Partition, Offset: m.Offset, Key: m.Key, Value: m.Value}
		select {
		case c.records <- rec:
		case <-s.Context().Done():
			return nil
		}
	}
	return nil
}

func (c *groupConsumer) Receive(ctx context.Context) (imcloud.Record, error) {
	select {
	case r := <-c.records:
		return r, nil
	case <-ctx.Done():
		return imcloud.Record{}, ctx.Err()
	}
}

func (c *groupConsumer) Commit(ctx context.Context, partition int32, offset int64) error {
	c.mu.Lock()
	s := c.session
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	s.MarkOffset(c.topic, partition, offset+1, "")
	s.Commit()
	return nil
}

func (c *groupConsumer) stop() {
	c.cancel()
	<-c.done
	_ = c.group.Close()
}

func newKafkaQueue(t testing.TB, brokers []string, topic string) *logic.KafkaQueue {
	t.Helper()
	q, err := logic.NewKafkaQueue(logic.KafkaConfig{Brokers: brokers, Topic: topic})
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
				c := openGroupConsumer(t, k.Brokers, topic, group)
				var once sync.Once
				stop := func() { once.Do(c.stop) }
				t.Cleanup(stop)
				return c, stop
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
	}
	require.NoError(t, q.Publish(ctx, msgs))

	keys := map[string]bool{}
	for _, m := range consumeTopic(t, k, "keys") {
		keys[string(m.Key)] = true
	}
	require.Equal(t, map[string]bool{"node-a": true, "live://1": true, logic.BroadcastKey: true}, keys)
}

func TestKafkaQueueBadInput(t *testing.T) {
	_, err := logic.NewKafkaQueue(logic.KafkaConfig{})
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
