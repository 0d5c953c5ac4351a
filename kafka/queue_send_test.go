package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/kafka"
	"github.com/imcloud/imcloud/logic"
)

// brokerFaults makes k's broker answer produce requests with an error code
// for every partition when fail says so (given the request's number,
// counting from 1), and counts the requests. Other requests are handled
// as usual.
type brokerFaults struct{ requests atomic.Int64 }

func injectProduceErrors(k *testenv.Kafka, code sarama.KError, fail func(n int64) bool) *brokerFaults {
	f := &brokerFaults{}
	c := k.Cluster()
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		n := f.requests.Add(1)
		if !fail(n) {
			return nil, nil, false
		}
		req := r.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		for _, t := range req.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = int16(code)
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp, nil, true
	})
	return f
}

// queueConfig is the queue's default sarama configuration with quick
// retries, for tests that make the broker fail.
func queueConfig(adjust func(*sarama.Config)) *sarama.Config {
	c := kafka.NewProducerConfig()
	c.Producer.Retry.Backoff = 5 * time.Millisecond
	if adjust != nil {
		adjust(c)
	}
	return c
}

func openQueue(t *testing.T, k *testenv.Kafka, topic string, sc *sarama.Config) *kafka.Queue {
	t.Helper()
	q, err := kafka.NewQueue(kafka.QueueConfig{Brokers: k.Brokers, Topic: topic, Sarama: sc})
	require.NoError(t, err)
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// nodeMessage is the i-th keys message to node, its body the number i.
func nodeMessage(node string, i int, pad int) *imcloud.Message {
	return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys, Op: 1000, Node: node,
		Keys: []string{"k"}, Body: []byte(strconv.Itoa(i) + strings.Repeat(" ", pad))}
}

// consumeTopic returns every record in topic, partition by partition, in
// order within each.
func consumeTopic(t *testing.T, k *testenv.Kafka, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	c, err := sarama.NewConsumer(k.Brokers, sarama.NewConfig())
	require.NoError(t, err)
	defer c.Close()
	var all []*sarama.ConsumerMessage
	for p := int32(0); p < testenv.DefaultPartitions; p++ {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		require.NoError(t, err)
		for i, hw := int64(0), pc.HighWaterMarkOffset(); i < hw; i++ {
			select {
			case cm := <-pc.Messages():
				all = append(all, cm)
			case <-time.After(5 * time.Second):
				t.Fatalf("partition %d: %d of %d messages read", p, i, hw)
			}
		}
		require.NoError(t, pc.Close())
	}
	return all
}

// readTopic returns every message in topic as node -> the bodies' numbers
// in the order they were written.
func readTopic(t *testing.T, k *testenv.Kafka, topic string) map[string][]int {
	t.Helper()
	got := map[string][]int{}
	for _, cm := range consumeTopic(t, k, topic) {
		var m imcloud.Message
		require.NoError(t, m.UnmarshalBinary(cm.Value))
		n, err := strconv.Atoi(strings.TrimSpace(string(m.Body)))
		require.NoError(t, err)
		got[m.Node] = append(got[m.Node], n)
	}
	return got
}

func sequence(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// TestKafkaQueueRetriesFailedPartitions: while every third produce
// request is refused with NOT_LEADER_FOR_PARTITION, four publishers each
// push 25 messages to their own node. Every Publish succeeds, and each
// node's messages are in the topic once each, in publish order: a retried
// batch goes ahead of what was queued behind it.
func TestKafkaQueueRetriesFailedPartitions(t *testing.T) {
	k := testenv.StartKafka(t, "retry")
	faults := injectProduceErrors(k, sarama.ErrNotLeaderForPartition, func(n int64) bool { return n%3 == 1 })
	q := openQueue(t, k, "retry", queueConfig(nil))
	publishPerNode(t, q, 4, 25, 1)
	requireInOrder(t, k, "retry", 4, 25)
	assert.Greater(t, faults.requests.Load(), int64(3), "some requests were refused and retried")
	assert.Zero(t, q.Failed())
}

// publishPerNode runs one publisher per node (node-0, node-1, ...), each
// making calls Publish calls of each messages numbered from 0 on, and
// requires every call to succeed.
func publishPerNode(t *testing.T, q *kafka.Queue, nodes, calls, each int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, nodes)
	for n := 0; n < nodes; n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			node := fmt.Sprintf("node-%d", n)
			for c := 0; c < calls; c++ {
				msgs := make([]*imcloud.Message, each)
				for i := range msgs {
					msgs[i] = nodeMessage(node, c*each+i, 0)
				}
				if err := q.Publish(context.Background(), msgs); err != nil {
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
}

// requireInOrder checks that topic holds each node's count messages once
// each, in the order they were published.
func requireInOrder(t *testing.T, k *testenv.Kafka, topic string, nodes, count int) {
	t.Helper()
	got := readTopic(t, k, topic)
	for n := 0; n < nodes; n++ {
		assert.Equal(t, sequence(count), got[fmt.Sprintf("node-%d", n)], "node-%d", n)
	}
}

// TestKafkaQueueBrokerErrors: a partition error sarama's producer
// retries is retried Producer.Retry.Max times and then reported; one it
// does not retry is reported at once. Either way Publish returns an
// ErrQueue that names the broker's error, and Failed counts the message.
func TestKafkaQueueBrokerErrors(t *testing.T) {
	for _, tc := range []struct {
		code     sarama.KError
		requests int64
	}{
		{sarama.ErrNotLeaderForPartition, 3}, // first attempt + Retry.Max 2
		{sarama.ErrMessageSizeTooLarge, 1},
	} {
		t.Run(tc.code.Error(), func(t *testing.T) {
			k := testenv.StartKafka(t, "fail")
			faults := injectProduceErrors(k, tc.code, func(int64) bool { return true })
			q := openQueue(t, k, "fail", queueConfig(func(c *sarama.Config) { c.Producer.Retry.Max = 2 }))
			err := q.Publish(context.Background(), []*imcloud.Message{nodeMessage("node-a", 0, 0)})
			require.ErrorIs(t, err, logic.ErrQueue)
			require.ErrorIs(t, err, tc.code)
			assert.Equal(t, tc.requests, faults.requests.Load())
			assert.Equal(t, uint64(1), q.Failed())
		})
	}
}

// TestKafkaQueueSplitsRequests: a Publish bigger than one request may
// carry (Producer.MaxMessageBytes per partition, Flush.MaxMessages in all)
// is sent as several requests, in order, also when every third request is
// refused and its records retried ahead of the rest.
func TestKafkaQueueSplitsRequests(t *testing.T) {
	for name, adjust := range map[string]func(*sarama.Config){
		"MaxMessageBytes":   func(c *sarama.Config) { c.Producer.MaxMessageBytes = 2000 },
		"Flush.MaxMessages": func(c *sarama.Config) { c.Producer.Flush.MaxMessages = 5 },
	} {
		t.Run(name, func(t *testing.T) {
			k := testenv.StartKafka(t, "split")
			faults := injectProduceErrors(k, sarama.ErrNotLeaderForPartition, func(n int64) bool { return n%3 == 1 })
			q := openQueue(t, k, "split", queueConfig(adjust))
			msgs := make([]*imcloud.Message, 40)
			for i := range msgs {
				msgs[i] = nodeMessage("node-a", i, 200)
			}
			require.NoError(t, q.Publish(context.Background(), msgs))
			assert.Equal(t, map[string][]int{"node-a": sequence(40)}, readTopic(t, k, "split"))
			assert.GreaterOrEqual(t, faults.requests.Load(), int64(4), "several requests")
		})
	}
}

// TestKafkaQueueNoAcks: with RequiredAcks NoResponse a Publish returns
// once its request is written, and the messages arrive.
func TestKafkaQueueNoAcks(t *testing.T) {
	k := testenv.StartKafka(t, "noacks")
	q := openQueue(t, k, "noacks", queueConfig(func(c *sarama.Config) { c.Producer.RequiredAcks = sarama.NoResponse }))
	for i := 0; i < 10; i++ {
		require.NoError(t, q.Publish(context.Background(), []*imcloud.Message{nodeMessage("node-a", i, 0)}))
	}
	require.Eventually(t, func() bool {
		return len(readTopic(t, k, "noacks")["node-a"]) == 10
	}, 5*time.Second, 50*time.Millisecond)
	assert.Equal(t, sequence(10), readTopic(t, k, "noacks")["node-a"])
}

// headerInterceptor adds a header to every message, as a tracing
// interceptor would.
type headerInterceptor struct{ calls atomic.Int64 }

func (h *headerInterceptor) OnSend(m *sarama.ProducerMessage) {
	h.calls.Add(1)
	m.Headers = append(m.Headers, sarama.RecordHeader{Key: []byte("trace"), Value: []byte("t-1")})
}

// TestKafkaQueueInterceptors: Producer.Interceptors see every message
// before it is sent, and what they add is written.
func TestKafkaQueueInterceptors(t *testing.T) {
	k := testenv.StartKafka(t, "icpt")
	ic := &headerInterceptor{}
	q := openQueue(t, k, "icpt", queueConfig(func(c *sarama.Config) {
		c.Producer.Interceptors = []sarama.ProducerInterceptor{ic}
	}))
	require.NoError(t, q.Publish(context.Background(), []*imcloud.Message{nodeMessage("node-a", 0, 0), nodeMessage("node-b", 1, 0)}))
	assert.Equal(t, int64(2), ic.calls.Load())

	headers := 0
	for _, cm := range consumeTopic(t, k, "icpt") {
		require.Len(t, cm.Headers, 1)
		assert.Equal(t, "trace", string(cm.Headers[0].Key))
		assert.Equal(t, "t-1", string(cm.Headers[0].Value))
		headers++
	}
	assert.Equal(t, 2, headers)
}

// TestKafkaQueueRefusedConfig: what the queue cannot honour is refused
// when it is built, not discovered on the first Publish.
func TestKafkaQueueRefusedConfig(t *testing.T) {
	for name, adjust := range map[string]func(*sarama.Config){
		"version before 0.11": func(c *sarama.Config) { c.Version = sarama.V0_10_2_0 },
		"idempotent":          func(c *sarama.Config) { c.Producer.Idempotent = true },
		"transactional":       func(c *sarama.Config) { c.Producer.Transaction.ID = "tx" },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := kafka.NewQueue(kafka.QueueConfig{Brokers: []string{"127.0.0.1:1"}, Sarama: queueConfig(adjust)})
			require.ErrorIs(t, err, logic.ErrInvalidArgument)
		})
	}
}

// TestKafkaQueueBoundedPending: a Publish that would queue more than
// MaxPendingRecords messages is refused with ErrOverloaded, and the queue
// goes on working.
func TestKafkaQueueBoundedPending(t *testing.T) {
	k := testenv.StartKafka(t, "bound")
	q := openQueue(t, k, "bound", nil)
	msgs := make([]*imcloud.Message, kafka.MaxPendingRecords+1)
	for i := range msgs {
		msgs[i] = nodeMessage("node-a", i, 0)
	}
	err := q.Publish(context.Background(), msgs)
	require.True(t, errors.Is(err, logic.ErrOverloaded), "got %v", err)
	require.NoError(t, q.Publish(context.Background(), msgs[:1]))
}

// TestKafkaQueueRequestSize: the records one leader is sent in a round
// stay under sarama's MaxRequestSize (lowered here to 60 KiB: 40 records
// of 2 KB over four partitions need two requests), and a record that
// cannot be encoded within it fails at once, without retries.
func TestKafkaQueueRequestSize(t *testing.T) {
	old := sarama.MaxRequestSize
	sarama.MaxRequestSize = 60 << 10
	t.Cleanup(func() { sarama.MaxRequestSize = old })
	k := testenv.StartKafka(t, "size")
	faults := injectProduceErrors(k, sarama.ErrNoError, func(int64) bool { return false })
	q := openQueue(t, k, "size", queueConfig(func(c *sarama.Config) { c.Producer.Compression = sarama.CompressionNone }))
	msgs := make([]*imcloud.Message, 40)
	for i := range msgs {
		msgs[i] = nodeMessage(fmt.Sprintf("node-%d", i%4), i/4, 2000)
	}
	require.NoError(t, q.Publish(context.Background(), msgs))
	got := readTopic(t, k, "size")
	for n := 0; n < 4; n++ {
		assert.Equal(t, sequence(10), got[fmt.Sprintf("node-%d", n)])
	}
	assert.GreaterOrEqual(t, faults.requests.Load(), int64(2))

	before := faults.requests.Load()
	err := q.Publish(context.Background(), []*imcloud.Message{nodeMessage("node-0", 10, 70<<10)})
	require.ErrorIs(t, err, logic.ErrQueue)
	var encoding sarama.PacketEncodingError
	require.ErrorAs(t, err, &encoding)
	assert.Equal(t, before, faults.requests.Load(), "nothing reached the broker")
	require.NoError(t, q.Publish(context.Background(), []*imcloud.Message{nodeMessage("node-0", 10, 0)}), "the connection is still good")
}

// twoPartitionKeys returns two node ids the hash partitioner puts in
// different partitions of testenv.DefaultPartitions.
func twoPartitionKeys(t *testing.T) (string, string) {
	part := sarama.NewHashPartitioner("")
	first := ""
	var firstP int32
	for i := 0; i < 100; i++ {
		node := fmt.Sprintf("node-%d", i)
		p, err := part.Partition(&sarama.ProducerMessage{Key: sarama.StringEncoder(node)}, testenv.DefaultPartitions)
		require.NoError(t, err)
		if first == "" {
			first, firstP = node, p
		} else if p != firstP {
			return first, node
		}
	}
	t.Fatal("no two keys in different partitions")
	return "", ""
}

// TestKafkaQueueFailedPartitionDoesNotBlockOthers: while one partition
// waits out a retry backoff, pushes to the other partitions go through.
func TestKafkaQueueFailedPartitionDoesNotBlockOthers(t *testing.T) {
	bad, good := twoPartitionKeys(t)
	badPartition, err := sarama.NewHashPartitioner("").Partition(
		&sarama.ProducerMessage{Key: sarama.StringEncoder(bad)}, testenv.DefaultPartitions)
	require.NoError(t, err)
	k := testenv.StartKafka(t, "hol")
	var refused atomic.Int64
	c := k.Cluster()
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := r.(*kmsg.ProduceRequest)
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		hit := false
		for _, tp := range req.Topics {
			rt := kmsg.NewProduceResponseTopic()
			rt.Topic = tp.Topic
			for _, p := range tp.Partitions {
				hit = hit || p.Partition == badPartition
				rp := kmsg.NewProduceResponseTopicPartition()
				rp.Partition = p.Partition
				rp.ErrorCode = int16(sarama.ErrNotLeaderForPartition)
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		if !hit {
			return nil, nil, false
		}
		refused.Add(1)
		return resp, nil, true
	})
	const backoff = 2 * time.Second
	q := openQueue(t, k, "hol", queueConfig(func(c *sarama.Config) {
		c.Producer.Retry.Max = 1
		c.Producer.Retry.Backoff = backoff
	}))
	badDone := make(chan error, 1)
	go func() { badDone <- q.Publish(context.Background(), []*imcloud.Message{nodeMessage(bad, 0, 0)}) }()
	require.Eventually(t, func() bool { return refused.Load() == 1 }, 5*time.Second, time.Millisecond)

	start := time.Now()
	require.NoError(t, q.Publish(context.Background(), []*imcloud.Message{nodeMessage(good, 0, 0)}))
	assert.Less(t, time.Since(start), backoff/2, "the healthy partition did not wait for the failed one's backoff")
	err = <-badDone
	require.ErrorIs(t, err, sarama.ErrNotLeaderForPartition)
	assert.Equal(t, int64(2), refused.Load(), "one retry after the backoff")
}

// panickyInterceptor panics on every message.
type panickyInterceptor struct{}

func (panickyInterceptor) OnSend(*sarama.ProducerMessage) { panic("interceptor bug") }

// TestKafkaQueueInterceptorPanics: a panicking interceptor is skipped (as
// sarama's producer skips it); the push and the other interceptors go on.
func TestKafkaQueueInterceptorPanics(t *testing.T) {
	k := testenv.StartKafka(t, "panic")
	ic := &headerInterceptor{}
	q := openQueue(t, k, "panic", queueConfig(func(c *sarama.Config) {
		c.Producer.Interceptors = []sarama.ProducerInterceptor{panickyInterceptor{}, ic}
	}))
	require.NoError(t, q.Publish(context.Background(), []*imcloud.Message{nodeMessage("node-a", 0, 0)}))
	assert.Equal(t, int64(1), ic.calls.Load())
	assert.Equal(t, map[string][]int{"node-a": {0}}, readTopic(t, k, "panic"))
}

// TestKafkaQueueOrderUnderRetries: three publishers, one per node, each
// publish 300 messages in calls of 20, sent 8 to a request, while the
// broker refuses every fourth produce request with
// NOT_LEADER_FOR_PARTITION. Every Publish succeeds and each node's
// messages are in the topic once each, in publish order: none lost and
// none reordered by a retry.
func TestKafkaQueueOrderUnderRetries(t *testing.T) {
	k := testenv.StartKafka(t, "order")
	faults := injectProduceErrors(k, sarama.ErrNotLeaderForPartition, func(n int64) bool { return n%4 == 1 })
	q := openQueue(t, k, "order", queueConfig(func(c *sarama.Config) { c.Producer.Flush.MaxMessages = 8 }))
	publishPerNode(t, q, 3, 15, 20)
	requireInOrder(t, k, "order", 3, 300)
	assert.GreaterOrEqual(t, faults.requests.Load(), int64(20), "requests were refused and retried")
	assert.Zero(t, q.Failed())
}
