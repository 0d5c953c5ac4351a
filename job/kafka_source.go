package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/nometrics"
)

// ErrSourceClosed is returned by KafkaSource.Receive after Close.
var ErrSourceClosed = errors.New("job: source closed")

// ErrKafkaConfig is returned by NewKafkaSource and NewKafkaDeadLetter for
// an incomplete configuration.
var ErrKafkaConfig = errors.New("job: kafka configuration")

// KafkaSourceConfig configures a KafkaSource. Every zero field means its
// default.
type KafkaSourceConfig struct {
	// Brokers are the bootstrap brokers, host:port (required).
	Brokers []string
	// GroupID is the consumer group (required). Jobs sharing it share the
	// partitions.
	GroupID string
	// Topic is the queue topic (required).
	Topic string
	// InitialOffset is where a group without a committed offset starts:
	// sarama.OffsetOldest (the default: a new group loses nothing) or
	// sarama.OffsetNewest.
	InitialOffset int64
	// Sarama is the base client configuration, for TLS, SASL, the Kafka
	// version and timeouts. Default sarama.NewConfig() with sarama's
	// internal metrics off (a no-op MetricRegistry). It is copied; the
	// source sets Consumer.Return.Errors, Consumer.Offsets (initial offset,
	// auto-commit of marked offsets) and, where the fields below are set,
	// the group session timeouts.
	Sarama *sarama.Config
	// CommitInterval is how often committed watermarks are flushed to the
	// broker (they are flushed on rebalance and Close too). Default 1s.
	CommitInterval time.Duration
	// SessionTimeout is the group session timeout: how long the group
	// waits for a consumer that vanished (a crash) before giving its
	// partitions to another. Default: the Sarama config's (10s).
	SessionTimeout time.Duration
	// Buffer is the number of records fetched ahead of Receive. Default 256.
	Buffer int
	// Logger receives group errors and rebalances. Nil is silent.
	Logger *slog.Logger
}

// KafkaSource is a Source on a Kafka consumer group (IBM/sarama). Receive
// hands out the records of the partitions this member owns, in offset order
// per partition. Commit marks the offset after the committed one on the
// group session that owns the partition (sarama's MarkOffset; never
// MarkMessage per acknowledgement: the job commits contiguous watermarks
// only), and marked offsets are flushed every CommitInterval. On a
// rebalance, records of partitions this member lost are discarded and
// commits for them are dropped: the new owner resumes from the committed
// offset and delivers them again.
type KafkaSource struct {
	cfg   KafkaSourceConfig
	group sarama.ConsumerGroup
	log   *slog.Logger

	records chan kafkaRecord
	cancel  context.CancelFunc
	done    chan struct{}
	closed  chan struct{}
	once    sync.Once

	mu     sync.Mutex
	claims map[int32]*claimState // owned partitions
	epoch  atomic.Uint64

	discarded atomic.Uint64
}

type claimState struct {
	epoch uint64
	sess  sarama.ConsumerGroupSession
}

type kafkaRecord struct {
	rec   imcloud.Record
	epoch uint64
}

var _ Source = (*KafkaSource)(nil)

// NewKafkaSource joins the consumer group and starts consuming in the
// background; Receive hands the records out.
func NewKafkaSource(cfg KafkaSourceConfig) (*KafkaSource, error) {
	if len(cfg.Brokers) == 0 || cfg.GroupID == "" || cfg.Topic == "" {
		return nil, fmt.Errorf("%w: brokers, group id and topic are required", ErrKafkaConfig)
	}
	sc := sarama.NewConfig()
	sc.MetricRegistry = nometrics.Registry{}
	if cfg.Sarama != nil {
		c := *cfg.Sarama
		sc = &c
	}
	if cfg.InitialOffset == 0 {
		cfg.InitialOffset = sarama.OffsetOldest
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = time.Second
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 256
	}
	sc.Consumer.Return.Errors = true
	sc.Consumer.Offsets.Initial = cfg.InitialOffset
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = cfg.CommitInterval
	if cfg.SessionTimeout > 0 {
		sc.Consumer.Group.Session.Timeout = cfg.SessionTimeout
		sc.Consumer.Group.Heartbeat.Interval = max(cfg.SessionTimeout/6, 100*time.Millisecond)
	}
	if err := sc.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKafkaConfig, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	group, err := sarama.NewConsumerGroup(cfg.Brokers, cfg.GroupID, sc)
	if err != nil {
		return nil, fmt.Errorf("job: kafka consumer group %s: %w", cfg.GroupID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &KafkaSource{
		cfg: cfg, group: group, log: log,
		records: make(chan kafkaRecord, cfg.Buffer),
		cancel:  cancel, done: make(chan struct{}), closed: make(chan struct{}),
		claims: make(map[int32]*claimState),
	}
	go s.logErrors()
	go s.consume(ctx)
	return s, nil
}

// consume runs group sessions until Close; each rebalance ends a session.
func (s *KafkaSource) consume(ctx context.Context) {
	defer close(s.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.group.Consume(ctx, []string{s.cfg.Topic}, (*kafkaHandler)(s))
		switch {
		case errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil:
			return
		case err != nil:
			s.log.Warn("job: kafka group session failed", "group", s.cfg.GroupID, "err", err)
			if !sleepCtx(ctx, backoff) {
				return
			}
			backoff = min(backoff*2, 5*time.Second)
		default:
			backoff = 100 * time.Millisecond
		}
	}
}

func (s *KafkaSource) logErrors() {
	for err := range s.group.Errors() {
		s.log.Warn("job: kafka consumer error", "group", s.cfg.GroupID, "err", err)
	}
}

// Receive returns the next record of a partition this member owns.
func (s *KafkaSource) Receive(ctx context.Context) (imcloud.Record, error) {
	for {
		select {
		case kr := <-s.records:
			if s.owns(kr.rec.Partition, kr.epoch) {
				return kr.rec, nil
			}
			s.discarded.Add(1) // fetched before a rebalance took the partition
		case <-ctx.Done():
			return imcloud.Record{}, ctx.Err()
		case <-s.closed:
			return imcloud.Record{}, ErrSourceClosed
		}
	}
}

func (s *KafkaSource) owns(partition int32, epoch uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.claims[partition]
	return c != nil && c.epoch == epoch
}

// Commit marks partition as handled up to and including offset on the
// session that owns it; the mark is flushed within CommitInterval. A
// partition this member does not own any more is not an error: the commit
// is dropped.
func (s *KafkaSource) Commit(ctx context.Context, partition int32, offset int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.claims[partition]
	if c == nil {
		return nil
	}
	c.sess.MarkOffset(s.cfg.Topic, partition, offset+1, "")
	return nil
}

// Discarded is the number of records dropped because a rebalance took
// their partition away before Receive handed them out.
func (s *KafkaSource) Discarded() uint64 { return s.discarded.Load() }

// Close leaves the group after flushing the marked offsets. Receive
// returns ErrSourceClosed afterwards. It is idempotent.
func (s *KafkaSource) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		s.cancel()
		err = s.group.Close()
		<-s.done
	})
	return err
}

// kafkaHandler is the sarama.ConsumerGroupHandler of a KafkaSource.
type kafkaHandler KafkaSource

func (h *kafkaHandler) Setup(sess sarama.ConsumerGroupSession) error {
	h.log.Info("job: kafka partitions assigned", "group", h.cfg.GroupID,
		"partitions", sess.Claims()[h.cfg.Topic], "generation", sess.GenerationID())
	return nil
}

func (h *kafkaHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	sess.Commit() // flush the marks before the partitions move
	return nil
}

func (h *kafkaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	s := (*KafkaSource)(h)
	p := claim.Partition()
	epoch := s.epoch.Add(1)
	s.mu.Lock()
	s.claims[p] = &claimState{epoch: epoch, sess: sess}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if c := s.claims[p]; c != nil && c.epoch == epoch {
			delete(s.claims, p)
		}
		s.mu.Unlock()
	}()
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			kr := kafkaRecord{epoch: epoch, rec: imcloud.Record{
				Partition: msg.Partition, Offset: msg.Offset, Key: msg.Key, Value: msg.Value,
			}}
			select {
			case s.records <- kr:
			case <-sess.Context().Done():
				return nil
			}
		case <-sess.Context().Done():
			return nil
		}
	}
}
