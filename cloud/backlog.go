package cloud

import (
	"context"
	"sync/atomic"
	"time"
)

// Backpressure. A fan-out puts an item on every receiver's queue and
// returns; writers empty the queues as fast as the sockets and the CPU
// allow. If pushes keep arriving faster than that, the queues grow (in
// bytes: the job merges the room pushes that waited into one item) until
// the connections reach QueueLength and are closed as slow consumers,
// although their clients read everything they are sent, or until each
// push waits seconds in a queue. So Deliver first waits while the node's
// backlog is over backlogLimit. The job's pipeline then fills up behind
// it, and the push API answers 503 once its queue is full or too far
// behind (logic.MemoryQueueConfig.MaxDelay): backpressure at the
// publisher, not growing queues.
//
// The backlog counts each connection's queued bytes only up to
// backlogConnCap, and the limit is a quarter of that per session: clients
// that really do not read cannot stall a node alone (they are closed as
// slow consumers, as before); a quarter of all the sessions would have to
// be that far behind.

const (
	// backlogConnCap is the most of one connection's queue the backlog
	// counts: 64 KiB, several writes' worth.
	backlogConnCap = 64 << 10
	// backlogPoll is how often a waiting Deliver looks again.
	backlogPoll = time.Millisecond
)

// backlog is the node's backlog counter, in shards so that fan-out
// goroutines and writers counting different connections do not fight
// over one cache line. Each connection counts on one shard for its life
// (outq.shard); only the sum is meaningful.
type backlog struct {
	shards [backlogShards]struct {
		n atomic.Int64
		_ [56]byte
	}
	next atomic.Uint32
}

const backlogShards = 64

// shard returns the counter of a new connection (round robin).
func (b *backlog) shard() *atomic.Int64 {
	return &b.shards[b.next.Add(1)%backlogShards].n
}

// add counts d bytes on shard i (any shard: only the sum is meaningful).
func (b *backlog) add(i int, d int64) {
	if d != 0 {
		b.shards[i%backlogShards].n.Add(d)
	}
}

// total is the node's backlog in bytes.
func (b *backlog) total() int64 {
	var n int64
	for i := range b.shards {
		n += b.shards[i].n.Load()
	}
	return n
}

// queuedBytes is the node's backlog: the bytes connections are behind,
// each connection's counted up to backlogConnCap.
func (s *Server) queuedBytes() int64 { return s.backlog.total() }

// backlogLimit is the backlog above which Deliver waits: 16 KiB per
// session on average (at least 64 sessions' worth).
func (s *Server) backlogLimit() int64 {
	return max(s.stats.sessions.Load(), 64) * backlogConnCap / 4
}

// waitBacklog returns once the node's backlog is at or under
// backlogLimit, or with ctx's error, or ErrServerClosed when Shutdown
// begins. waiting, if not nil, runs once before it waits (the link server
// sends the acks it holds back).
func (s *Server) waitBacklog(ctx context.Context, waiting func()) error {
	if s.queuedBytes() <= s.backlogLimit() {
		return nil
	}
	s.stats.backpressured.Add(1)
	if waiting != nil {
		waiting()
	}
	t := time.NewTicker(backlogPoll)
	defer t.Stop()
	for s.queuedBytes() > s.backlogLimit() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.quit:
			return ErrServerClosed
		case <-t.C:
		}
	}
	return nil
}
