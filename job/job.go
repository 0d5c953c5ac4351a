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
	// ErrNoLinkSecret is returned by New with neither a Config.Connect nor
	// a Config.LinkSecret: the default Connect's links would be refused by
	// every node. To reach nodes that accept an empty secret
	// (cloud.Config.InsecureLink), give a Connect that returns
	// NewLinkClient(node.LinkAddr, "", opts).
	ErrNoLinkSecret = errors.New("job: no Config.LinkSecret for the default Connect (and no Config.Connect): every node would refuse the link")
	// ErrNoUsers is returned by New with a Config.History and no
	// Config.Users: with history on, logic publishes every push to users
	// as a mids message, which only Users can route.
	ErrNoUsers = errors.New("job: Config.History without Config.Users: pushes to users could not be routed")
	// ErrRunning is returned by a second Run.
	ErrRunning = errors.New("job: already running")
	// ErrClosed is returned by Run after Shutdown.
	ErrClosed = errors.New("job: shut down")
)

// Job consumes the queue and delivers each message to its cloud nodes,
// committing offsets by a contiguous watermark per partition.
type Job struct {
	cfg Config
	// ownsLinks: Connect is the default, whose link clients are the job's.
	ownsLinks bool
	linkRTT   *imcloud.Histogram // the default Connect's link round trips; nil without
	log       *slog.Logger
	c         counters

	pendingSem chan struct{} // one token per record not yet done

	partsMu sync.Mutex
	parts   map[int32]*partition

	commitSignal chan struct{}

	dir directory
	// catchUp is the entry of every catch-up delivery (directory.
	// catchUpLocked): of no partition, so finishing it commits nothing.
	catchUp entry

	stages stages // per partition: history appends and user lookups

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
	if cfg.Connect == nil && cfg.LinkSecret == "" {
		return nil, ErrNoLinkSecret
	}
	if cfg.History != nil && cfg.Users == nil {
		return nil, ErrNoUsers
	}
	cfg = cfg.withDefaults()
	ownsLinks := cfg.Connect == nil
	var linkRTT *imcloud.Histogram
	if ownsLinks {
		opts := cfg.LinkOptions
		if opts.Logger == nil {
			opts.Logger = cfg.Logger
		}
		if opts.RoundTrip == nil {
			opts.RoundTrip = imcloud.NewLatencyHistogram()
		}
		linkRTT = opts.RoundTrip
		cfg.Connect = func(_ context.Context, n imcloud.Node) (Link, error) {
			return NewLinkClient(n.LinkAddr, cfg.LinkSecret, opts), nil
		}
	}
	j := &Job{
		ownsLinks:    ownsLinks,
		linkRTT:      linkRTT,
		cfg:          cfg,
		log:          cfg.Logger,
		pendingSem:   make(chan struct{}, cfg.MaxPending),
		parts:        make(map[int32]*partition),
		commitSignal: make(chan struct{}, 1),
		runDone:      make(chan struct{}),
	}
	j.dir.init(j)
	j.stages.init(j)
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
	j.stages.wait()
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

func (j *Job) pendingCount() int { return len(j.pendingSem) }

func wrapReceive(err error) error { return fmt.Errorf("job: receive: %w", err) }
