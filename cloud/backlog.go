package cloud

import (
	"context"
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
