package logic

import (
	"context"
	"time"
)

// A synchronous push's work must not stop with its caller's ctx (a push
// handed to the Queue cannot be taken back; the caller just stops
// waiting), yet it must keep ctx's values (a trace id for the Router's
// and the Queue's spans and logs) and end by Config.Timeout so a hung
// backend frees the pool worker. context.WithTimeout over
// context.WithoutCancel(ctx) would do all three at the price of a context
// and a timer per push; workContext gets the same from one shared timer.

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

// workContext is a synchronous push's work context: the caller's values
// with a work bucket's deadline and cancellation. Its Deadline, Done and
// Err are the bucket's; Value is values', which is
// context.WithoutCancel(caller's ctx), so context.Cause reports the
// bucket's error, never the caller's. AfterFunc lets a context derived from
// it (context.WithTimeout in a backend) register with the bucket instead
// of starting a goroutine to watch Done.
type workContext struct {
	context.Context // the work bucket
	values          context.Context
}

// Value returns the caller's value for key.
func (c *workContext) Value(key any) any { return c.values.Value(key) }

// AfterFunc arranges for f to run once the bucket ends, as
// context.AfterFunc does; stop unregisters it.
func (c *workContext) AfterFunc(f func()) (stop func() bool) {
	return context.AfterFunc(c.Context, f)
}
