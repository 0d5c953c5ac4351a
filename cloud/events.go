package cloud

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/protocol"
)

// Connection events (Config.Events; imcloud.Event).
//
// A connection reports, in this order: connect once it is authenticated
// (its AuthReply queued, its session stored; before the AuthReply can be
// written, so a client that saw it has its connect queued), a room_join
// for its auth
// room, a room_join or room_leave for each change of its rooms (Join,
// Leave, ChangeRoom: the old primary room's leave, then the new one's
// join, both Primary), and exactly one disconnect when it ends, with the
// reason (imcloud.Reason*). A disconnect implies leaving every room: no
// room_leave precedes it. Every event of a connection is emitted by its
// reader (which handles its frames one at a time, conn.run), so the
// node's one queue keeps them in order; events
// of two connections with the same key (a replacement) may interleave,
// and a consumer tells them apart by Gen.
//
// The queue is bounded (Config.EventBuffer) and never blocks a
// connection: an event that finds it full is dropped and counted
// (Stats.EventsDropped). One goroutine per node takes what is queued, a
// batch at a time, and calls the sink with each, in order (so at most
// twice EventBuffer events are held: a batch being delivered and a full
// queue behind it).
// Shutdown flushes it after the last connection ended, waiting at most
// eventFlushTimeout for a slow sink; what is left then is dropped and
// counted.

// eventFlushTimeout bounds Shutdown's wait for the sink.
const eventFlushTimeout = 5 * time.Second

// eventQueue is a node's bounded queue of events and the goroutine that
// hands them to the sink.
type eventQueue struct {
	sink EventSink
	max  int

	mu     sync.Mutex
	queue  []imcloud.Event
	closed bool
	wake   chan struct{} // the queue stopped being empty, or closed
	done   chan struct{} // the goroutine returned

	abandon atomic.Bool // the flush timed out: drop what is left
	dropped atomic.Uint64
}

// newEventQueue starts the delivery goroutine of sink; nil sink: nil
// queue (emitting is a no-op).
func newEventQueue(sink EventSink, max int) *eventQueue {
	if sink == nil {
		return nil
	}
	q := &eventQueue{sink: sink, max: max, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go q.run()
	return q
}

// emit queues ev, or drops and counts it when the queue is full or
// closed. It never blocks for long (one short lock).
func (q *eventQueue) emit(ev imcloud.Event) {
	if q == nil {
		return
	}
	q.mu.Lock()
	if q.closed || len(q.queue) >= q.max {
		q.mu.Unlock()
		q.dropped.Add(1)
		return
	}
	q.queue = append(q.queue, ev)
	first := len(q.queue) == 1
	q.mu.Unlock()
	if first {
		q.signal()
	}
}

func (q *eventQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default: // already signalled
	}
}

// run hands the queued events to the sink, a batch at a time, until the
// queue is closed and empty.
func (q *eventQueue) run() {
	defer close(q.done)
	var batch []imcloud.Event
	for {
		q.mu.Lock()
		batch, q.queue = q.queue, batch[:0]
		closed := q.closed
		q.mu.Unlock()
		for i := range batch {
			if q.abandon.Load() {
				q.dropped.Add(uint64(len(batch) - i))
				break
			}
			q.sink.Event(batch[i])
		}
		if len(batch) == 0 && closed {
			return
		}
		clear(batch)
		if len(batch) == 0 {
			<-q.wake
		}
	}
}

// close flushes the queue: later events are dropped, the ones queued go
// to the sink, waiting at most timeout; what is left then is dropped.
func (q *eventQueue) close(timeout time.Duration) {
	if q == nil {
		return
	}
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-q.done:
	case <-t.C:
		q.abandon.Store(true)
		q.mu.Lock()
		q.dropped.Add(uint64(len(q.queue)))
		q.queue = nil
		q.mu.Unlock()
	}
}

// droppedCount is Stats.EventsDropped.
func (q *eventQueue) droppedCount() uint64 {
	if q == nil {
		return 0
	}
	return q.dropped.Load()
}

// endReason is why a connection ended: an imcloud.Reason* and, for a
// kick, its own reason.
type endReason struct{ reason, detail string }

// endAs records why c ends, when the node closes it on purpose: the first
// reason recorded is the one its disconnect event reports. Without a
// sink nothing is recorded.
func (c *conn) endAs(reason, detail string) {
	if c.srv.events == nil {
		return
	}
	c.why.CompareAndSwap(nil, &endReason{reason, detail})
}

// readEndReason is why a connection whose read loop returned err ended,
// when the node did not close it on purpose.
func readEndReason(err error) string {
	switch {
	case errors.Is(err, errRateLimited), errors.Is(err, protocol.ErrHeaderLen), errors.Is(err, protocol.ErrPackLen),
		errors.Is(err, protocol.ErrBodyTooLarge), errors.Is(err, protocol.ErrTruncated), errors.Is(err, errWSProtocol):
		return imcloud.ReasonProtocolError
	case isTimeout(err):
		return imcloud.ReasonHeartbeatTimeout
	}
	// EOF, a reset, a WebSocket close, a frame broken off
	// (io.ErrUnexpectedEOF): the client went.
	return imcloud.ReasonClientClosed
}

// event emits one event of c's, stamped with the node, the process epoch,
// c's key, mid and generation and the time.
func (c *conn) event(ev imcloud.Event) {
	s := c.srv
	if s.events == nil {
		return
	}
	ev.Node, ev.Epoch = s.id, s.sess.epoch
	ev.Key, ev.Mid, ev.Gen = c.key, c.mid, c.gen
	ev.Time = time.Now()
	s.events.emit(ev)
}

// connected emits c's connect and, with an auth room, its room_join.
func (c *conn) connected() {
	if c.srv.events == nil {
		return
	}
	room := c.b.roomOf(c)
	c.event(imcloud.Event{Type: imcloud.EventConnect, Platform: c.platform, Room: room})
	if room != "" {
		c.roomEvent(imcloud.EventRoomJoin, room, true)
	}
}

// disconnected emits c's one disconnect, with the reason recorded
// (endAs), client_closed if none was.
func (c *conn) disconnected() {
	if c.srv.events == nil {
		return
	}
	why := c.why.Load()
	if why == nil {
		why = &endReason{reason: imcloud.ReasonClientClosed}
	}
	c.event(imcloud.Event{Type: imcloud.EventDisconnect, Reason: why.reason, Detail: why.detail})
}

// roomEvent emits a room_join or room_leave of room.
func (c *conn) roomEvent(typ imcloud.EventType, room string, primary bool) {
	c.event(imcloud.Event{Type: typ, Room: room, Primary: primary})
}

// roomChanged emits the room_join or room_leave of a Join or Leave that
// changed c's rooms (res).
func (c *conn) roomChanged(res roomResult, typ imcloud.EventType, room string, primary bool) {
	if res == roomChanged {
		c.roomEvent(typ, room, primary)
	}
}

// primaryChanged emits the events of a ChangeRoom from old to room that
// changed c's rooms (res): the old primary room's leave, the new one's
// join (also when c had joined it before: it became primary).
func (c *conn) primaryChanged(res roomResult, old, room string) {
	if res != roomChanged || old == room || c.srv.events == nil {
		return
	}
	if old != "" {
		c.roomEvent(imcloud.EventRoomLeave, old, true)
	}
	if room != "" {
		c.roomEvent(imcloud.EventRoomJoin, room, true)
	}
}
