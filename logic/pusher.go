package logic

import (
	"context"
	"errors"
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
	// at most until its own ctx ends; the work goes on until Timeout (the
	// work does not stop with the caller's ctx: a push already handed to
	// the Queue cannot be taken back anyway). Default 10s.
	Timeout time.Duration
	// PushExpiry is the expiry given to pushes that carry none
	// (WithExpiry); job drops a message past it. Default 0: no expiry.
	PushExpiry time.Duration
	// Logger receives warnings (failed asynchronous pushes). Nil is silent.
	Logger *slog.Logger
}

// Pusher turns push requests into queue messages: key and mid pushes are
// resolved through the Router into one message per target node; room and
// broadcast pushes are one message each. Every push runs on the Pusher's
// ants pool, bounded by Config.PoolSize and Config.MaxBlockingTasks, so an
// overload is ErrOverloaded, never unbounded memory.
//
// A synchronous push returns nil only once the Queue accepted every
// message. An asynchronous push returns as soon as the pool took it and
// reports the outcome to its callback.
//
// All methods are safe for concurrent use.
type Pusher struct {
	router     Router
	queue      Queue
	pool       *ants.Pool
	pushExpiry time.Duration
	timeout    time.Duration
	log        *slog.Logger

	mu       sync.RWMutex // closed; read-held around inflight.Add so Shutdown's Wait comes after every Add
	closed   bool
	inflight sync.WaitGroup
	stopOnce sync.Once
	stopped  chan struct{}
	bucket   atomic.Pointer[workBucket]

	stats struct {
		pushes, failed, overloaded, messages, asyncFailed atomic.Uint64
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
	if cfg.PoolExpiry <= 0 {
		cfg.PoolExpiry = 10 * time.Second
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
	return &Pusher{
		router:     cfg.Router,
		queue:      cfg.Queue,
		pool:       pool,
		pushExpiry: cfg.PushExpiry,
		timeout:    cfg.Timeout,
		log:        log,
		stopped:    make(chan struct{}),
	}, nil
}

// Result says what a push targeted.
type Result struct {
	// Nodes is the number of cloud nodes targeted (key and mid pushes);
	// 0 for room and broadcast pushes, whose audience job resolves.
	Nodes int
	// Keys is the number of online connection keys targeted (key and mid
	// pushes). A push to users who are not online succeeds with Keys 0.
	Keys int
	// Messages is the number of queue messages published.
	Messages int
}

// PushOption adjusts one push.
type PushOption func(*pushOptions)

type pushOptions struct {
	expires time.Time
	expiry  time.Duration
}

// WithExpiry makes the push expire d after it is accepted: job drops it
// after that (and counts it) rather than deliver something stale.
func WithExpiry(d time.Duration) PushOption {
	return func(o *pushOptions) { o.expiry = d; o.expires = time.Time{} }
}

// WithExpiresAt makes the push expire at t.
func WithExpiresAt(t time.Time) PushOption {
	return func(o *pushOptions) { o.expires = t; o.expiry = 0 }
}

// Stats are the Pusher's counters since New.
type Stats struct {
	// Pushes is the number of pushes that completed successfully.
	Pushes uint64
	// Failed is the number of pushes that failed after the pool took them.
	Failed uint64
	// AsyncFailed is the part of Failed that was asynchronous.
	AsyncFailed uint64
	// Overloaded is the number of pushes refused with ErrOverloaded.
	Overloaded uint64
	// Messages is the number of queue messages published.
	Messages uint64
	// Running is the number of pool workers busy now.
	Running int
	// Waiting is the number of callers waiting for a pool worker now.
	Waiting int
}

// Stats returns the Pusher's counters.
func (p *Pusher) Stats() Stats {
	return Stats{
		Pushes:      p.stats.pushes.Load(),
		Failed:      p.stats.failed.Load(),
		AsyncFailed: p.stats.asyncFailed.Load(),
		Overloaded:  p.stats.overloaded.Load(),
		Messages:    p.stats.messages.Load(),
		Running:     p.pool.Running(),
		Waiting:     p.pool.Waiting(),
	}
}

// push is one unit of work on the pool.
type push struct {
	kind  imcloud.Kind
	op    int32
	keys  []string
	mids  []int64
	room  string
	body  []byte
	speed int32
	opts  pushOptions
}

func (p *Pusher) newPush(kind imcloud.Kind, op int32, opts []PushOption) *push {
	w := &push{kind: kind, op: op}
	for _, o := range opts {
		o(&w.opts)
	}
	return w
}

// PushKeys pushes body with op to the connections named by keys.
func (p *Pusher) PushKeys(ctx context.Context, op int32, keys []string, body []byte, opts ...PushOption) (Result, error) {
	w, err := p.keysPush(op, keys, body, opts)
	if err != nil {
		return Result{}, err
	}
	return p.run(ctx, w)
}

// PushMids pushes body with op to every online connection of the users
// mids.
func (p *Pusher) PushMids(ctx context.Context, op int32, mids []int64, body []byte, opts ...PushOption) (Result, error) {
	w, err := p.midsPush(op, mids, body, opts)
	if err != nil {
		return Result{}, err
	}
	return p.run(ctx, w)
}

// PushRoom pushes body with op to every connection in room ("type://id").
func (p *Pusher) PushRoom(ctx context.Context, op int32, room string, body []byte, opts ...PushOption) (Result, error) {
	w, err := p.roomPush(op, room, body, opts)
	if err != nil {
		return Result{}, err
	}
	return p.run(ctx, w)
}

// Broadcast pushes body with op to every connection that accepts op, paced
// by job at speed connections per second (0: unpaced).
func (p *Pusher) Broadcast(ctx context.Context, op int32, body []byte, speed int32, opts ...PushOption) (Result, error) {
	w, err := p.broadcastPush(op, body, speed, opts)
	if err != nil {
		return Result{}, err
	}
	return p.run(ctx, w)
}

// AsyncFunc receives the outcome of an asynchronous push. It runs on a
// pool worker and must not block.
type AsyncFunc func(Result, error)

// PushKeysAsync is PushKeys returning as soon as the pool took the work
// (or ErrOverloaded/ErrClosed/ErrInvalidArgument at once); done, if not
// nil, gets the outcome. ctx bounds the work itself.
func (p *Pusher) PushKeysAsync(ctx context.Context, op int32, keys []string, body []byte, done AsyncFunc, opts ...PushOption) error {
	w, err := p.keysPush(op, keys, body, opts)
	if err != nil {
		return err
	}
	return p.runAsync(ctx, w, done)
}

// PushMidsAsync is the asynchronous PushMids; see PushKeysAsync.
func (p *Pusher) PushMidsAsync(ctx context.Context, op int32, mids []int64, body []byte, done AsyncFunc, opts ...PushOption) error {
	w, err := p.midsPush(op, mids, body, opts)
	if err != nil {
		return err
	}
	return p.runAsync(ctx, w, done)
}

// PushRoomAsync is the asynchronous PushRoom; see PushKeysAsync.
func (p *Pusher) PushRoomAsync(ctx context.Context, op int32, room string, body []byte, done AsyncFunc, opts ...PushOption) error {
	w, err := p.roomPush(op, room, body, opts)
	if err != nil {
		return err
	}
	return p.runAsync(ctx, w, done)
}

// BroadcastAsync is the asynchronous Broadcast; see PushKeysAsync.
func (p *Pusher) BroadcastAsync(ctx context.Context, op int32, body []byte, speed int32, done AsyncFunc, opts ...PushOption) error {
	w, err := p.broadcastPush(op, body, speed, opts)
	if err != nil {
		return err
	}
	return p.runAsync(ctx, w, done)
}

func checkOp(op int32) error {
	if op <= 0 {
		return fmt.Errorf("%w: operation must be positive, got %d", ErrInvalidArgument, op)
	}
	return nil
}

func (p *Pusher) keysPush(op int32, keys []string, body []byte, opts []PushOption) (*push, error) {
	if err := checkOp(op); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no keys", ErrInvalidArgument)
	}
	for _, k := range keys {
		if k == "" {
			return nil, fmt.Errorf("%w: empty key", ErrInvalidArgument)
		}
	}
	w := p.newPush(imcloud.KindKeys, op, opts)
	w.keys, w.body = keys, body
	return w, nil
}

func (p *Pusher) midsPush(op int32, mids []int64, body []byte, opts []PushOption) (*push, error) {
	if err := checkOp(op); err != nil {
		return nil, err
	}
	if len(mids) == 0 {
		return nil, fmt.Errorf("%w: no mids", ErrInvalidArgument)
	}
	w := p.newPush(imcloud.KindKeys, op, opts)
	w.mids, w.body = mids, body
	return w, nil
}

func (p *Pusher) roomPush(op int32, room string, body []byte, opts []PushOption) (*push, error) {
	if err := checkOp(op); err != nil {
		return nil, err
	}
	typ, id, err := imcloud.ParseRoomKey(room)
	if err != nil || typ == "" || id == "" {
		return nil, fmt.Errorf("%w: room %q is not \"type://id\"", ErrInvalidArgument, room)
	}
	w := p.newPush(imcloud.KindRoom, op, opts)
	w.room, w.body = room, body
	return w, nil
}

func (p *Pusher) broadcastPush(op int32, body []byte, speed int32, opts []PushOption) (*push, error) {
	if err := checkOp(op); err != nil {
		return nil, err
	}
	if speed < 0 {
		return nil, fmt.Errorf("%w: negative speed %d", ErrInvalidArgument, speed)
	}
	w := p.newPush(imcloud.KindBroadcast, op, opts)
	w.body, w.speed = body, speed
	return w, nil
}

// begin registers one push in flight, or refuses it after Shutdown.
func (p *Pusher) begin() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	p.inflight.Add(1)
	return nil
}

// submit hands task to the pool, translating a saturated pool into
// ErrOverloaded.
func (p *Pusher) submit(task func()) error {
	if err := p.pool.Submit(task); err != nil {
		p.inflight.Done()
		if errors.Is(err, ants.ErrPoolOverload) {
			p.stats.overloaded.Add(1)
			return ErrOverloaded
		}
		if errors.Is(err, ants.ErrPoolClosed) {
			return ErrClosed
		}
		return fmt.Errorf("logic: submit: %w", err)
	}
	return nil
}

type outcome struct {
	res Result
	err error
}

var outcomePool = sync.Pool{New: func() any { return make(chan outcome, 1) }}

// run executes w on the pool and waits for it or for ctx. The work itself
// runs under a shared work context bounded by Config.Timeout (workCtx), not
// under ctx: when ctx ends first the caller gets ctx's error at once and
// the push may still complete in the background.
func (p *Pusher) run(ctx context.Context, w *push) (Result, error) {
	if err := p.begin(); err != nil {
		return Result{}, err
	}
	ch := outcomePool.Get().(chan outcome)
	err := p.submit(func() {
		defer p.inflight.Done()
		res, err := p.execute(p.workCtx(), w)
		ch <- outcome{res, err}
	})
	if err != nil {
		outcomePool.Put(ch)
		return Result{}, err
	}
	select {
	case o := <-ch:
		outcomePool.Put(ch)
		return o.res, o.err
	case <-ctx.Done():
		// ch is abandoned to the worker (buffered, so it never blocks).
		return Result{}, ctx.Err()
	}
}

func (p *Pusher) runAsync(ctx context.Context, w *push, done AsyncFunc) error {
	if err := p.begin(); err != nil {
		return err
	}
	return p.submit(func() {
		defer p.inflight.Done()
		ctx, cancel := context.WithTimeout(ctx, p.timeout)
		res, err := p.execute(ctx, w)
		cancel()
		if err != nil {
			p.stats.asyncFailed.Add(1)
			p.log.Warn("logic: asynchronous push failed", "kind", w.kind.String(), "op", w.op, "err", err)
		}
		if done != nil {
			done(res, err)
		}
	})
}

// execute resolves and publishes one push; it runs on a pool worker.
func (p *Pusher) execute(ctx context.Context, w *push) (Result, error) {
	res, err := p.resolveAndPublish(ctx, w)
	if err != nil {
		p.stats.failed.Add(1)
		return res, err
	}
	p.stats.pushes.Add(1)
	p.stats.messages.Add(uint64(res.Messages))
	return res, nil
}

func (p *Pusher) resolveAndPublish(ctx context.Context, w *push) (Result, error) {
	now := time.Now()
	expires := w.opts.expires
	if w.opts.expiry > 0 {
		expires = now.Add(w.opts.expiry)
	} else if expires.IsZero() && p.pushExpiry > 0 {
		expires = now.Add(p.pushExpiry)
	}
	base := imcloud.Message{Kind: w.kind, Op: w.op, Body: w.body, Accepted: now, Expires: expires}
	switch w.kind {
	case imcloud.KindRoom:
		m := base
		m.ID, m.Room = imcloud.NewMessageID(), w.room
		return p.publish(ctx, Result{}, &m)
	case imcloud.KindBroadcast:
		m := base
		m.ID, m.Speed = imcloud.NewMessageID(), w.speed
		return p.publish(ctx, Result{}, &m)
	}
	var (
		routes map[string]string
		err    error
	)
	if w.mids != nil {
		routes, err = p.router.NodesByMids(ctx, w.mids)
	} else {
		routes, err = p.router.NodesByKeys(ctx, w.keys)
	}
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrRouter, err)
	}
	res := Result{Keys: len(routes)}
	switch len(routes) {
	case 0:
		return res, nil
	case 1: // one connection: the common case of a push to one user
		m := base
		for key, node := range routes {
			m.Node, m.Keys = node, []string{key}
		}
		m.ID = imcloud.NewMessageID()
		res.Nodes = 1
		return p.publish(ctx, res, &m)
	}
	// Group keys by node.
	byNode := make(map[string][]string, 2)
	for key, node := range routes {
		byNode[node] = append(byNode[node], key)
	}
	res.Nodes = len(byNode)
	msgs := make([]*imcloud.Message, 0, len(byNode))
	ms := make([]imcloud.Message, len(byNode))
	i := 0
	for node, keys := range byNode {
		m := &ms[i]
		*m = base
		m.ID, m.Node, m.Keys = imcloud.NewMessageID(), node, keys
		msgs = append(msgs, m)
		i++
	}
	return p.publish(ctx, res, msgs...)
}

func (p *Pusher) publish(ctx context.Context, res Result, msgs ...*imcloud.Message) (Result, error) {
	if err := p.queue.Publish(ctx, msgs); err != nil {
		return res, fmt.Errorf("%w: %w", ErrQueue, err)
	}
	res.Messages = len(msgs)
	return res, nil
}

// workBucket is a context shared by the synchronous pushes that start
// within workGranularity of each other, ending Config.Timeout (plus at most
// one granularity) after they started. Sharing it replaces a context and a
// timer per push with one per granularity.
type workBucket struct {
	ctx     context.Context
	started time.Time
}

const workGranularity = 10 * time.Millisecond

// workCtx returns the current work bucket's context.
func (p *Pusher) workCtx() context.Context {
	now := time.Now()
	if b := p.bucket.Load(); b != nil && now.Sub(b.started) < workGranularity {
		return b.ctx
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout+workGranularity)
	_ = cancel // the timer releases it; there is nothing to release early
	b := &workBucket{ctx: ctx, started: now}
	p.bucket.Store(b)
	return ctx
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
