package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/imcloud/imcloud/internal/nometrics"
	"github.com/imcloud/imcloud/logic"
)

// ProducerConfig configures an EventProducer or an UpstreamProducer.
// Every zero field means the documented default.
type ProducerConfig struct {
	// Brokers are the bootstrap brokers, host:port. Required.
	Brokers []string
	// Topic is where the messages go; it must exist (New checks its
	// metadata). Default "imcloud-push.events" for the EventProducer,
	// "imcloud-push.upstream" for the UpstreamProducer: the push topic's
	// name with a suffix (EventsTopic, UpstreamTopic).
	Topic string
	// Sarama, when set, is the producer configuration (TLS, SASL,
	// timeouts, acks, retries, compression, partitioner). Nil means
	// NewAsyncProducerConfig(). Whatever it says, Producer.Return.Successes
	// and Errors are on (the producer counts both) and topics are not
	// created automatically (a missing topic is an error at New).
	Sarama *sarama.Config
	// Buffer bounds the messages waiting for sarama's producer; a message
	// that finds it full is dropped and counted (ProducerStats.Dropped):
	// the caller never waits for the broker. Default 65536.
	Buffer int
	// Logger receives producer problems. Nil is silent.
	Logger *slog.Logger
}

// defaultTopic is the push topic's default name (QueueConfig.Topic).
const defaultTopic = "imcloud-push"

// EventsTopic names the event producer's topic after the push topic
// (QueueConfig.Topic): "<push topic>.events".
func EventsTopic(pushTopic string) string { return pushTopic + ".events" }

// UpstreamTopic names the upstream producer's topic after the push topic:
// "<push topic>.upstream".
func UpstreamTopic(pushTopic string) string { return pushTopic + ".upstream" }

// ErrNoTopic is returned by NewEventProducer and NewUpstreamProducer when
// the topic does not exist.
var ErrNoTopic = errors.New("kafka: topic does not exist")

// NewAsyncProducerConfig returns the default configuration of the event
// and upstream producers, to adjust and pass as ProducerConfig.Sarama:
// RequiredAcks WaitForAll and Retry.Max 5, 100ms apart, as the push
// Queue's (NewProducerConfig); one request in flight per broker
// (Net.MaxOpenRequests 1), so a retried batch is not overtaken and a
// connection's messages (one partition, by key) stay in order; hash
// partitioning by key; LZ4 compression; sarama's metrics off.
func NewAsyncProducerConfig() *sarama.Config {
	c := NewProducerConfig()
	c.ClientID = "imcloud-cloud"
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	return c
}

// ProducerStats are a producer's counters since New.
type ProducerStats struct {
	// Sent counts the messages the brokers acknowledged.
	Sent uint64
	// Errors counts the messages the producer gave up on (after its
	// retries).
	Errors uint64
	// Dropped counts the messages dropped because Buffer was full (the
	// brokers slower than the node, or down) or the producer closed.
	Dropped uint64
}

// asyncProducer is what the event and upstream producers share: sarama's
// AsyncProducer behind a bounded buffer that never makes its caller wait.
// One goroutine moves the buffer into sarama's input, two count
// sarama's successes and errors.
type asyncProducer struct {
	topic    string
	client   sarama.Client
	producer sarama.AsyncProducer
	log      *slog.Logger

	mu     sync.RWMutex // held to send on buf; closing takes it exclusively
	closed bool
	buf    chan *sarama.ProducerMessage

	wg        sync.WaitGroup // the forwarder and the counters
	closeOnce sync.Once
	closeErr  error

	sent, failed, dropped atomic.Uint64
}

// newAsyncProducer connects to cfg.Brokers and checks that cfg.Topic
// (topic when empty) exists.
func newAsyncProducer(cfg ProducerConfig, topic string) (*asyncProducer, error) {
	if len(cfg.Brokers) == 0 {
		return nil, fmt.Errorf("%w: ProducerConfig.Brokers is required", logic.ErrInvalidArgument)
	}
	if cfg.Topic != "" {
		topic = cfg.Topic
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 1 << 16
	}
	sc := cfg.Sarama
	if sc == nil {
		sc = NewAsyncProducerConfig()
	} else {
		cp := *sc
		sc = &cp
	}
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Metadata.AllowAutoTopicCreation = false
	if sc.MetricRegistry == nil {
		sc.MetricRegistry = nometrics.Registry{}
	}
	client, err := sarama.NewClient(cfg.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("%w: kafka producer: %w", logic.ErrQueue, err)
	}
	if err := checkTopic(client, topic); err != nil {
		_ = client.Close()
		return nil, err
	}
	producer, err := sarama.NewAsyncProducerFromClient(client)
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("%w: kafka producer: %w", logic.ErrQueue, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &asyncProducer{topic: topic, client: client, producer: producer, log: log,
		buf: make(chan *sarama.ProducerMessage, cfg.Buffer)}
	a.wg.Add(3)
	go a.forward()
	go a.countSuccesses()
	go a.countErrors()
	return a, nil
}

// checkTopic fails with ErrNoTopic if topic has no partitions.
func checkTopic(client sarama.Client, topic string) error {
	if err := client.RefreshMetadata(topic); err != nil {
		if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return fmt.Errorf("%w: %q (create it, or give another topic)", ErrNoTopic, topic)
		}
		return fmt.Errorf("%w: kafka producer: metadata of %q: %w", logic.ErrQueue, topic, err)
	}
	parts, err := client.Partitions(topic)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) || err == nil && len(parts) == 0 {
		return fmt.Errorf("%w: %q (create it, or give another topic)", ErrNoTopic, topic)
	}
	if err != nil {
		return fmt.Errorf("%w: kafka producer: metadata of %q: %w", logic.ErrQueue, topic, err)
	}
	return nil
}

// send queues one message without waiting: dropped and counted when the
// buffer is full or the producer closed.
func (a *asyncProducer) send(key, value []byte, headers []sarama.RecordHeader) {
	m := &sarama.ProducerMessage{Topic: a.topic, Key: sarama.ByteEncoder(key), Value: sarama.ByteEncoder(value),
		Headers: headers, Timestamp: time.Now()}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		a.dropped.Add(1)
		return
	}
	select {
	case a.buf <- m:
	default:
		a.dropped.Add(1)
	}
}

// forward moves the buffer into sarama's producer, in order, until the
// buffer is closed; then it closes the producer's input.
func (a *asyncProducer) forward() {
	defer a.wg.Done()
	for m := range a.buf {
		a.producer.Input() <- m
	}
	a.producer.AsyncClose()
}

func (a *asyncProducer) countSuccesses() {
	defer a.wg.Done()
	for range a.producer.Successes() {
		a.sent.Add(1)
	}
}

func (a *asyncProducer) countErrors() {
	defer a.wg.Done()
	logged := false
	for pe := range a.producer.Errors() {
		a.failed.Add(1)
		if !logged {
			// Once per producer: the counters say the rest.
			a.log.Warn("kafka: producing failed (counted; logged once)", "topic", a.topic, "err", pe.Err)
			logged = true
		}
	}
}

// close sends what is buffered, waits for its acknowledgements or its
// failure after the retries, and closes the connections. Idempotent.
func (a *asyncProducer) close() error {
	a.closeOnce.Do(func() {
		a.mu.Lock()
		a.closed = true
		close(a.buf)
		a.mu.Unlock()
		a.wg.Wait()
		a.closeErr = a.client.Close()
	})
	return a.closeErr
}

func (a *asyncProducer) stats() ProducerStats {
	return ProducerStats{Sent: a.sent.Load(), Errors: a.failed.Load(), Dropped: a.dropped.Load()}
}
