package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcloud/imcloud"
)

// Errors returned by New, Run and Shutdown.
var (
	// ErrNoSource is returned by New without a Config.Source.
	ErrNoSource = errors.New("job: no source")
	// ErrNoDirectory is returned by New without a Config.Directory.
	ErrNoDirectory = errors.New("job: no node directory")
	// ErrRunning is returned by a second Run.
	ErrRunning = errors.New("job: already running")
	// ErrClosed is returned by Run after Shutdown.
	ErrClosed = errors.New("job: shut down")
)

// Config configures a Job. Every zero field means the default its comment
// names. Source, Directory and the Links that Connect returns are the
// caller's: the job never closes them. Link clients the job dials itself
// (Connect nil) are closed by Shutdown.
type Config struct {
	// Source is the queue to consume (required): logic's memory queue or
	// a kafka.Source.
	Source Source
	// Directory lists the live cloud nodes (required): logic's memory or
	// Redis router.
	Directory NodeDirectory
	// Connect returns the Link to a node; it is called once per node the
	// first time a message is due there, and again after it fails. Nil
	// dials node.LinkAddr with a LinkClient using LinkSecret and
	// LinkOptions. To deliver in process, return the *cloud.Server.
	Connect func(ctx context.Context, node imcloud.Node) (Link, error)
	// LinkSecret is the shared secret the default connector's hello
	// carries.
	LinkSecret string
	// LinkOptions tunes the default connector's link clients.
	LinkOptions LinkOptions
	// DeadLetter sets aside a record whose message has a newer major
	// version (a newer logic wrote it; a newer job will read it), e.g.
	// (*kafka.DeadLetter).Publish. It is tried DeadLetterAttempts times;
	// if it is nil or keeps failing, the record is logged and counted in
	// Stats.DeadLetterFailed, and consumption goes on.
	DeadLetter func(ctx context.Context, rec imcloud.Record) error
	// DeadLetterAttempts bounds the tries per record. Default 5.
	DeadLetterAttempts int

	// MaxBatch caps the messages in one Deliver call to a node. Messages
	// waiting for the same node (room messages above all) are merged up
	// to it: at low rates every call carries one message and goes at
	// once, under load batches grow. Default 512.
	MaxBatch int
	// MaxBatchBytes caps a Deliver call's approximate size. Default 1 MiB.
	MaxBatchBytes int
	// NodeQueue bounds the messages waiting for one node. When a node's
	// queue is full (the node is unreachable and still registered),
	// consumption waits for it; size it to hold a node registration's
	// lifetime of traffic. Default 65536.
	NodeQueue int
	// MaxPending bounds the records received and not yet committed
	// (delivered, or waiting behind an unfinished earlier record of their
	// partition). Consumption waits when it is reached. Default 262144.
	MaxPending int
	// RefreshInterval is how often the node directory is read. A keys
	// message for a node the job does not know yet also triggers a
	// refresh, at most every RefreshInterval/10 (200ms at most). Default 2s.
	RefreshInterval time.Duration
	// RetryMin and RetryMax bound the exponential backoff between
	// attempts to deliver to a node that failed. Defaults 50ms and 2s.
	RetryMin, RetryMax time.Duration
	// Logger receives errors and events. Nil is silent.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.DeadLetterAttempts <= 0 {
		c.DeadLetterAttempts = 5
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 512
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 1 << 20
	}
	if c.NodeQueue <= 0 {
		c.NodeQueue = 65536
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 262144
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = 2 * time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 50 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 2 * time.Second
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Stats are the job's counters since New. Deliveries count one per message
// per node.
type Stats struct {
	// Consumed is the number of records received from the source.
	Consumed uint64
	// Delivered is the number of messages nodes acknowledged.
	Delivered uint64
	// Retried is the number of failed Deliver calls that were retried.
	Retried uint64
	// Skipped is the number of poison records (undecodable, unknown
	// kind), and of messages too large for the link, skipped.
	Skipped uint64
	// Expired is the number of messages dropped past their expiry.
	Expired uint64
	// DeadLettered is the number of records of a newer major version set
	// aside through Config.DeadLetter.
	DeadLettered uint64
	// DeadLetterFailed is the number of such records that could not be
	// set aside (logged, then skipped).
	DeadLetterFailed uint64
	// Abandoned is the number of deliveries given up because their node
	// left the directory (its registration expired).
	Abandoned uint64
	// Unroutable is the number of keys messages whose node is not in the
	// directory, and room and broadcast messages while no node is.
	Unroutable uint64
	// Commits is the number of successful Source.Commit calls.
	Commits uint64
	// CommitErrors is the number of failed Source.Commit calls.
	CommitErrors uint64
	// Pending is the number of records received and not yet committable.
	Pending int
	// Nodes has one entry per node the job delivers to.
	Nodes map[string]NodeStats
}

// NodeStats describe the job's queue to one node.
type NodeStats struct {
	// Addr is the node's link address.
	Addr string
	// Lag is the number of messages waiting for the node or in flight.
	Lag int
	// Oldest is how long the oldest of them has been waiting.
	Oldest time.Duration
	// Delivered is the number of messages the node acknowledged.
	Delivered uint64
	// Retried is the number of failed Deliver calls to it.
	Retried uint64
	// LastError is the last delivery error, "" after a success.
	LastError string
}

type counters struct {
	consumed, delivered, retried, skipped, expired atomic.Uint64
	deadLettered, deadLetterFailed, abandoned      atomic.Uint64
	unroutable, commits, commitErrors              atomic.Uint64
}

// Job consumes the queue and delivers each message to its cloud nodes,
// committing offsets by a contiguous watermark per partition.
type Job struct {
	cfg Config
	log *slog.Logger
	c   counters

	pendingSem chan struct{} // one token per record not yet done

	partsMu sync.Mutex
	parts   map[int32]*partition

	commitSignal chan struct{}

	dir directory

	lifeMu   sync.Mutex
	running  bool
	closed   bool
	draining atomic.Bool
	stopRecv context.CancelFunc // stops receiving
	stopAll  context.CancelFunc // stops workers and commits
	runCtx   context.Context    // the workers' context
	runDone  chan struct{}
	shutOnce sync.Once
}

// New checks cfg and returns a Job ready to Run.
func New(cfg Config) (*Job, error) {
	if cfg.Source == nil {
		return nil, ErrNoSource
	}
	if cfg.Directory == nil {
		return nil, ErrNoDirectory
	}
	cfg = cfg.withDefaults()
	j := &Job{
		cfg:          cfg,
		log:          cfg.Logger,
		pendingSem:   make(chan struct{}, cfg.MaxPending),
		parts:        make(map[int32]*partition),
		commitSignal: make(chan struct{}, 1),
		runDone:      make(chan struct{}),
	}
	j.dir.init(j)
	return j, nil
}

// Run consumes until ctx ends, Shutdown is called, or the source fails
// (Receive returns an error other than the end of ctx: the source was
// closed). It returns nil after ctx ended or Shutdown, and the source's
// error otherwise. Records delivered before Run returns are committed;
// the rest are delivered again by the next consumer.
func (j *Job) Run(ctx context.Context) error {
	j.lifeMu.Lock()
	switch {
	case j.closed:
		j.lifeMu.Unlock()
		return ErrClosed
	case j.running:
		j.lifeMu.Unlock()
		return ErrRunning
	}
	j.running = true
	allCtx, stopAll := context.WithCancel(ctx)
	recvCtx, stopRecv := context.WithCancel(allCtx)
	j.stopAll, j.stopRecv, j.runCtx = stopAll, stopRecv, allCtx
	j.lifeMu.Unlock()
	defer close(j.runDone)
	defer stopAll()

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); j.commitLoop(allCtx) }()
	go func() { defer wg.Done(); j.dir.refreshLoop(allCtx) }()

	err := j.receiveLoop(recvCtx)
	if err != nil {
		// The source failed: stop everything now, keep what was done.
		stopAll()
	}
	<-allCtx.Done()
	wg.Wait()
	j.dir.stopWorkers()
	j.commitNow(context.WithoutCancel(ctx))
	return err
}

// Shutdown stops consuming, lets the records in flight reach their nodes
// and be committed until ctx ends, then stops delivering, commits what was
// done and closes the link clients the job dialed. It returns ctx.Err() if
// ctx ended first (what was not committed is delivered again by the next
// consumer). It is idempotent and safe to call without Run.
func (j *Job) Shutdown(ctx context.Context) error {
	j.lifeMu.Lock()
	j.closed = true
	running := j.running
	stopRecv, stopAll := j.stopRecv, j.stopAll
	j.lifeMu.Unlock()
	if !running {
		j.shutOnce.Do(j.dir.stopWorkers)
		return nil
	}
	j.draining.Store(true)
	stopRecv()
	var err error
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
drain:
	for {
		if j.pendingCount() == 0 {
			break
		}
		select {
		case <-tick.C:
		case <-j.runDone:
			break drain
		case <-ctx.Done():
			err = ctx.Err()
			break drain
		}
	}
	stopAll()
	select {
	case <-j.runDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

// Stats returns the job's counters.
func (j *Job) Stats() Stats {
	s := Stats{
		Consumed:         j.c.consumed.Load(),
		Delivered:        j.c.delivered.Load(),
		Retried:          j.c.retried.Load(),
		Skipped:          j.c.skipped.Load(),
		Expired:          j.c.expired.Load(),
		DeadLettered:     j.c.deadLettered.Load(),
		DeadLetterFailed: j.c.deadLetterFailed.Load(),
		Abandoned:        j.c.abandoned.Load(),
		Unroutable:       j.c.unroutable.Load(),
		Commits:          j.c.commits.Load(),
		CommitErrors:     j.c.commitErrors.Load(),
		Pending:          j.pendingCount(),
		Nodes:            j.dir.nodeStats(),
	}
	return s
}

func (j *Job) pendingCount() int { return len(j.pendingSem) }

// finish records that one target of e is done; the last one releases the
// record toward the watermark.
func (j *Job) finish(e *entry) {
	if e.remaining.Add(-1) != 0 {
		return
	}
	moved := e.p.markDone(e)
	<-j.pendingSem
	if moved {
		select {
		case j.commitSignal <- struct{}{}:
		default:
		}
	}
}

// commitLoop commits watermarks as they move. Commits coalesce: while one
// round runs, further moves wait for the next round.
func (j *Job) commitLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-j.commitSignal:
			j.commitNow(ctx)
		}
	}
}

// commitNow commits every partition whose watermark moved.
func (j *Job) commitNow(ctx context.Context) {
	j.partsMu.Lock()
	parts := make([]*partition, 0, len(j.parts))
	for _, p := range j.parts {
		parts = append(parts, p)
	}
	j.partsMu.Unlock()
	for _, p := range parts {
		off, ok := p.toCommit()
		if !ok {
			continue
		}
		if err := j.cfg.Source.Commit(ctx, p.id, off); err != nil {
			j.c.commitErrors.Add(1)
			if ctx.Err() == nil {
				j.log.Warn("job: commit failed", "partition", p.id, "offset", off, "err", err)
			}
			continue
		}
		j.c.commits.Add(1)
		p.setCommitted(off)
	}
}

// partitionFor returns the tracker for rec's partition, replacing it when
// the source went back (a rebalance handed the partition back from its
// committed offset): the old tracker's records finish on their own but are
// no longer committed from.
func (j *Job) partitionFor(rec imcloud.Record) *partition {
	j.partsMu.Lock()
	defer j.partsMu.Unlock()
	p := j.parts[rec.Partition]
	if p != nil && rec.Offset <= p.lastSeenLocked() {
		j.log.Info("job: partition rewound, tracking again", "partition", rec.Partition,
			"offset", rec.Offset)
		p = nil
	}
	if p == nil {
		p = newPartition(rec.Partition)
		j.parts[rec.Partition] = p
	}
	return p
}

func (p *partition) lastSeenLocked() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastSeen
}

func wrapReceive(err error) error { return fmt.Errorf("job: receive: %w", err) }
