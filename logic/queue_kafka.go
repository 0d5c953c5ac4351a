package logic

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/nometrics"
)

var _ Queue = (*KafkaQueue)(nil)

// KafkaConfig configures a KafkaQueue. Every zero field means the
// documented default.
type KafkaConfig struct {
	// Brokers are the bootstrap brokers, host:port. Required.
	Brokers []string
	// Topic is where messages go. Default "imcloud-push".
	Topic string
	// Sarama, when set, is the producer configuration, used as given
	// except that Producer.Return.Successes and Producer.Return.Errors are
	// forced on (Publish waits for each message's ack). Set TLS (Net.TLS),
	// SASL (Net.SASL), required acks, retries, compression and batching
	// there. Nil means NewKafkaSaramaConfig(). A custom Partitioner or
	// interceptor sees each message's Key and Value as plain
	// sarama.Encoders (call Encode; they are not StringEncoder or
	// ByteEncoder); the key is PartitionKey's.
	Sarama *sarama.Config
	// Logger receives producer problems. Nil is silent.
	Logger *slog.Logger
}

// NewKafkaSaramaConfig returns the KafkaQueue's default producer
// configuration, to adjust and pass as KafkaConfig.Sarama:
//
//   - RequiredAcks WaitForAll: a message is accepted once every in-sync
//     replica has it, so an acknowledged push survives a broker loss;
//   - Net.MaxOpenRequests 1 with Retry.Max 5: retries cannot reorder one
//     partition's messages, so one node's or one room's pushes stay in
//     order (duplicates from a retry are dropped by cloud's id filter);
//   - LZ4 compression and opportunistic batching: while a produce request
//     is in flight the next batch fills (Flush.MaxMessages 0: no cap,
//     bounded by Producer.MaxMessageBytes), so throughput grows with load
//     without a fixed linger delay;
//   - dial, read and write timeouts of 5s, 10s and 10s, so a dead broker
//     is an error in seconds rather than sarama's 30s;
//   - sarama's internal metrics off (MetricRegistry is a no-op registry):
//     they update meters and histograms per request and per message, ~1.5%
//     of the push path's throughput (BENCHMARKS.md). Set MetricRegistry to
//     metrics.NewRegistry() to have them.
func NewKafkaSaramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = "imcloud-logic"
	c.Version = sarama.V2_1_0_0
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Retry.Max = 5
	c.Producer.Retry.Backoff = 100 * time.Millisecond
	c.Producer.Compression = sarama.CompressionLZ4
	c.Producer.Partitioner = sarama.NewHashPartitioner
	c.Net.MaxOpenRequests = 1
	c.Net.DialTimeout = 5 * time.Second
	c.Net.ReadTimeout = 10 * time.Second
	c.Net.WriteTimeout = 10 * time.Second
	c.Metadata.Retry.Max = 3
	c.Metadata.Retry.Backoff = 100 * time.Millisecond
	c.ChannelBufferSize = 1024
	c.MetricRegistry = nometrics.Registry{}
	return c
}

// KafkaQueue is the Queue over Kafka (IBM/sarama): one shared asynchronous
// producer, batching and compressing underneath a Publish that waits for
// each of its messages' own acknowledgement. The partition key is
// PartitionKey: the node id for keys messages, the room for room messages,
// BroadcastKey for broadcasts, so each keeps its order.
//
// Safe for concurrent use. The consumer side is job's.
type KafkaQueue struct {
	topic    string
	producer sarama.AsyncProducer
	log      *slog.Logger

	mu      sync.RWMutex // held for reading while sending to the producer
	closed  bool
	drained sync.WaitGroup

	failed atomic.Uint64
}

// NewKafkaQueue connects a producer to cfg.Brokers. It fails if no broker
// answers.
func NewKafkaQueue(cfg KafkaConfig) (*KafkaQueue, error) {
	if len(cfg.Brokers) == 0 {
		return nil, fmt.Errorf("%w: KafkaConfig.Brokers is required", ErrInvalidArgument)
	}
	if cfg.Topic == "" {
		cfg.Topic = "imcloud-push"
	}
	sc := cfg.Sarama
	if sc == nil {
		sc = NewKafkaSaramaConfig()
	} else {
		cp := *sc
		sc = &cp
	}
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	producer, err := sarama.NewAsyncProducer(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("%w: kafka producer: %w", ErrQueue, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := &KafkaQueue{topic: cfg.Topic, producer: producer, log: log}
	q.drained.Add(2)
	go q.successes()
	go q.errors()
	return q, nil
}

// kafkaBatch tracks one Publish call's messages until each is acknowledged
// or failed. A call with one message (a push to one user's connections on
// one node, the common case) keeps its record inside the batch.
type kafkaBatch struct {
	remaining atomic.Int32
	mu        sync.Mutex
	err       error
	done      chan struct{}
	one       [1]kafkaRecord
}

// kafkaRecord is one message's producer record with its key and value,
// which are their own sarama encoders: the message is handed to sarama
// without boxing a StringEncoder and a ByteEncoder, and the key is turned
// into bytes once rather than by each Encode call (the partitioner's and
// the request's).
type kafkaRecord struct {
	pm    sarama.ProducerMessage
	key   recordBytes
	value recordBytes
}

// recordBytes is a record's key or value as a sarama.Encoder.
type recordBytes struct{ b []byte }

func (r *recordBytes) Encode() ([]byte, error) { return r.b, nil }
func (r *recordBytes) Length() int             { return len(r.b) }

func (b *kafkaBatch) finish(err error) {
	if err != nil {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	if b.remaining.Add(-1) == 0 {
		close(b.done)
	}
}

func (q *KafkaQueue) successes() {
	defer q.drained.Done()
	for m := range q.producer.Successes() {
		if b, ok := m.Metadata.(*kafkaBatch); ok {
			b.finish(nil)
		}
	}
}

func (q *KafkaQueue) errors() {
	defer q.drained.Done()
	for pe := range q.producer.Errors() {
		q.failed.Add(1)
		if b, ok := pe.Msg.Metadata.(*kafkaBatch); ok {
			b.finish(pe.Err)
		}
	}
}

// Publish sends msgs and returns once the broker acknowledged every one,
// or the first failure (after the producer's retries), or ctx's error. On
// an error some of the messages may still be written.
func (q *KafkaQueue) Publish(ctx context.Context, msgs []*imcloud.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	b := &kafkaBatch{done: make(chan struct{})}
	b.remaining.Store(int32(len(msgs)))
	recs := b.one[:]
	if len(msgs) > 1 {
		recs = make([]kafkaRecord, len(msgs))
	}
	for i, m := range msgs {
		if err := m.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidArgument, err)
		}
		r := &recs[i]
		r.key.b = []byte(PartitionKey(m))
		r.value.b, _ = m.MarshalBinary()
		r.pm = sarama.ProducerMessage{Topic: q.topic, Key: &r.key, Value: &r.value, Metadata: b}
	}
	q.mu.RLock()
	if q.closed {
		q.mu.RUnlock()
		return ErrClosed
	}
	in := q.producer.Input()
	for i := range recs {
		select {
		case in <- &recs[i].pm: // the common case: room in sarama's buffer
		default:
			select {
			case in <- &recs[i].pm:
			case <-ctx.Done():
				q.mu.RUnlock()
				return fmt.Errorf("%w: kafka: %w", ErrQueue, ctx.Err())
			}
		}
	}
	q.mu.RUnlock()
	select {
	case <-b.done:
		if b.err != nil {
			return fmt.Errorf("%w: kafka: %w", ErrQueue, b.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: kafka: %w", ErrQueue, ctx.Err())
	}
}

// Failed returns the number of messages the producer gave up on.
func (q *KafkaQueue) Failed() uint64 { return q.failed.Load() }

// Close flushes what was sent, waits for its acknowledgements and closes
// the producer. Later Publish calls return ErrClosed. Idempotent.
func (q *KafkaQueue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.mu.Unlock()
	q.producer.AsyncClose()
	q.drained.Wait()
	return nil
}
