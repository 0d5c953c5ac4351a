package logic

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/panjf2000/ants/v2"
)

// Config configures a Pusher. Every zero field means the documented
// default; Router and Queue are required.
type Config struct {
	// Router resolves keys and mids to nodes and answers online queries.
	// The Pusher never closes it.
	Router Router
	// Queue receives the messages. The Pusher never closes it.
	Queue Queue
	// PoolSize is the number of goroutines the Pusher's ants pool runs at
	// most: the pushes in flight at once. Default 4096: pushes spend most
	// of their time waiting on Redis and Kafka, so many may be in flight.
	PoolSize int
	// MaxBlockingTasks is how many callers may wait for a pool worker
	// when all PoolSize are busy; one more gets ErrOverloaded. Default
	// PoolSize. Negative means none wait: a full pool refuses at once.
	MaxBlockingTasks int
	// PoolExpiry is how long an idle pool worker lives. Default 10s.
	PoolExpiry time.Duration
	// Timeout bounds each push's work (lookup and publish), so a backend
	// that hangs frees the pool worker. A synchronous push's caller waits
	// at most until its own ctx ends; the work goes on until Timeout with
	// ctx's values but not its cancellation (a push already handed to the
	// Queue cannot be taken back anyway). Default 10s.
	Timeout time.Duration
	// SmallPushCost is the largest cost of a small push (see
	// admission.go: targets plus body KiB). Default DefaultSmallPushCost
	// (256).
	SmallPushCost int64
	// MaxSmallPushCost is the cost of the small pushes in flight at once;
	// a small push past it is ErrOverloaded at once. Default
	// DefaultMaxSmallPushCost (65,536). Negative: no bound but the pool.
	MaxSmallPushCost int64
	// MaxPushCost is the cost of the larger pushes in flight at once; a
	// push past it is ErrOverloaded at once, and a push costing more runs
	// only alone. Default DefaultMaxPushCost (100,000: ten pushes of
	// 10,000 mids). Negative: no bound but the pool.
	MaxPushCost int64
	// PushExpiry is the expiry given to pushes that carry none
	// (WithExpiry); job drops a message past it. Default 0: no expiry.
	PushExpiry time.Duration
	// History, when set, turns history on (docs/design.md, recovery): a
	// push to mids is published as one KindMids message per user, keyed
	// by the user's stream, even for users who are offline; job appends
	// it to the user's history and then resolves the user's connections
	// (the Router lookup here only counts the answer's keys and nodes). Pusher.History reads it. Nil, the
	// default: no history, a push to mids is resolved here into one
	// KindKeys message per node, as goim does.
	History History
	// RevokeTTL is how long a kick's revocation (WithRevoke) is kept:
	// give the longest lifetime of a token you issue, since a token
	// issued before the kick is refused until then and valid again
	// after, if it has not expired. Default DefaultRevokeTTL (24 h).
	RevokeTTL time.Duration
	// Logger receives warnings (failed asynchronous pushes). Nil is silent.
	Logger *slog.Logger
}

// Pusher turns push requests into queue messages: key and mid pushes are
// resolved through the Router into one message per target node; room and
// broadcast pushes are one message each. Every push runs on the Pusher's
// ants pool, bounded by Config.PoolSize and Config.MaxBlockingTasks, and
// is admitted by its cost (targets and body size) against one of two
// budgets, small and large pushes apart (Config.MaxSmallPushCost,
// Config.MaxPushCost), so an overload is ErrOverloaded at once, never
// unbounded memory or seconds of waiting, and large pushes cannot starve
// small ones.
//
// Push and PushAsync are the whole push API, for any Target; PushKeys,
// PushMids, PushRoom and Broadcast are Push with the Target spelled out.
// A synchronous push returns nil only once the Queue accepted every
// message. An asynchronous push returns as soon as the pool took it and
// reports the outcome to its callback.
//
// All methods are safe for concurrent use.
type Pusher struct {
	router     Router
	queue      Queue
	history    History // nil: history off
	pool       *ants.Pool
	admit      admission
	pushExpiry time.Duration
	timeout    time.Duration
	revokeTTL  time.Duration
	log        *slog.Logger

	mu       sync.RWMutex // closed; read-held around inflight.Add so Shutdown's Wait comes after every Add
	closed   bool
	inflight sync.WaitGroup
	stopOnce sync.Once
	stopped  chan struct{}
	bucket   atomic.Pointer[workBucket]

	stats struct {
		pushes, failed, overloaded, messages, asyncFailed atomic.Uint64
		duration                                          *imcloud.Histogram
	}
}

// New returns a Pusher running its own ants pool.
func New(cfg Config) (*Pusher, error) {
	if cfg.Router == nil || cfg.Queue == nil {
		return nil, fmt.Errorf("%w: Config.Router and Config.Queue are required", ErrInvalidArgument)
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 4096
	}
	if cfg.MaxBlockingTasks == 0 {
		cfg.MaxBlockingTasks = cfg.PoolSize
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.SmallPushCost <= 0 {
		cfg.SmallPushCost = DefaultSmallPushCost
	}
	if cfg.MaxSmallPushCost == 0 {
		cfg.MaxSmallPushCost = DefaultMaxSmallPushCost
	}
	if cfg.MaxPushCost == 0 {
		cfg.MaxPushCost = DefaultMaxPushCost
	}
	if cfg.PoolExpiry <= 0 {
		cfg.PoolExpiry = 10 * time.Second
	}
	if cfg.RevokeTTL <= 0 {
		cfg.RevokeTTL = DefaultRevokeTTL
	}
	opts := []ants.Option{ants.WithExpiryDuration(cfg.PoolExpiry)}
	if cfg.MaxBlockingTasks < 0 {
		opts = append(opts, ants.WithNonblocking(true))
	} else {
		opts = append(opts, ants.WithMaxBlockingTasks(cfg.MaxBlockingTasks))
	}
	pool, err := ants.NewPool(cfg.PoolSize, opts...)
	if err != nil {
		return nil, fmt.Errorf("logic: ants pool: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pusher{
		router:     cfg.Router,
		queue:      cfg.Queue,
		history:    cfg.History,
		pool:       pool,
		admit:      newAdmission(cfg.SmallPushCost, cfg.MaxSmallPushCost, cfg.MaxPushCost),
		pushExpiry: cfg.PushExpiry,
		timeout:    cfg.Timeout,
		revokeTTL:  cfg.RevokeTTL,
		log:        log,
		stopped:    make(chan struct{}),
	}
	p.stats.duration = imcloud.NewLatencyHistogram()
	return p, nil
}

// Result says what a push targeted.
type Result struct {
	// ID is the push's message id: WithID's, or a new one. Every message
	// of the push carries it.
	ID imcloud.MessageID
	// Nodes is the number of cloud nodes targeted by a key or mid push;
	// 0 for room and broadcast pushes.
	Nodes int
	// Keys is the number of online connection keys a key or mid push
	// targeted when it was accepted. A push to users who are not online
	// succeeds with Keys 0. With history on, job resolves a mid push's
	// users again after appending it to their streams (pusher_history.go),
	// so a connection that appears meanwhile gets it too.
	Keys int
	// Users is the number of users a mid push was published to with
	// history on: one KindMids message each (the distinct positive mids,
	// online or not). 0 for every other push.
	Users int
	// Messages is the number of queue messages published.
	Messages int
	// Offline are the users of a mid push who had no connection when it
	// was accepted (the same lookup as Keys), each once, in the order
	// asked, for a fallback such as mobile push; nil when every user had
	// one, and for every other push. Mids below 1 name nobody and are
	// never listed. It is as fresh as the Router (presence.go).
	Offline []int64
}

// Stats are the Pusher's counters since New.
type Stats struct {
	// Pushes is the number of pushes that completed successfully.
	Pushes uint64
	// Failed is the number of pushes that failed after the pool took them.
	Failed uint64
	// AsyncFailed is the part of Failed that was asynchronous.
	AsyncFailed uint64
	// Overloaded is the number of pushes refused with ErrOverloaded: the
	// pool full, or their cost budget spent (the two fields below).
	Overloaded uint64
	// OverloadedSmallCost is the part of Overloaded refused because the
	// small pushes' cost budget (Config.MaxSmallPushCost) was spent.
	OverloadedSmallCost uint64
	// OverloadedCost is the part of Overloaded refused because the large
	// pushes' cost budget (Config.MaxPushCost) was spent.
	OverloadedCost uint64
	// SmallCost and Cost are the cost of the small and of the large
	// pushes in flight now (see Config.MaxSmallPushCost and MaxPushCost).
	SmallCost, Cost int64
	// Messages is the number of queue messages published.
	Messages uint64
	// Running is the number of pool workers busy now.
	Running int
	// Waiting is the number of callers waiting for a pool worker now.
	Waiting int
	// Duration is the time from a Push or PushAsync call to the Queue
	// accepting every message of the push, for the pushes that succeeded
	// (imcloud.NewLatencyHistogram's buckets).
	Duration imcloud.HistogramSnapshot
}

// Stats returns the Pusher's counters.
func (p *Pusher) Stats() Stats {
	smallHeld, smallRefused := p.admit.small.stats()
	held, refused := p.admit.large.stats()
	return Stats{
		OverloadedSmallCost: smallRefused,
		OverloadedCost:      refused,
		SmallCost:           smallHeld,
		Cost:                held,
		Pushes:              p.stats.pushes.Load(),
		Failed:              p.stats.failed.Load(),
		AsyncFailed:         p.stats.asyncFailed.Load(),
		Overloaded:          p.stats.overloaded.Load(),
		Messages:            p.stats.messages.Load(),
		Running:             p.pool.Running(),
		Waiting:             p.pool.Waiting(),
		Duration:            p.stats.duration.Snapshot(),
	}
}

// Push pushes body with op to t and returns once the Queue accepted
// every message, or once ctx ends (the push may then still complete: see
// Config.Timeout). The work runs on the Pusher's pool with ctx's values
// (context.WithoutCancel: a trace id reaches the Router and the Queue) but
// not its cancellation, bounded by Config.Timeout instead. A bad target,
// op or option is ErrInvalidArgument; a saturated pool or a spent cost
// budget ErrOverloaded; after Shutdown, ErrClosed.
func (p *Pusher) Push(ctx context.Context, t Target, op int32, body []byte, opts ...PushOption) (Result, error) {
	w, err := newPush(t, op, body, opts)
	if err != nil {
		return Result{}, err
	}
	return p.run(ctx, w)
}

// AsyncFunc receives the outcome of an asynchronous push. It runs on a
// pool worker and must not block.
type AsyncFunc func(Result, error)

// PushAsync is Push returning as soon as the pool took the work (or
// ErrOverloaded, ErrClosed or ErrInvalidArgument at once); done, if not
// nil, gets the outcome. ctx bounds the work itself (within
// Config.Timeout) and is not detached: give one that lives until the work
// is done, such as context.WithoutCancel of a request's context, not the
// request's own, which ends with the answer.
func (p *Pusher) PushAsync(ctx context.Context, t Target, op int32, body []byte, done AsyncFunc, opts ...PushOption) error {
	w, err := newPush(t, op, body, opts)
	if err != nil {
		return err
	}
	return p.runAsync(ctx, w, done)
}

// PushKeys pushes body with op to the connections named by keys:
// Push(ctx, ToKeys(keys...), op, body, opts...).
func (p *Pusher) PushKeys(ctx context.Context, op int32, keys []string, body []byte, opts ...PushOption) (Result, error) {
	return p.Push(ctx, ToKeys(keys...), op, body, opts...)
}

// PushMids pushes body with op to every online connection of the users
// mids: Push(ctx, ToMids(mids...), op, body, opts...).
func (p *Pusher) PushMids(ctx context.Context, op int32, mids []int64, body []byte, opts ...PushOption) (Result, error) {
	return p.Push(ctx, ToMids(mids...), op, body, opts...)
}

// PushRoom pushes body with op to every connection in room ("type://id"):
// Push(ctx, ToRoom(room), op, body, opts...).
func (p *Pusher) PushRoom(ctx context.Context, op int32, room string, body []byte, opts ...PushOption) (Result, error) {
	return p.Push(ctx, ToRoom(room), op, body, opts...)
}

// Broadcast pushes body with op to every connection that accepts op, paced
// by job at speed connections per second (0: unpaced):
// Push(ctx, ToAll(), op, body, WithSpeed(speed), opts...).
func (p *Pusher) Broadcast(ctx context.Context, op int32, body []byte, speed int32, opts ...PushOption) (Result, error) {
	return p.Push(ctx, ToAll(), op, body, append([]PushOption{WithSpeed(speed)}, opts...)...)
}

// Shutdown stops accepting pushes (they get ErrClosed), waits for the
// pushes in flight, asynchronous ones included, and releases the pool. It
// returns ctx.Err() if ctx ends first; the pool is released once the
// pushes finish anyway. Idempotent. The Router and Queue stay open: they
// are the caller's.
func (p *Pusher) Shutdown(ctx context.Context) error {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		go func() {
			p.inflight.Wait()
			p.pool.Release()
			close(p.stopped)
		}()
	})
	select {
	case <-p.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close is Shutdown without a deadline.
func (p *Pusher) Close() error { return p.Shutdown(context.Background()) }
