package kafka

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
	"github.com/imcloud/imcloud/logic"
)

// QueueConfig configures a Queue. Every zero field means the
// documented default.
type QueueConfig struct {
	// Brokers are the bootstrap brokers, host:port. Required.
	Brokers []string
	// Topic is where messages go. Default "imcloud-push".
	Topic string
	// Sarama, when set, is the producer configuration. Set TLS (Net.TLS),
	// SASL (Net.SASL), timeouts, required acks, retries, compression and
	// the partitioner there. Nil means NewProducerConfig(). The queue
	// uses what sarama's producer would except the settings of its internal
	// pipeline: the Flush linger and threshold settings other than
	// Flush.MaxMessages (batches are opportunistic, see Queue),
	// ChannelBufferSize, Producer.Return and Net.MaxOpenRequests (one
	// request in flight per broker, always). A custom Partitioner or
	// interceptor sees each message's Key and Value as plain
	// sarama.Encoders (call Encode; they are not StringEncoder or
	// ByteEncoder); the key is PartitionKey's. Interceptors may add
	// headers.
	Sarama *sarama.Config
	// Logger receives producer problems. Nil is silent.
	Logger *slog.Logger
}

// NewProducerConfig returns the Queue's default producer
// configuration, to adjust and pass as QueueConfig.Sarama:
//
//   - RequiredAcks WaitForAll: a message is accepted once every in-sync
//     replica has it, so an acknowledged push survives a broker loss;
//   - Retry.Max 5, 100ms apart: a partition whose leader moved is
//     retried ahead of what waits behind it, so one node's or one room's
//     pushes stay in order (duplicates from a retry are dropped by cloud's
//     id filter);
//   - LZ4 compression; batches are opportunistic (while a produce request
//     is in flight the next batch fills, up to Producer.MaxMessageBytes
//     per partition; Flush.MaxMessages 0: no cap on the count), so
//     throughput grows with load without a fixed linger delay;
//   - dial, read and write timeouts of 5s, 10s and 10s, so a dead broker
//     is an error in seconds rather than sarama's 30s;
//   - sarama's internal metrics off (MetricRegistry is a no-op registry):
//     they update meters and histograms per request and per message. Set
//     MetricRegistry to metrics.NewRegistry() to have them.
func NewProducerConfig() *sarama.Config {
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
	c.MetricRegistry = nometrics.Registry{}
	return c
}

// Queue is the Queue over Kafka (IBM/sarama): an asynchronous
// producer, batching and compressing underneath a Publish that waits for
// each of its messages' own acknowledgement. The partition key is
// PartitionKey: the node id for keys messages, the room for room messages,
// the user's stream ("u:42") for mids messages, BroadcastKey for
// broadcasts, so each keeps its order.
//
// It produces through sarama's Client (metadata, leaders, connections,
// TLS, SASL) and Broker.AsyncProduce rather than sarama's AsyncProducer:
// every Publish appends its records to one queue, and one goroutine moves
// them into per-partition queues and sends each leader broker that has no
// request in flight one request with what its partitions hold. One request
// per broker and per partition in flight keeps each partition in order.
// While a request is in flight the next batch fills; there is no linger
// delay. sarama's AsyncProducer passes each message through four
// goroutines and channels before it reaches a request and its answer
// through two more, a wake-up each, and its batches come out smaller:
// the two were measured side by side in alternated runs (BENCHMARKS.md,
// logic).
//
// Failed partitions are retried as sarama's producer retries them (the
// same errors, Producer.Retry.Max per record, Retry.Backoff or
// BackoffFunc, a metadata refresh first), ahead of anything queued after
// them; a failing partition or a slow broker holds up only its own
// records. Idempotent and transactional production are not supported.
//
// Safe for concurrent use. Source is the consuming side.
type Queue struct {
	topic       string
	conf        *sarama.Config
	client      sarama.Client
	partitioner sarama.Partitioner
	log         *slog.Logger

	mu      sync.Mutex
	pending []*pendingRecord // in Publish order, not yet taken by the sender
	closed  bool
	kick    chan struct{} // wakes the sender when pending stops being empty
	stopped chan struct{} // closed when the sender has finished

	outstanding atomic.Int64 // records published and not yet finished
	failed      atomic.Uint64
}

// MaxPendingRecords bounds the records published and not yet acknowledged
// or failed. A Publish that would pass it fails with ErrOverloaded: the
// broker is slower than the callers, or gone.
const MaxPendingRecords = 1 << 16

// NewQueue connects a producer to cfg.Brokers. It fails if no broker
// answers, if the configured Kafka version is older than 0.11 (record
// batches are required), or if idempotent or transactional production is
// configured.
func NewQueue(cfg QueueConfig) (*Queue, error) {
	if len(cfg.Brokers) == 0 {
		return nil, fmt.Errorf("%w: QueueConfig.Brokers is required", logic.ErrInvalidArgument)
	}
	if cfg.Topic == "" {
		cfg.Topic = "imcloud-push"
	}
	sc := cfg.Sarama
	if sc == nil {
		sc = NewProducerConfig()
	} else {
		cp := *sc
		sc = &cp
	}
	switch {
	case !sc.Version.IsAtLeast(sarama.V0_11_0_0):
		return nil, fmt.Errorf("%w: Queue needs Kafka version 0.11 or later, configured %s", logic.ErrInvalidArgument, sc.Version)
	case sc.Producer.Idempotent, sc.Producer.Transaction.ID != "":
		return nil, fmt.Errorf("%w: Queue does not support idempotent or transactional production", logic.ErrInvalidArgument)
	}
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("%w: kafka producer: %w", logic.ErrQueue, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := &Queue{
		topic:       cfg.Topic,
		conf:        sc,
		client:      client,
		partitioner: sc.Producer.Partitioner(cfg.Topic),
		log:         log,
		kick:        make(chan struct{}, 1),
		stopped:     make(chan struct{}),
	}
	go q.sender()
	return q, nil
}

// publishBatch tracks one Publish call's messages until each is acknowledged
// or failed. A call with one message (a push to one user's connections on
// one node, the common case) keeps its record inside the batch.
type publishBatch struct {
	remaining atomic.Int32
	mu        sync.Mutex
	err       error
	done      chan struct{}
	one       [1]pendingRecord
}

func (b *publishBatch) finish(err error) {
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

// pendingRecord is one message on its way: its partition, its bytes and the
// sarama record that carries them in a request. pm is what the partitioner
// and interceptors see; its key and value are their own encoders, so the
// message is handed over without boxing a StringEncoder and a ByteEncoder.
type pendingRecord struct {
	batch     *publishBatch
	partition int32     // set by the sender
	created   time.Time // wall clock only (no monotonic reading)
	attempts  int       // retries so far
	pm        sarama.ProducerMessage
	key       recordBytes
	value     recordBytes
	rec       sarama.Record
}

// recordBytes is a record's key or value as a sarama.Encoder.
type recordBytes struct{ b []byte }

func (r *recordBytes) Encode() ([]byte, error) { return r.b, nil }
func (r *recordBytes) Length() int             { return len(r.b) }

// Publish sends msgs and returns once the broker acknowledged every one,
// or the first failure (after the retries), or ctx's error. On an error
// some of the messages may still be written.
func (q *Queue) Publish(ctx context.Context, msgs []*imcloud.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	b := &publishBatch{done: make(chan struct{})}
	b.remaining.Store(int32(len(msgs)))
	recs := b.one[:]
	if len(msgs) > 1 {
		recs = make([]pendingRecord, len(msgs))
	}
	now := time.Now().Round(0) // the record's timestamp: wall clock
	for i, m := range msgs {
		if err := m.Validate(); err != nil {
			return fmt.Errorf("%w: %w", logic.ErrInvalidArgument, err)
		}
		r := &recs[i]
		r.batch, r.created = b, now
		r.key.b = []byte(logic.PartitionKey(m))
		r.value.b, _ = m.MarshalBinary()
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return logic.ErrClosed
	}
	if n := q.outstanding.Load(); n+int64(len(recs)) > MaxPendingRecords {
		q.mu.Unlock()
		return fmt.Errorf("%w: kafka: %d messages already wait for the broker", logic.ErrOverloaded, n)
	}
	q.outstanding.Add(int64(len(recs)))
	wake := len(q.pending) == 0
	for i := range recs {
		q.pending = append(q.pending, &recs[i])
	}
	q.mu.Unlock()
	if wake {
		select {
		case q.kick <- struct{}{}:
		default: // the sender is already woken
		}
	}
	select {
	case <-b.done:
		if b.err != nil {
			return fmt.Errorf("%w: kafka: %w", logic.ErrQueue, b.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: kafka: %w", logic.ErrQueue, ctx.Err())
	}
}

// assignPartition runs the interceptors and the partitioner on r, as
// sarama's producer does, and takes the key and value back from the
// message in case an interceptor changed them. Only the sender calls it:
// sarama's partitioners are not safe for concurrent use.
func (q *Queue) assignPartition(r *pendingRecord) error {
	r.pm = sarama.ProducerMessage{Topic: q.topic, Key: &r.key, Value: &r.value}
	if len(q.conf.Producer.Interceptors) > 0 {
		q.intercept(&r.pm)
		var err error
		if r.key.b, err = encodeOrNil(r.pm.Key); err != nil {
			return err
		}
		if r.value.b, err = encodeOrNil(r.pm.Value); err != nil {
			return err
		}
	}
	consistent := q.partitioner.RequiresConsistency()
	if dp, ok := q.partitioner.(sarama.DynamicConsistencyPartitioner); ok {
		consistent = dp.MessageRequiresConsistency(&r.pm)
	}
	var parts []int32
	var err error
	if consistent {
		parts, err = q.client.Partitions(q.topic)
	} else {
		parts, err = q.client.WritablePartitions(q.topic)
	}
	if err != nil {
		return err
	}
	if len(parts) == 0 {
		return sarama.ErrLeaderNotAvailable
	}
	i, err := q.partitioner.Partition(&r.pm, int32(len(parts)))
	if err != nil {
		return err
	}
	if i < 0 || int(i) >= len(parts) {
		return sarama.ErrInvalidPartition
	}
	r.partition = parts[i]
	return nil
}

// intercept runs the interceptors on pm. A panicking interceptor is
// logged and skipped, as sarama's producer does: the push still goes.
func (q *Queue) intercept(pm *sarama.ProducerMessage) {
	for _, ic := range q.conf.Producer.Interceptors {
		func() {
			defer func() {
				if v := recover(); v != nil {
					q.log.Error("kafka: producer interceptor panicked", "panic", v)
				}
			}()
			ic.OnSend(pm)
		}()
	}
}

func encodeOrNil(e sarama.Encoder) ([]byte, error) {
	if e == nil {
		return nil, nil
	}
	return e.Encode()
}

// finish ends r's journey: acknowledged (err nil) or failed.
func (q *Queue) finish(r *pendingRecord, err error) {
	q.outstanding.Add(-1)
	if err != nil {
		q.failed.Add(1)
	}
	r.batch.finish(err)
}

// Failed returns the number of messages the producer gave up on.
func (q *Queue) Failed() uint64 { return q.failed.Load() }

// Close sends what was published, waits for its acknowledgements (or its
// failure after the retries) and closes the connections. Later Publish
// calls return ErrClosed. Idempotent.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		<-q.stopped
		return nil
	}
	q.closed = true
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
	<-q.stopped
	return q.client.Close()
}
