package logic

import (
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Cost admission bounds the work in flight by what it costs, not only by
// the number of pushes: a push of 10,000 mids holds a Redis lookup, its
// routes and its messages, as much as thousands of pushes to one user.
//
// A push's cost is the targets it resolves (its keys or mids; 1 for a
// room or a broadcast, whose audience job resolves) plus its body in whole
// KiB (a body under 1 KiB adds nothing). A push of at most
// Config.SmallPushCost is small and draws on the small budget
// (Config.MaxSmallPushCost), any other on the large budget
// (Config.MaxPushCost): a burst of large pushes spends only its own budget,
// so pushes to a few users keep moving whatever the large ones do. A push
// that does not fit the budget left is refused at once with ErrOverloaded
// (HTTP 503 with Retry-After): waiting would turn overload into seconds of
// latency for everyone behind it. A push costing more than its whole
// budget is admitted as costing the whole budget: it runs only alone.
//
// With history on (Config.History), a mid push is published as one
// message per user, each carrying the body: its cost is per user, the
// mids times one plus the body's whole KiB, since that is what it puts
// on the queue.

// Cost admission defaults (Config.SmallPushCost, MaxSmallPushCost,
// MaxPushCost).
const (
	// DefaultSmallPushCost makes a push to up to about 250 users with a
	// small body a small push.
	DefaultSmallPushCost = 256
	// DefaultMaxSmallPushCost lets the whole pool (4096 workers) run
	// small pushes of cost 16 (16 targets, or one target and a 15 KiB
	// body).
	DefaultMaxSmallPushCost = 65536
	// DefaultMaxPushCost is ten pushes of 10,000 mids in flight at once:
	// their Redis lookups are then tens of thousands of mids, a fraction of
	// a second of a Redis server's time, instead of an unbounded queue
	// that stalls Redis for everyone (the gateways' registrations
	// included) and holds hundreds of megabytes of routes.
	DefaultMaxPushCost = 100000
)

// costClass is which budget a push draws on.
type costClass uint8

const (
	costNone  costClass = iota // no budget (admission disabled)
	costSmall                  // the small budget
	costLarge                  // the large budget
)

// budget is one cost-weighted semaphore and what it holds now.
type budget struct {
	sem     *semaphore.Weighted
	size    int64
	held    atomic.Int64
	refused atomic.Uint64
}

func newBudget(size int64) *budget {
	if size <= 0 {
		return nil
	}
	return &budget{sem: semaphore.NewWeighted(size), size: size}
}

// tryAcquire takes n (at most the whole budget) without waiting and
// returns what it took, or 0 when n does not fit now.
func (b *budget) tryAcquire(n int64) int64 {
	n = max(1, min(n, b.size))
	if !b.sem.TryAcquire(n) {
		b.refused.Add(1)
		return 0
	}
	b.held.Add(n)
	return n
}

func (b *budget) release(n int64) {
	b.held.Add(-n)
	b.sem.Release(n)
}

// admission is the Pusher's two budgets.
type admission struct {
	smallMax     int64
	small, large *budget // nil: unbounded
}

func newAdmission(smallMax, smallSize, largeSize int64) admission {
	return admission{smallMax: smallMax, small: newBudget(smallSize), large: newBudget(largeSize)}
}

// pushCost is the cost of a push of body to t (see above); perUser is
// history on, a mid push then copying body into a message per user.
func pushCost(t Target, body []byte, perUser bool) int64 {
	n, kib := int64(1), int64(len(body))>>10
	switch t.Kind {
	case TargetKeys:
		n = int64(len(t.Keys))
	case TargetMids:
		n = int64(len(t.Mids))
		if perUser {
			return n * (1 + kib)
		}
	}
	return n + kib
}

// acquire admits a push of cost, or returns ok false when its budget is
// spent. release gives back what it took.
func (a *admission) acquire(cost int64) (class costClass, took int64, ok bool) {
	b, class := a.large, costLarge
	if cost <= a.smallMax {
		b, class = a.small, costSmall
	}
	if b == nil {
		return costNone, 0, true
	}
	if took = b.tryAcquire(cost); took == 0 {
		return costNone, 0, false
	}
	return class, took, true
}

func (a *admission) release(class costClass, took int64) {
	switch class {
	case costSmall:
		a.small.release(took)
	case costLarge:
		a.large.release(took)
	}
}

// held and refused read a budget's gauges and counters (0 when
// unbounded).
func (b *budget) stats() (held int64, refused uint64) {
	if b == nil {
		return 0, 0
	}
	return b.held.Load(), b.refused.Load()
}
