package kafka

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

// ErrSourceClosed is returned by Source.Receive after Close.
var ErrSourceClosed = errors.New("kafka: source closed")

// ErrConfig is returned by NewSource and NewDeadLetter for
// an incomplete configuration.
var ErrConfig = errors.New("kafka: configuration")

// SourceConfig configures a Source. Every zero field means its
// default.
type SourceConfig struct {
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

// Source is a Source on a Kafka consumer group (IBM/sarama). Receive
// hands out the records of the partitions this member owns, in offset order
// per partition. Commit marks the offset after the committed one on the
// group session that owns the partition (sarama's MarkOffset; never
// MarkMessage per acknowledgement: the job commits contiguous watermarks
// only), and marked offsets are flushed every CommitInterval. On a
// rebalance, records of partitions this member lost are discarded and
// commits for them are dropped: the new owner resumes from the committed
// offset and delivers them again.
type Source struct {
	cfg   SourceConfig
	group sarama.ConsumerGroup
	log   *slog.Logger

	records chan claimedRecord
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

type claimedRecord struct {
	rec   imcloud.Record
	epoch uint64
}

// NewSource joins the consumer group and starts consuming in the
// background; Receive hands the records out.
func NewSource(cfg SourceConfig) (*Source, error) {
	if len(cfg.Brokers) == 0 || cfg.GroupID == "" || cfg.Topic == "" {
		return nil, fmt.Errorf("%w: brokers, group id and topic are required", ErrConfig)
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
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	group, err := sarama.NewConsumerGroup(cfg.Brokers, cfg.GroupID, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka: consumer group %s: %w", cfg.GroupID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Source{
		cfg: cfg, group: group, log: log,
		records: make(chan claimedRecord, cfg.Buffer),
		cancel:  cancel, done: make(chan struct{}), closed: make(chan struct{}),
		claims: make(map[int32]*claimState),
	}
	go s.logErrors()
	go s.consume(ctx)
	return s, nil
}

// consume runs group sessions until Close; each rebalance ends a session.
func (s *Source) consume(ctx context.Context) {
	defer close(s.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.group.Consume(ctx, []string{s.cfg.Topic}, (*groupHandler)(s))
		switch {
		case errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil:
			return
		case err != nil:
			s.log.Warn("kafka: group session failed", "group", s.cfg.GroupID, "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(backoff*2, 5*time.Second)
		default:
			backoff = 100 * time.Millisecond
		}
	}
}

func (s *Source) logErrors() {
	for err := range s.group.Errors() {
		s.log.Warn("kafka: consumer error", "group", s.cfg.GroupID, "err", err)
	}
}

// Receive returns the next record of a partition this member owns.
func (s *Source) Receive(ctx context.Context) (imcloud.Record, error) {
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

func (s *Source) owns(partition int32, epoch uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.claims[partition]
	return c != nil && c.epoch == epoch
}

// Commit marks partition as handled up to and including offset on the
// session that owns it; the mark is flushed within CommitInterval. A
// partition this member does not own any more is not an error: the commit
// is dropped.
func (s *Source) Commit(ctx context.Context, partition int32, offset int64) error {
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
func (s *Source) Discarded() uint64 { return s.discarded.Load() }

// Close leaves the group after flushing the marked offsets. Receive
// returns ErrSourceClosed afterwards. It is idempotent.
func (s *Source) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closed)
		s.cancel()
		err = s.group.Close()
		<-s.done
	})
	return err
}

// groupHandler is the sarama.ConsumerGroupHandler of a Source.
type groupHandler Source

func (h *groupHandler) Setup(sess sarama.ConsumerGroupSession) error {
	h.log.Info("kafka: partitions assigned", "group", h.cfg.GroupID,
		"partitions", sess.Claims()[h.cfg.Topic], "generation", sess.GenerationID())
	return nil
}

func (h *groupHandler) Cleanup(sess sarama.ConsumerGroupSession) error {
	sess.Commit() // flush the marks before the partitions move
	return nil
}

func (h *groupHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	s := (*Source)(h)
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
			kr := claimedRecord{epoch: epoch, rec: imcloud.Record{
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
