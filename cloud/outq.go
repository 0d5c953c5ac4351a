package cloud

import (
	"sync"
	"sync/atomic"
)

// Kinds of outbound item.
const (
	// itemPush is one or more complete push frames back to back (shared,
	// immutable). TCP writes them as they are; WebSocket wraps consecutive
	// pushes into op 9 messages under the batch cap.
	itemPush uint8 = iota
	// itemFrame is one frame that must travel alone on WebSocket (replies,
	// op 6): never inside an op 9.
	itemFrame
	// itemControl is a complete WebSocket control frame (pong, close);
	// never queued on TCP.
	itemControl
)

// outItem is one entry of a connection's outbound queue.
type outItem struct {
	b    []byte
	kind uint8
	at   uint32 // a push's accepted time (latency.go), 0 unknown
}

// qstate is who owns a connection's outbound queue: the right to write
// its socket and to take its items.
type qstate uint8

const (
	// qIdle: nothing queued, nobody writing. Holds no goroutine.
	qIdle qstate = iota
	// qReady: claimed and on the scheduler's ready list, waiting for one
	// of its writers (only connections with a non-blocking socket).
	qReady
	// qWriting: a scheduler writer is writing it, without waiting.
	qWriting
	// qBlocking: a goroutine of the connection's own writes it and may
	// wait on the socket (up to WriteTimeout): a socket that was full, or
	// one without a non-blocking path.
	qBlocking
)

// outq is one connection's outbound queue, the single record of who may
// write the connection and how many bytes it is behind.
//
// # State machine
//
// Ownership (state, under mu):
//
//	idle ──push──> ready            (the pusher hands it to the scheduler)
//	idle ──push──> blocking         (no non-blocking path: the pusher starts its goroutine)
//	ready ──take──> writing         (a scheduler writer)
//	writing ──settle──> idle        (queue empty)
//	writing ──settle──> ready       (more queued meanwhile: back on the ready list)
//	writing ──settle──> blocking    (the socket took only part: the rest goes to a goroutine of its own)
//	blocking ──settle──> idle       (queue empty; its goroutine ends)
//	any claim ──take──> idle        (nothing left to write, or dead: the claim is released)
//
// ready, writing and blocking are claims: exactly one party holds each
// (the ready list, one scheduler writer, or the connection's goroutine),
// and only it takes items or writes the socket. Pushes only append; they
// never write. The scheduler counts the claims (Stats.Writers).
//
// Lifecycle (flags, under mu), across ownership states:
//
//	open ──close──> closing ──queue flushed or reader gone──> dead
//	open, closing ──kill──> dead
//
// closing refuses new pushes and makes the owner close the socket once
// what was queued is written; dead refuses pushes and drops what is
// queued (the owner releases its claim at its next step).
//
// A new connection's queue starts paused: it takes pushes (behind the
// AuthReply, queued first) but is not claimed, so nothing is written,
// until resume. The handshake resumes it once the session reached the
// store, so a client never holds its AuthReply while a push to it could
// still find no route. A queue paused while owned (a recover
// connection's ChangeRoom) has its claim released at the owner's next
// take, unless it is closing; what is queued waits for resume. While
// paused, a recovery splices the replayed pushes in before the live
// pushes buffered meanwhile (splice).
//
// # Byte accounting
//
// bytes is what the connection is behind: its queued items, and what a
// scheduler writer's short write left for the connection's goroutine
// (held) until that is written. Items leave the count when a write takes
// them. Every change goes through account, which moves the node's backlog
// (backlog.go) by the change of this connection's share, capped at
// backlogConnCap.
type outq struct {
	mu      sync.Mutex
	items   []outItem
	bytes   int64
	state   qstate
	fast    bool // the socket has a non-blocking path (sockWriter)
	closing bool
	dead    bool
	paused  bool          // not claimed until resume
	shard   *atomic.Int64 // this connection's counter in the node's backlog
	// markAt, while marked, is where a splice inserts (mark): kept in
	// step with DropOldest dropping items before it.
	markAt int
	marked bool
}

// keepQueueCap is the largest queue capacity an idle connection keeps, so
// steady pushes do not allocate while idle connections stay small.
const keepQueueCap = 8

// account records that the queue is n bytes further behind (fewer for a
// negative n) and moves the node's backlog by the change of the capped
// share. Called under q.mu.
func (q *outq) account(n int64) {
	if d := q.share(n); d != 0 {
		q.shard.Add(d)
	}
}

// share records that the queue is n bytes further behind and returns the
// change of its capped share of the node's backlog, for the caller to
// count (account, or a fan-out counting a bucket's at once: only the
// backlog's sum is meaningful, so any shard will do). Called under q.mu.
func (q *outq) share(n int64) int64 {
	old := q.bytes
	q.bytes += n
	return min(q.bytes, backlogConnCap) - min(old, backlogConnCap)
}

// claimLocked moves an idle queue to its first owner and returns the new
// state (qIdle: already owned, nothing to start). Called under q.mu.
func (q *outq) claimLocked() qstate {
	if q.state != qIdle || q.paused {
		return qIdle
	}
	if q.fast {
		q.state = qReady
	} else {
		q.state = qBlocking
	}
	return q.state
}

// pause keeps the queue from being claimed until resume.
func (q *outq) pause() {
	q.mu.Lock()
	q.paused = true
	q.mu.Unlock()
}

// resume ends a pause and returns the state the caller must start, as
// for push: an owner is needed when items are queued or a close is
// pending.
func (q *outq) resume() qstate {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.paused, q.marked = false, false
	if len(q.items) == 0 && !q.closing && !q.dead {
		return qIdle
	}
	return q.claimLocked()
}

// pushResult is what push did with an item.
type pushResult uint8

const (
	pushQueued  pushResult = iota // queued
	pushDropped                   // queued after dropping the oldest push (DropOldest)
	pushFull                      // refused: the queue is at its limit
	pushRefused                   // refused: closing or dead
)

// push appends it unless the queue is closing, dead or full (limit items;
// with dropOldest the oldest push makes room instead). start is the state
// the queue moved to from idle, which the caller must act on
// (scheduler.start); qIdle when it already had an owner. With a non-nil
// backlog, the change to the node's backlog is added there for the
// caller to count instead of counted here.
func (q *outq) push(it outItem, limit int, dropOldest bool, backlog *int64) (res pushResult, start qstate) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dead || q.closing {
		return pushRefused, qIdle
	}
	res = pushQueued
	if len(q.items) >= limit && len(q.items) > 0 {
		if !dropOldest {
			return pushFull, qIdle
		}
		// Drop the oldest push, never a reply or control frame if a push
		// can go instead.
		drop := 0
		for i := range q.items {
			if q.items[i].kind == itemPush {
				drop = i
				break
			}
		}
		n := int64(len(it.b)) - int64(len(q.items[drop].b))
		if q.marked && drop < q.markAt {
			q.markAt--
		}
		copy(q.items[drop:], q.items[drop+1:])
		q.items[len(q.items)-1] = it
		if backlog != nil {
			*backlog += q.share(n)
		} else {
			q.account(n)
		}
		return pushDropped, q.claimLocked()
	}
	q.items = append(q.items, it)
	if backlog != nil {
		*backlog += q.share(int64(len(it.b)))
	} else {
		q.account(int64(len(it.b)))
	}
	return res, q.claimLocked()
}

// close makes items the last ones the queue writes: with replace, what
// was queued is dropped first. The queue is closing from then on; start
// is as for push. It reports false if the queue was closing or dead
// already (nothing queued). onLocked, if not nil, runs under q.mu (the
// caller arms the socket's write deadline there, so no owner's write can
// extend it: see blockingDeadline).
func (q *outq) close(replace bool, onLocked func(), items ...outItem) (ok bool, start qstate) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.dead || q.closing {
		return false, qIdle
	}
	if replace {
		q.account(-q.bytes + q.heldLocked())
		clear(q.items)
		q.items = q.items[:0]
	}
	for _, it := range items {
		q.items = append(q.items, it)
		q.account(int64(len(it.b)))
	}
	q.closing = true
	if onLocked != nil {
		onLocked()
	}
	return true, q.claimLocked()
}

// heldLocked is the part of bytes that is not in items: what a short
// write left for the connection's goroutine.
func (q *outq) heldLocked() int64 {
	n := q.bytes
	for i := range q.items {
		n -= int64(len(q.items[i].b))
	}
	return n
}

// kill marks the queue dead: nothing more is queued or written.
func (q *outq) kill() {
	q.mu.Lock()
	q.dead = true
	q.mu.Unlock()
}

// finish is the reader's end: the queue goes dead unless its owner is
// flushing a final frame (closing, claimed), which it then closes. It
// reports whether the caller must close the socket now; onFlush runs
// under q.mu when the owner flushes (the caller bounds the flush).
func (q *outq) finish(onFlush func()) (closeNow bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	flushing := q.closing && q.state != qIdle && !q.dead
	q.closing = true
	if !flushing {
		q.dead = true
		return true
	}
	onFlush()
	return false
}

// take is the owner's next write: it moves up to maxBytes of items (at
// least one) into the returned batch, leaving the rest queued in order,
// and marks the queue writing if it was ready; their bytes leave the
// count. ok is false when there is nothing to write (the queue
// is empty or dead): the claim is then released (idle), closeNow reports
// that the owner must close the socket (a close was pending), and what a
// dead queue held is dropped.
//
// spare is the array recycled between takes, of this queue or the next
// one a scheduler writer serves: the queue keeps the spare as its new
// array and the spare becomes the batch's, so queues stop allocating once
// their arrays are big enough. The caller clears the batch when done and
// passes it back as spare.
func (q *outq) take(spare *[]outItem, maxBytes int) (batch []outItem, ok, closeNow bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.paused && !q.dead && !q.closing {
		// Paused under an owner (a recovery's replay is being spliced
		// in): the claim is released and the items wait for resume.
		q.state = qIdle
		return nil, false, false
	}
	if q.dead || len(q.items) == 0 {
		closeNow = q.closing && !q.dead
		if q.dead {
			q.account(-q.bytes)
			clear(q.items)
		}
		if q.dead || cap(q.items) > keepQueueCap {
			q.items = nil
		}
		if q.items == nil && !q.dead && cap(*spare) <= keepQueueCap {
			q.items = (*spare)[:0] // keep a small array: the next push does not allocate
			*spare = nil
		}
		if closeNow {
			q.dead = true
		}
		q.state = qIdle
		return nil, false, closeNow
	}
	if q.state == qReady {
		q.state = qWriting
	}
	batch = q.items
	k, n := itemsWithin(q.items, maxBytes)
	q.account(-int64(n))
	if k < len(q.items) {
		q.items = append((*spare)[:0], q.items[k:]...)
		clear(batch[k:])
		batch = batch[:k]
	} else {
		q.items = (*spare)[:0]
	}
	*spare = nil
	return batch, true, false
}

// settle records the end of a write: held bytes are what the socket did
// not take (counted from now on), done the held bytes of an earlier
// short write now written (counted no more). It returns the state the
// owner acts on:
//   - idle: nothing more queued; the claim is released.
//   - ready: more queued meanwhile (a scheduler writer's): back on the
//     ready list.
//   - blocking: a scheduler writer's socket took only part: a goroutine
//     of the connection's own writes the rest; or the connection's own
//     goroutine goes on.
//
// A closing or dead queue is never released here: the owner's next take
// closes the socket or drops what is left.
func (q *outq) settle(done, held int64) qstate {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.account(held - done)
	switch {
	case held > 0:
		q.state = qBlocking
	case len(q.items) == 0 && !q.closing && !q.dead:
		q.state = qIdle
		if cap(q.items) > keepQueueCap {
			q.items = nil
		}
	case q.state == qWriting:
		q.state = qReady
	}
	return q.state
}

// itemsWithin returns how many items from the start of q fit in max bytes,
// at least one, and their bytes.
func itemsWithin(q []outItem, max int) (items, bytes int) {
	n := 0
	for i := range q {
		if n+len(q[i].b) > max && i > 0 {
			return i, n
		}
		n += len(q[i].b)
	}
	return len(q), n
}

// splice inserts ins at index at of the queue, or at the mark when the
// queue was marked (the items before it were queued before the live
// pushes a recovery buffered), and passes every
// push item after at through keep, which returns the item to queue in its
// place (ok false: drop it). The byte count follows. It reports false,
// changing nothing, when the queue is closing or dead. Called while the
// queue is paused, so nothing was taken since at was counted.
func (q *outq) splice(at int, ins []outItem, keep func(outItem) (outItem, bool)) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.marked {
		at, q.marked = q.markAt, false
	}
	if q.dead || q.closing {
		return false
	}
	at = min(max(at, 0), len(q.items))
	var n int64
	live := q.items[at:]
	kept := make([]outItem, 0, len(ins)+len(live))
	for _, it := range ins {
		kept = append(kept, it)
		n += int64(len(it.b))
	}
	for _, it := range live {
		if it.kind == itemPush && keep != nil {
			nit, ok := keep(it)
			n -= int64(len(it.b))
			if !ok {
				continue
			}
			it = nit
			n += int64(len(it.b))
		}
		kept = append(kept, it)
	}
	clear(live)
	q.items = append(q.items[:at], kept...)
	q.account(n)
	return true
}

// mark pauses the queue and marks its end: where the next splice puts
// what it inserts.
func (q *outq) mark() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.paused = true
	q.markAt, q.marked = len(q.items), true
}
