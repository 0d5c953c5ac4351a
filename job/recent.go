package job

import (
	"time"

	"github.com/imcloud/imcloud"
)

// catchUpWindows is how many RefreshIntervals of fan-outs the record
// keeps: a node is listed at the first directory read after it
// registered, at most one interval later (plus the read), and the margin
// covers a read that failed.
const catchUpWindows = 3

// sinceSkew widens a catch-up to the fan-outs accepted shortly before
// the node's Since. Accepted is logic's clock and Since the node's: a
// node whose clock runs ahead of logic's by less than sinceSkew still
// gets every push accepted after it registered. The cost is at most
// that much more: pushes accepted just before the node existed, which
// its clients may get, as a client that joins a room gets a push that
// was still queued when it joined.
const sinceSkew = time.Second

// recent is the job's record of its recent fan-outs (room messages and
// broadcasts that go to every live node), for the nodes it learns of
// late: a node that registered and accepted clients between two reads
// of the directory was not among the targets of what job fanned out
// meanwhile, and its clients may already be in the room. When the node joins, the directory hands its
// worker, before anything newer, every recorded fan-out accepted since
// the node's Since (catchUp).
//
// A fan-out is recorded under the directory's lock, with the snapshot of
// live nodes it goes to (directory.fanOutTargets), so every fan-out
// either saw a node in its snapshot or is in the record when the node
// joins (unless the record dropped it: see gapSince). The record is
// bounded by age (catchUpWindows RefreshIntervals of job's clock), by
// count (Config.CatchUpMessages) and by bytes (Config.CatchUpBytes).
//
// Room messages routed to their member nodes (Config.Rooms) are not
// recorded: a node writes its membership of a room before it answers
// the client that joined, so a member node the job learns of late is
// found by the lookup of every push accepted after that answer, and
// waits for the directory read as a keys message's node does. Those a
// failed lookup fanned out to every node are recorded.
//
// Guarded by directory.mu.
type recent struct {
	window   time.Duration
	maxMsgs  int
	maxBytes int

	q     []fannedOut // oldest first, from head
	head  int
	bytes int
	// dropped is the latest Accepted among the fan-outs dropped from
	// the record; zero while none was.
	dropped time.Time
}

// fannedOut is one recorded fan-out.
type fannedOut struct {
	m    *imcloud.Message
	at   int64 // when it was fanned out, job's clock (Unix ns)
	size int
}

func (r *recent) init(cfg Config) {
	r.window = catchUpWindows * cfg.RefreshInterval
	r.maxMsgs = cfg.CatchUpMessages
	r.maxBytes = cfg.CatchUpBytes
}

// add records m, fanned out at now (Unix ns), dropping what the bounds
// no longer hold.
func (r *recent) add(m *imcloud.Message, now int64) {
	size := approxSize(m)
	r.q = append(r.q, fannedOut{m: m, at: now, size: size})
	r.bytes += size
	r.trim(now)
}

// trim drops the fan-outs older than the window, then the oldest while
// the record holds more than its bounds.
func (r *recent) trim(now int64) {
	oldest := now - int64(r.window)
	for r.head < len(r.q) {
		f := r.q[r.head]
		if f.at >= oldest && len(r.q)-r.head <= r.maxMsgs && r.bytes <= r.maxBytes {
			break
		}
		if f.m.Accepted.After(r.dropped) {
			r.dropped = f.m.Accepted
		}
		r.bytes -= f.size
		r.q[r.head] = fannedOut{}
		r.head++
	}
	switch {
	case r.head == len(r.q):
		r.q, r.head = r.q[:0], 0
	case r.head >= 1024 && r.head*2 >= len(r.q):
		n := copy(r.q, r.q[r.head:])
		clear(r.q[n:])
		r.q, r.head = r.q[:n], 0
	}
}

// since appends to dst, oldest first, the recorded fan-outs a node
// registered at since may need: accepted at or after since (less
// sinceSkew) and not expired at now. gap reports whether the record
// dropped one it may have needed. A zero since (a node that did not
// register one) needs every fan-out.
func (r *recent) since(since time.Time, now time.Time, dst []*imcloud.Message) (_ []*imcloud.Message, gap bool) {
	r.trim(now.UnixNano())
	from := time.Time{}
	if !since.IsZero() {
		from = since.Add(-sinceSkew)
	}
	for _, f := range r.q[r.head:] {
		if !f.m.Accepted.Before(from) && !f.m.Expired(now) {
			dst = append(dst, f.m)
		}
	}
	return dst, !r.dropped.IsZero() && !r.dropped.Before(from)
}
