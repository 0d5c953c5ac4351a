package job

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcloud/imcloud"
)

// item is one message waiting for one node.
type item struct {
	m  *imcloud.Message
	e  *entry
	at int64 // when it was routed, Unix nanoseconds
}

// nodeWorker owns the delivery to one node: a bounded queue filled by the
// receive loop and a goroutine that drains it in order, one Deliver call
// at a time, merging whatever is waiting into the call (opportunistic
// merging: no timer, a delivery is what queued up during the previous
// call). A node that fails is retried with backoff without affecting the
// other nodes' workers.
type nodeWorker struct {
	j  *Job
	id string

	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	node    imcloud.Node
	q       []item
	head    int
	gone    bool // left the directory: abandon what is queued
	stopped bool // the job stops: leave what is queued uncommitted
	wake    chan struct{}
	space   chan struct{}

	link Link // from Config.Connect; owned by run

	delivered, retried atomic.Uint64
	inflight           atomic.Int64
	inflightAt         atomic.Int64
	lastErr            atomic.Pointer[string]
}

func newNodeWorker(j *Job, n imcloud.Node) *nodeWorker {
	ctx, cancel := context.WithCancel(j.workCtx())
	return &nodeWorker{
		j: j, id: n.ID, node: n, ctx: ctx, cancel: cancel,
		wake:  make(chan struct{}, 1),
		space: make(chan struct{}, 1),
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// setNode records n, the node's latest registration, and returns the
// one it replaces.
func (w *nodeWorker) setNode(n imcloud.Node) imcloud.Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	old := w.node
	w.node = n
	return old
}

func (w *nodeWorker) conns() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.node.Conns
}

// markGone declares the node gone: what is queued or in flight for it is
// abandoned (it counts as done for the watermark).
func (w *nodeWorker) markGone() {
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	w.cancel()
}

// stop ends the worker, leaving what is queued undelivered and
// uncommitted (the next consumer gets it again).
func (w *nodeWorker) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.cancel()
}

// enqueue adds it to the queue, waiting for room while the queue is full
// and ctx lasts; once ctx ended it appends regardless, so that a shutdown
// can still drain it. It reports false if the node is gone.
func (w *nodeWorker) enqueue(ctx context.Context, it item) bool {
	for {
		w.mu.Lock()
		if w.gone {
			w.mu.Unlock()
			return false
		}
		if len(w.q)-w.head < w.j.cfg.NodeQueue || ctx.Err() != nil || w.stopped {
			w.appendLocked(it)
			return true
		}
		w.mu.Unlock()
		select {
		case <-w.space:
		case <-ctx.Done():
		case <-w.ctx.Done():
		}
	}
}

// add appends it without waiting for room: for messages that already
// waited in the directory's bounded limbo, routed while the directory's
// lock is held. It reports false if the node is gone.
func (w *nodeWorker) add(it item) bool {
	w.mu.Lock()
	if w.gone {
		w.mu.Unlock()
		return false
	}
	w.appendLocked(it)
	return true
}

// appendLocked queues it, unlocks w.mu and wakes the worker.
func (w *nodeWorker) appendLocked(it item) {
	w.q = append(w.q, it)
	w.mu.Unlock()
	signal(w.wake)
}

// take waits for queued items and moves up to one delivery of them into dst.
// It returns false when the worker must end.
func (w *nodeWorker) take(dst []item) ([]item, bool) {
	for {
		if w.ctx.Err() != nil {
			return dst, false
		}
		w.mu.Lock()
		if n := len(w.q) - w.head; n > 0 {
			n = min(n, w.j.cfg.MaxDelivery)
			size := 0
			i := 0
			for ; i < n; i++ {
				size += approxSize(w.q[w.head+i].m)
				if i > 0 && size > w.j.cfg.MaxDeliveryBytes {
					break
				}
			}
			dst = append(dst, w.q[w.head:w.head+i]...)
			clear(w.q[w.head : w.head+i])
			w.head += i
			switch {
			case w.head == len(w.q):
				w.q = w.q[:0]
				w.head = 0
			case w.head >= 4096 && w.head*2 >= len(w.q):
				k := copy(w.q, w.q[w.head:])
				clear(w.q[k:])
				w.q = w.q[:k]
				w.head = 0
			}
			w.inflight.Store(int64(len(dst)))
			w.inflightAt.Store(dst[0].at)
			w.mu.Unlock()
			signal(w.space)
			return dst, true
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-w.ctx.Done():
		}
	}
}

func approxSize(m *imcloud.Message) int {
	n := 64 + len(m.Body) + len(m.Room) + len(m.Node)
	for _, k := range m.Keys {
		n += len(k) + 2
	}
	return n
}

// run delivers until the worker is stopped or the node is gone.
func (w *nodeWorker) run() {
	defer w.dropLink()
	var delivery []item
	for {
		var ok bool
		delivery, ok = w.take(delivery[:0])
		if ok {
			w.deliver(delivery)
			w.inflight.Store(0)
			if w.ctx.Err() == nil {
				clear(delivery)
				continue
			}
		}
		// Stopping. If the node is gone, what is left counts as done.
		w.mu.Lock()
		gone := w.gone
		rest := w.q[w.head:]
		w.q, w.head = nil, 0
		w.mu.Unlock()
		if gone {
			w.abandon(delivery)
			w.abandon(rest)
		}
		return
	}
}

// abandon finishes items whose node is gone.
func (w *nodeWorker) abandon(items []item) {
	for _, it := range items {
		if it.e == nil {
			continue
		}
		w.j.c.abandoned.Add(1)
		w.j.finish(it.e)
	}
}

// deliver sends delivery until the node accepts it or the worker stops. Items
// it finishes (delivered, expired, skipped) are cleared in delivery, so the
// caller can abandon what is left.
func (w *nodeWorker) deliver(delivery []item) bool {
	backoff := w.j.cfg.RetryMin
	for attempt := 0; ; attempt++ {
		now := time.Now()
		msgs := make([]*imcloud.Message, 0, len(delivery))
		for i := range delivery {
			if delivery[i].e == nil {
				continue
			}
			if delivery[i].m.Expired(now) {
				w.j.c.expired.Add(1)
				w.j.finish(delivery[i].e)
				delivery[i] = item{}
				continue
			}
			msgs = append(msgs, delivery[i].m)
		}
		if len(msgs) == 0 {
			return true
		}
		err := w.send(msgs)
		if err == nil {
			for i := range delivery {
				if delivery[i].e != nil {
					w.j.finish(delivery[i].e)
					delivery[i] = item{}
				}
			}
			w.delivered.Add(uint64(len(msgs)))
			w.j.c.delivered.Add(uint64(len(msgs)))
			if attempt > 0 {
				w.j.log.Info("job: node delivering again", "node", w.id, "attempts", attempt+1)
			}
			w.lastErr.Store(nil)
			return true
		}
		if w.ctx.Err() != nil {
			return false
		}
		if errors.Is(err, ErrTooLarge) || refusedAsNewer(err) {
			return w.split(delivery, err)
		}
		w.retried.Add(1)
		w.j.c.retried.Add(1)
		s := err.Error()
		w.lastErr.Store(&s)
		if attempt == 0 || attempt%20 == 0 {
			w.j.log.Warn("job: delivery to node failed; retrying", "node", w.id, "messages", len(msgs),
				"attempt", attempt+1, "err", err)
		}
		if !sleepCtx(w.ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, w.j.cfg.RetryMax)
	}
}

// split delivers in halves what the link refused as too large, or the
// node as of a newer version than it reads (refusedAsNewer), in order; a
// single message refused so is skipped and counted.
func (w *nodeWorker) split(delivery []item, cause error) bool {
	live := delivery[:0:0]
	for _, it := range delivery {
		if it.e != nil {
			live = append(live, it)
		}
	}
	if len(live) == 1 {
		w.j.c.skipped.Add(1)
		if errors.Is(cause, ErrTooLarge) {
			w.j.log.Error("job: message too large for the link; skipped", "node", w.id, "id", live[0].m.ID)
		} else {
			w.j.log.Warn("job: the node reads an older message version; message skipped", "node", w.id,
				"id", live[0].m.ID, "kind", live[0].m.Kind, "err", cause)
		}
		w.j.finish(live[0].e)
		clear(delivery)
		return true
	}
	h := len(live) / 2
	first, second := live[:h], live[h:]
	clear(delivery)
	if !w.deliver(first) {
		copy(delivery, first)
		copy(delivery[len(first):], second)
		return false
	}
	if !w.deliver(second) {
		copy(delivery, second)
		return false
	}
	return true
}

// send makes one Deliver call, connecting first if needed.
func (w *nodeWorker) send(msgs []*imcloud.Message) error {
	if w.link == nil {
		w.mu.Lock()
		node := w.node
		w.mu.Unlock()
		l, err := w.j.cfg.Connect(w.ctx, node)
		if err != nil {
			return err
		}
		w.link = l
	}
	err := w.link.Deliver(w.ctx, msgs)
	if err != nil && !errors.Is(err, ErrRejected) && !errors.Is(err, ErrTooLarge) {
		w.dropLink() // ask Connect again
	}
	return err
}

// dropLink forgets the link, closing it if the job's default Connect made
// it.
func (w *nodeWorker) dropLink() {
	if c, ok := w.link.(*LinkClient); ok && w.j.ownsLinks {
		_ = c.Close()
	}
	w.link = nil
}

func (w *nodeWorker) stats(now time.Time) NodeStats {
	w.mu.Lock()
	s := NodeStats{Addr: w.node.LinkAddr, Lag: len(w.q) - w.head}
	oldest := int64(0)
	if s.Lag > 0 {
		oldest = w.q[w.head].at
	}
	w.mu.Unlock()
	if n := w.inflight.Load(); n > 0 {
		s.Lag += int(n)
		oldest = w.inflightAt.Load()
	}
	if oldest > 0 {
		s.Oldest = now.Sub(time.Unix(0, oldest))
	}
	s.Delivered = w.delivered.Load()
	s.Retried = w.retried.Load()
	if e := w.lastErr.Load(); e != nil {
		s.LastError = *e
	}
	return s
}
