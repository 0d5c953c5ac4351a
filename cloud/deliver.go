package cloud

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/protocol"
)

// Deliver places msgs on the target connections' queues (keys, room) or
// accepts them for paced delivery (broadcast with a Speed), and returns
// without waiting for any one socket. It makes *Server satisfy job.Link
// for the one-process mode; the link server calls it for remote jobs.
//
// Backpressure: while the node's backlog is over its limit (most clients
// behind, backlog.go), Deliver first waits for it to drain, or for ctx,
// whose error it then returns having delivered nothing.
//
// A kick (imcloud.KindKick by keys) closes its connections in order with
// the pushes around it (kick.go).
//
// Invalid and expired messages are counted and skipped; a message whose
// id was delivered recently is a redelivery and is dropped. A message of
// a reserved op (below protocol.OpPushMin, or a batch carrying one) is
// never a push, whatever the queue says: it is counted (Stats.Reserved),
// logged at debug and skipped, and Deliver still succeeds, so job does
// not retry it. It returns
// ErrServerClosed after Shutdown began and ErrOverloaded (wrapped) when a
// paced broadcast cannot be taken; messages before it were delivered, and
// a retry of the same slice skips them as duplicates. msgs are neither
// retained nor modified. Safe for concurrent use.
func (s *Server) Deliver(ctx context.Context, msgs []*imcloud.Message) error {
	return s.deliver(ctx, msgs, nil)
}

// deliver is Deliver; waiting runs before it waits for the backlog
// (waitBacklog).
func (s *Server) deliver(ctx context.Context, msgs []*imcloud.Message, waiting func()) error {
	if err := s.waitBacklog(ctx, waiting); err != nil {
		return err
	}
	now := time.Now()
	var rooms roomRun
	defer rooms.flush(s)
	for i, m := range msgs {
		if s.isClosed() {
			return ErrServerClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		s.stats.messages.Add(1)
		if m.Validate() != nil || m.Kind == imcloud.KindMids || (m.Kind == imcloud.KindKick && len(m.Mids) > 0) {
			// A mids message or kick is job's to resolve into keys; one
			// that reaches a node came from a job that did not.
			s.stats.invalid.Add(1)
			continue
		}
		if m.Expired(now) {
			s.stats.expired.Add(1)
			continue
		}
		if m.Kind == imcloud.KindKick {
			rooms.flush(s) // after the room pushes before it
			if !m.ID.IsZero() && !s.dedup.add(m.ID) {
				s.stats.duplicates.Add(1)
				continue
			}
			s.deliverKick(m)
			continue
		}
		frame, drop := encodePush(m)
		if drop != dropNone {
			s.dropPush(m, drop)
			continue
		}
		paced := m.Kind == imcloud.KindBroadcast && m.Speed > 0
		if paced && !s.startBroadcast() {
			return fmt.Errorf("%w: message %d of %d", ErrOverloaded, i+1, len(msgs))
		}
		if !m.ID.IsZero() && !s.dedup.add(m.ID) {
			s.stats.duplicates.Add(1)
			if paced {
				s.endBroadcast()
			}
			continue
		}
		it := outItem{b: frame, at: acceptedTicks(m.Accepted)}
		if m.Kind == imcloud.KindRoom {
			rooms.add(s, m, it)
			continue
		}
		// Anything else keeps its place after the room pushes before it.
		rooms.flush(s)
		filter := m.Op != protocol.OpRaw
		switch m.Kind {
		case imcloud.KindKeys:
			rv := oneVariant(m, frame, it.at)
			var n, filtered int64
			for _, key := range m.Keys {
				c := s.bs.of(key).get(key)
				switch {
				case c == nil:
				case filter && !c.acceptsOp(m.Op):
					filtered++
				default:
					if cit, keep := c.pick(it, rv); keep && c.enqueue(cit) {
						n++
					}
				}
			}
			s.stats.delivered.Add(uint64(n))
			s.stats.filtered.Add(uint64(filtered))
			s.stats.fanout.Observe(n)
		case imcloud.KindBroadcast:
			if paced {
				go s.pacedBroadcast(it, m.Op, filter, int(m.Speed))
			} else {
				s.fanout("", it, nil, m.Op, filter, 1)
			}
		}
	}
	return nil
}

// maxRoomRun caps the bytes of consecutive room pushes merged into one
// shared item.
const maxRoomRun = 64 << 10

// roomRun merges consecutive pushes to the same room within one Deliver
// call (job batches room messages that waited) into one shared item: each
// receiver gets one enqueue and, usually, one socket write for the lot
// instead of one per push, which is what lets throughput grow with load.
// The writer splits the frames into op 9 messages under MaxBatchBody on
// WebSocket, so nothing a client sees changes but the packing. The item
// carries the first push's accepted time.
//
// rv is the run as recover connections receive it (recover.go), built
// only if a fan-out reaches one; nil while no push of the run carries a
// stream.
type roomRun struct {
	room   string
	frames []byte
	at     uint32
	count  uint64
	rv     *recVariant
}

func (r *roomRun) add(s *Server, m *imcloud.Message, it outItem) {
	frame := it.b
	if r.count > 0 && (m.Room != r.room || len(r.frames)+len(frame) > maxRoomRun) {
		r.flush(s)
	}
	if m.Stream != "" && r.rv == nil {
		// The first push with a stream: the plain frames before it are
		// one part of the variant, as they are.
		r.rv = &recVariant{}
		if r.count > 0 {
			r.rv.parts = append(r.rv.parts, recPart{frame: r.frames})
		}
	}
	if r.count == 0 {
		r.room, r.at = m.Room, it.at
		r.frames = frame // a single push needs no copy
	} else {
		if r.count == 1 {
			r.frames = append(make([]byte, 0, 2*len(r.frames)+len(frame)), r.frames...)
		}
		r.frames = append(r.frames, frame...)
	}
	if r.rv != nil {
		r.rv.parts = append(r.rv.parts, recPart{m: m, frame: frame})
	}
	r.count++
}

func (r *roomRun) flush(s *Server) {
	if r.count == 0 {
		return
	}
	if r.rv != nil {
		r.rv.at = r.at
	}
	s.fanout(r.room, outItem{b: r.frames, at: r.at}, r.rv, 0, false, r.count)
	r.room, r.frames, r.at, r.count, r.rv = "", nil, 0, 0, nil
}

// dropReason says why encodePush refused a message.
type dropReason uint8

const (
	dropNone     dropReason = iota
	dropReserved            // a reserved op, the message's or inside its batch
	dropInvalid             // a malformed batch
)

// encodePush encodes m once as the frame bytes every receiver shares. A
// batch (op 9) from the job is flattened: its inner frames are queued as
// they are, so op 9 is never nested. Every op, the message's and those in
// its batch, must be a push op (isPushOp).
func encodePush(m *imcloud.Message) ([]byte, dropReason) {
	if m.Op != protocol.OpRaw {
		if !isPushOp(m.Op) {
			return nil, dropReserved
		}
		return protocol.AppendFrame(make([]byte, 0, protocol.HeaderLen+len(m.Body)), &protocol.Frame{Ver: protocol.VerGoim, Op: m.Op, Body: m.Body}), dropNone
	}
	if len(m.Body) == 0 {
		return nil, dropInvalid
	}
	it := protocol.NewBatchIter(m.Body)
	var f protocol.Frame
	reserved := false
	for it.Next(&f) {
		reserved = reserved || !isPushOp(f.Op)
	}
	switch {
	case it.Err() != nil:
		return nil, dropInvalid
	case reserved:
		return nil, dropReserved
	}
	return append([]byte(nil), m.Body...), dropNone
}

// isPushOp reports whether op may travel as a push: an application op,
// protocol.OpPushMin and above. Ops below are the protocol's own (auth,
// heartbeat, op 6, op 9, replies); the API refuses them, and a node never
// delivers one that reached the queue anyway.
func isPushOp(op int32) bool { return op >= protocol.OpPushMin }

// dropPush counts and logs a message encodePush refused.
func (s *Server) dropPush(m *imcloud.Message, why dropReason) {
	if why == dropReserved {
		s.stats.reserved.Add(1)
		s.cfg.Logger.Debug("cloud: message of a reserved op dropped", "op", m.Op, "id", m.ID.String())
		return
	}
	s.stats.invalid.Add(1)
}

// parallelMin is the number of sessions from which fan-out spreads buckets
// over several goroutines; below it one goroutine is faster.
const parallelMin = 2048

// fanout enqueues it on every connection of room (every connection for
// room ""), filtered by accepted op when filter is set. Buckets are visited
// in parallel on large nodes.
//
// weight is the number of pushes it carries, for the delivered count and
// the fan-out histogram. A room push that finds no member on the node (job
// read a stale membership, or one without RoomStore sent it to every
// node) is dropped and counted (Stats.RoomMisses).
//
// rv is what recover connections receive instead (recover.go), nil when
// the push carries no stream.
func (s *Server) fanout(room string, it outItem, rv *recVariant, op int32, filter bool, weight uint64) {
	s.sched.fanoutStarts()
	bs := s.bs.bs
	workers := runtime.GOMAXPROCS(0)
	if workers > len(bs) {
		workers = len(bs)
	}
	if workers <= 1 || s.stats.sessions.Load() < parallelMin {
		n, members := s.fanoutPart(bs, 0, 1, room, it, rv, op, filter, weight)
		s.fanoutDone(room, n, members, weight)
		return
	}
	var parts struct { // one allocation for what the goroutines share
		wg               sync.WaitGroup
		reached, members atomic.Uint64
	}
	for w := 1; w < workers; w++ {
		parts.wg.Add(1)
		go func(w int) {
			defer parts.wg.Done()
			n, members := s.fanoutPart(bs, w, workers, room, it, rv, op, filter, weight)
			parts.reached.Add(n)
			parts.members.Add(members)
		}(w)
	}
	n, members := s.fanoutPart(bs, 0, workers, room, it, rv, op, filter, weight)
	parts.wg.Wait()
	s.fanoutDone(room, n+parts.reached.Load(), members+parts.members.Load(), weight)
}

// fanoutDone observes a fan-out that reached n connections of the
// members it found, and counts a room push that found none.
func (s *Server) fanoutDone(room string, n, members, weight uint64) {
	s.stats.fanout.ObserveN(int64(n), weight)
	if room != "" && members == 0 {
		s.stats.roomMisses.Add(weight)
	}
}

// fanoutPart is one fan-out goroutine's share: buckets first, first+step,
// and so on. It counts their deliveries, filtered connections and backlog
// once, and returns how many connections it reached, and how many it
// found (room members, or every connection).
func (s *Server) fanoutPart(bs []*bucket, first, step int, room string, it outItem, rv *recVariant, op int32, filter bool, weight uint64) (uint64, uint64) {
	var n, filtered, found uint64
	var backlog int64
	for i := first; i < len(bs); i += step {
		bn, bf, bb, bc := bs[i].push(s.sched, room, it, rv, op, filter)
		n, filtered, backlog, found = n+bn, filtered+bf, backlog+bb, found+bc
	}
	s.stats.delivered.Add(n * weight)
	if filtered > 0 {
		s.stats.filtered.Add(filtered * weight)
	}
	s.backlog.add(first, backlog)
	return n, found
}

// push enqueues it (rv's variant on recover connections, when set) on the
// bucket's connections in room ("" = all) and
// hands those it found idle to sched. It returns how many it reached, how
// many it skipped because they do not accept op (when filter is set), the
// change to the node's backlog, for the caller to count, and how many
// connections it found.
func (b *bucket) push(sched *scheduler, room string, it outItem, rv *recVariant, op int32, filter bool) (uint64, uint64, int64, uint64) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var list []*conn
	if room == "" {
		list = b.all.conns
	} else if l := b.rooms[room]; l != nil {
		list = l.conns
	}
	var n, filtered uint64
	var backlog int64 // counted once for the bucket, not per connection
	ready := readyBatch{s: sched}
	variant := rv != nil // a push without a stream never looks at c.rec
	for _, c := range list {
		if filter && !c.acceptsOp(op) {
			filtered++
			continue
		}
		cit := it
		if variant && c.rec {
			var keep bool
			if cit, keep = c.pick(it, rv); !keep {
				continue // the replay gave it already
			}
		}
		queued, start := c.push(cit, &backlog)
		if queued {
			n++
		}
		if start != qIdle {
			ready.add(c, start)
		}
	}
	ready.flush()
	return n, filtered, backlog, uint64(len(list))
}

// startBroadcast takes a paced-broadcast slot.
func (s *Server) startBroadcast() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	select {
	case s.bcast <- struct{}{}:
		s.bg.Add(1)
		s.stats.broadcasts.Add(1)
		return true
	default:
		return false
	}
}

func (s *Server) endBroadcast() {
	<-s.bcast
	s.stats.broadcasts.Add(-1)
	s.bg.Done()
}

// pacedBroadcast delivers it to every connection at speed connections
// per second, in slices every 100 ms, bucket by bucket. It stops when
// Shutdown begins. Its fan-out is observed once it ends.
func (s *Server) pacedBroadcast(it outItem, op int32, filter bool, speed int) {
	defer s.endBroadcast()
	const tick = 100 * time.Millisecond
	slice := max(speed/10, 1)
	start := time.Now()
	done := 0
	var reached int64
	var filtered uint64
	defer func() {
		s.stats.fanout.Observe(reached)
		s.stats.filtered.Add(filtered)
	}()
	var buf []*conn
	for _, b := range s.bs.bs {
		buf = b.snapshot(buf[:0], "")
		for _, c := range buf {
			if filter && !c.acceptsOp(op) {
				filtered++
				continue
			}
			if c.enqueue(it) {
				s.stats.delivered.Add(1)
				reached++
			}
			if done++; done%slice == 0 {
				due := start.Add(time.Duration(done/slice) * tick)
				if d := time.Until(due); d > 0 {
					t := time.NewTimer(d)
					select {
					case <-s.quit:
						t.Stop()
						return
					case <-t.C:
					}
				}
			}
		}
		clear(buf)
	}
}

// dedup remembers the most recent message ids (a ring of size n plus a
// set) so redeliveries are dropped.
type dedup struct {
	mu   sync.Mutex
	set  map[imcloud.MessageID]struct{}
	ring []imcloud.MessageID
	next int
}

func newDedup(n int) *dedup {
	return &dedup{set: make(map[imcloud.MessageID]struct{}, n), ring: make([]imcloud.MessageID, n)}
}

// add records id and reports whether it was new.
func (d *dedup) add(id imcloud.MessageID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, seen := d.set[id]; seen {
		return false
	}
	if old := d.ring[d.next]; !old.IsZero() {
		delete(d.set, old)
	}
	d.ring[d.next] = id
	d.next = (d.next + 1) % len(d.ring)
	d.set[id] = struct{}{}
	return true
}
