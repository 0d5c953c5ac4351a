package logic

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/protocol"
	"github.com/panjf2000/ants/v2"
)

// A push runs in three steps: newPush checks it on the caller's goroutine
// (ErrInvalidArgument at once), run or runAsync hands it to the pool
// (ErrOverloaded or ErrClosed at once), and execute resolves it to nodes
// through the Router and publishes its messages to the Queue on a pool
// worker.

// push is one unit of work on the pool.
type push struct {
	target Target
	op     int32
	body   []byte
	opts   pushOptions
	start  time.Time // when Push or PushAsync was called
	class  costClass // the budget it holds
	cost   int64     // what it holds of it
	// ctx is a synchronous push's work context (see workContext), kept
	// here to save an allocation per push.
	ctx workContext
}

// newPush checks a push and returns its unit of work.
func newPush(t Target, op int32, body []byte, opts []PushOption) (*push, error) {
	if op < protocol.OpPushMin {
		return nil, fmt.Errorf("%w: got %d", ErrInvalidOp, op)
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	w := &push{target: t, op: op, body: body, start: time.Now()}
	for _, o := range opts {
		o(&w.opts)
	}
	if err := w.opts.check(t); err != nil {
		return nil, err
	}
	if w.opts.id.IsZero() {
		w.opts.id = imcloud.NewMessageID()
	}
	return w, nil
}

// begin registers one push in flight and admits it by its cost, or
// refuses it: ErrClosed after Shutdown, ErrOverloaded when its cost
// budget is spent.
func (p *Pusher) begin(w *push) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	class, took, ok := p.admit.acquire(pushCost(w.target, w.body, p.history != nil))
	if !ok {
		p.stats.overloaded.Add(1)
		return ErrOverloaded
	}
	w.class, w.cost = class, took
	p.inflight.Add(1)
	return nil
}

// end releases what begin took.
func (p *Pusher) end(w *push) {
	p.admit.release(w.class, w.cost)
	p.inflight.Done()
}

// submit hands w's task to the pool, translating a saturated pool into
// ErrOverloaded.
func (p *Pusher) submit(w *push, task func()) error {
	if err := p.pool.Submit(task); err != nil {
		p.end(w)
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

// run executes w on the pool and waits for it or for ctx. The work runs
// under a workContext: ctx's values, the shared work bucket's deadline and
// cancellation, so when ctx ends first the caller gets ctx's error at once
// and the push may still complete in the background.
func (p *Pusher) run(ctx context.Context, w *push) (Result, error) {
	if err := p.begin(w); err != nil {
		return Result{}, err
	}
	w.ctx = workContext{Context: p.workCtx(), values: context.WithoutCancel(ctx)}
	ch := outcomePool.Get().(chan outcome)
	err := p.submit(w, func() {
		var o outcome
		func() {
			defer p.end(w) // before the answer: a caller that saw its push end never finds its cost held
			o.res, o.err = p.execute(&w.ctx, w)
		}()
		ch <- o
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
	if err := p.begin(w); err != nil {
		return err
	}
	return p.submit(w, func() {
		defer p.end(w)
		ctx, cancel := context.WithTimeout(ctx, p.timeout)
		res, err := p.execute(ctx, w)
		cancel()
		if err != nil {
			p.stats.asyncFailed.Add(1)
			p.log.Warn("logic: asynchronous push failed", "target", w.target.Kind.String(), "op", w.op, "err", err)
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
	p.stats.duration.ObserveSince(w.start)
	return res, nil
}

func (p *Pusher) resolveAndPublish(ctx context.Context, w *push) (Result, error) {
	now := time.Now()
	base := imcloud.Message{
		ID: w.opts.id, Kind: w.target.messageKind(), Op: w.op, Body: w.body,
		Accepted: now, Expires: w.opts.expiresAt(now, p.pushExpiry),
	}
	var (
		routes  map[string]string
		offline []int64
		err     error
	)
	switch w.target.Kind {
	case TargetRoom:
		m := base
		m.Room = w.target.Room
		return p.publish(ctx, Result{ID: m.ID}, &m)
	case TargetAll:
		m := base
		m.Speed = w.opts.speed
		return p.publish(ctx, Result{ID: m.ID}, &m)
	case TargetMids:
		if p.history != nil {
			return p.publishUsers(ctx, base, w.target.Mids)
		}
		routes, offline, err = p.lookupUsers(ctx, w.target.Mids)
	default:
		routes, err = p.router.NodesByKeys(ctx, w.target.Keys)
	}
	if err != nil {
		return Result{ID: base.ID}, wrapErr(ErrRouter, err)
	}
	res := Result{ID: base.ID, Keys: len(routes), Offline: offline}
	switch len(routes) {
	case 0:
		return res, nil
	case 1: // one connection: the common case of a push to one user
		m := base
		for key, node := range routes {
			m.Node, m.Keys = node, []string{key}
		}
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
		m.Node, m.Keys = node, keys
		msgs = append(msgs, m)
		i++
	}
	return p.publish(ctx, res, msgs...)
}

func (p *Pusher) publish(ctx context.Context, res Result, msgs ...*imcloud.Message) (Result, error) {
	if err := p.queue.Publish(ctx, msgs); err != nil {
		return res, wrapErr(ErrQueue, err)
	}
	res.Messages = len(msgs)
	return res, nil
}
