package cloud

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/imcloud/imcloud"
)

// maxPendingRemoves bounds removals waiting for the store (during an
// outage). Beyond it the oldest are dropped and counted: they expire by
// TTL anyway.
const maxPendingRemoves = 1 << 17

// sessionSync keeps the store in step with the node: session puts and
// removals batched (a flush takes whatever queued during the previous
// round trip), periodic renewal of every session, node registration,
// room-count reports and, with a RoomStore, the rooms the node has
// (membership.go). Every StoreCheckInterval it checks that the store
// still holds what the node registered (see check) and registers
// everything again at once when not. With no store every method is a
// no-op.
type sessionSync struct {
	s     *Server
	store SessionStore
	// epoch is random per process and registered with the node: the store
	// takes the node id registered with another epoch for a restart and
	// removes the routes the previous process left (imcloud.Node.Epoch).
	// start registers the node before any session, so none of this
	// process's is among them.
	epoch string
	// since is when the process registered first (imcloud.Node.Since):
	// set by New before any client can connect, the same on every
	// registration after, even one that follows a failed first one.
	since time.Time

	mu      sync.Mutex
	puts    map[string]imcloud.Session
	removes []imcloud.Session
	wake    chan struct{}
	// stop ends flushLoop (flushFinal closes it); flushed is closed when
	// flushLoop has returned.
	stop, flushed chan struct{}
	// round is closed once the flush that takes the puts and room changes
	// queued now has written them (or failed to).
	round chan struct{}
	// retry ends flushLoop's wait after a failed flush: check found the
	// store reachable again (flushretry.go). failing is set from a failed
	// flush to the next that writes.
	retry   chan struct{}
	failing atomic.Bool

	// roomStore is the store as a RoomStore, nil when it is not one: then
	// no membership is kept (membership.go). members counts the node's
	// connections per room, roomPuts holds the room changes the next
	// round writes (true: the node has the room, false: it has not), both
	// under mu; roomWrite orders room writes.
	roomStore RoomStore
	members   map[string]roomState
	roomPuts  map[string]bool
	roomWrite sync.Mutex

	// needFull: a store call failed; re-put every session once it works.
	needFull atomic.Bool
	cluster  atomic.Pointer[map[string]int32]
	// gen is the store's generation the node last registered everything
	// under ("" before it knew one). Only start and tickLoop use it.
	gen string
}

func newSessionSync(s *Server) *sessionSync {
	var e [8]byte
	_, _ = rand.Read(e[:])
	ss := &sessionSync{s: s, store: s.cfg.Store, epoch: hex.EncodeToString(e[:]),
		since: time.Now(), puts: make(map[string]imcloud.Session), wake: make(chan struct{}, 1), round: make(chan struct{}),
		retry: make(chan struct{}, 1), stop: make(chan struct{}), flushed: make(chan struct{})}
	if rs, ok := s.cfg.Store.(RoomStore); ok {
		ss.roomStore, ss.members, ss.roomPuts = rs, make(map[string]roomState), make(map[string]bool)
	}
	return ss
}

func (ss *sessionSync) start() {
	if ss.store == nil {
		return
	}
	// Register before New returns, so that a job reading the directory
	// right after (one process, or a fast cluster) already sees the node.
	ss.gen, _ = ss.generation()
	ss.putNode()
	ss.reportRooms()
	ss.s.bg.Add(1)
	go ss.flushLoop()
	go ss.tickLoop()
}

// put schedules a session put (auth, room or accepts change). The
// channel is closed once the put was written to the store or failed (nil
// without a store): see awaitPut.
func (ss *sessionSync) put(sess imcloud.Session) <-chan struct{} {
	if ss.store == nil {
		return nil
	}
	ss.mu.Lock()
	ss.puts[sess.Key] = sess
	done := ss.round
	ss.mu.Unlock()
	ss.signal()
	return done
}

// awaitPut waits for a put's channel, at most StoreTimeout, and not at all
// while the store is failing (a client's auth does not wait on an outage:
// its session is put again when the store is back).
func (ss *sessionSync) awaitPut(done <-chan struct{}) {
	if done == nil || ss.needFull.Load() || ss.failing.Load() {
		return
	}
	t := time.NewTimer(ss.s.cfg.StoreTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ss.s.quit:
	}
}

// remove schedules a conditional removal (disconnect).
func (ss *sessionSync) remove(sess imcloud.Session) {
	if ss.store == nil {
		return
	}
	ss.mu.Lock()
	if p, ok := ss.puts[sess.Key]; ok && p.Gen == sess.Gen {
		delete(ss.puts, sess.Key)
	}
	if len(ss.removes) >= maxPendingRemoves {
		ss.removes = ss.removes[1:]
		ss.s.stats.storeErrors.Add(1)
	}
	ss.removes = append(ss.removes, sess)
	ss.mu.Unlock()
	ss.signal()
}

func (ss *sessionSync) signal() {
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

func (ss *sessionSync) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), ss.s.cfg.StoreTimeout)
}

func (ss *sessionSync) failed(what string, err error) {
	ss.s.stats.storeErrors.Add(1)
	ss.s.cfg.Logger.Warn("cloud: session store call failed", "call", what, "err", err)
}

// flush writes what is pending: puts and room changes first (then the
// round is over), then removals, so a put and a removal of the same
// connection end removed. It reports whether it made a store call and
// whether every call succeeded; removals that failed are pending again.
func (ss *sessionSync) flush() (called, ok bool) {
	ss.mu.Lock()
	puts := make([]imcloud.Session, 0, len(ss.puts))
	for _, p := range ss.puts {
		puts = append(puts, p)
	}
	clear(ss.puts)
	joined, left := ss.takeRooms()
	round := ss.round
	rotate := len(puts)+len(joined)+len(left) > 0
	if rotate {
		ss.round = make(chan struct{})
	}
	removes := ss.removes
	ss.removes = nil
	ss.mu.Unlock()

	called, ok = len(puts)+len(joined)+len(left)+len(removes) > 0, true
	if len(puts) > 0 && !ss.putSessions(puts) {
		ss.needFull.Store(true)
		ok = false
	}
	if len(joined)+len(left) > 0 && !ss.writeRooms(joined, left) {
		ok = false
	}
	if rotate {
		close(round)
	}
	for i := 0; i < len(removes); i += ss.s.cfg.StoreCallSessions {
		chunk := removes[i:min(i+ss.s.cfg.StoreCallSessions, len(removes))]
		ctx, cancel := ss.ctx()
		err := ss.store.RemoveSessions(ctx, chunk)
		cancel()
		if err != nil {
			ss.failed("RemoveSessions", err)
			ss.mu.Lock()
			rest := removes[i:]
			if room := maxPendingRemoves - len(ss.removes); len(rest) > room {
				rest = rest[len(rest)-room:]
			}
			ss.removes = append(rest, ss.removes...)
			ss.mu.Unlock()
			return called, false
		}
	}
	return called, ok
}

func (ss *sessionSync) putSessions(sessions []imcloud.Session) bool {
	ttl := ss.s.cfg.SessionTTL
	for i := 0; i < len(sessions); i += ss.s.cfg.StoreCallSessions {
		chunk := sessions[i:min(i+ss.s.cfg.StoreCallSessions, len(sessions))]
		ctx, cancel := ss.ctx()
		err := ss.store.PutSessions(ctx, chunk, ttl)
		cancel()
		if err != nil {
			ss.failed("PutSessions", err)
			return false
		}
	}
	return true
}

// putAll renews every session of the node and every room it has
// (periodic renewal, and recovery after a store outage or a wipe),
// StoreCallSessions at a time. It reports whether every batch was stored;
// if not, needFull is set.
func (ss *sessionSync) putAll() bool {
	var buf []*conn
	sessions := make([]imcloud.Session, 0, 256)
	ok := true
	for _, b := range ss.s.bs.bs {
		buf = b.snapshot(buf[:0], "")
		for _, c := range buf {
			sessions = append(sessions, c.session())
		}
		clear(buf)
		if len(sessions) >= ss.s.cfg.StoreCallSessions {
			ok = ss.putSessions(sessions) && ok
			sessions = sessions[:0]
		}
	}
	if len(sessions) > 0 {
		ok = ss.putSessions(sessions) && ok
	}
	ok = ss.renewRooms() && ok
	if !ok {
		ss.needFull.Store(true)
	}
	return ok
}

// tickLoop registers the node, renews sessions and reports room counts.
func (ss *sessionSync) tickLoop() {
	defer ss.s.bg.Done()
	cfg := &ss.s.cfg
	nodeT := time.NewTicker(cfg.NodeTTL / 3)
	renewT := time.NewTicker(cfg.SessionTTL / 3)
	roomT := time.NewTicker(cfg.RoomCountInterval)
	checkT := time.NewTicker(cfg.StoreCheckInterval)
	defer nodeT.Stop()
	defer renewT.Stop()
	defer roomT.Stop()
	defer checkT.Stop()
	for {
		select {
		case <-ss.s.quit:
			return
		case <-nodeT.C:
			ss.putNode()
		case <-renewT.C:
			ss.putAll()
		case <-roomT.C:
			ss.reportRooms()
		case <-checkT.C:
			ss.check()
		}
	}
}

// generation reads the store's generation if it has one (GenerationStore);
// "" otherwise.
func (ss *sessionSync) generation() (string, error) {
	gs, ok := ss.store.(GenerationStore)
	if !ok {
		return "", nil
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	gen, err := gs.Generation(ctx, ss.gen)
	if err != nil {
		ss.failed("Generation", err)
		ss.needFull.Store(true)
	}
	return gen, err
}

// check registers the node, every session and the room counts again, at
// once, when the store lost them: its generation changed (Redis restarted
// empty, was flushed, failed over to an empty replica), or a store call
// failed since the last check (an outage: puts may be missing). A
// re-registration that fails is retried at the next check.
func (ss *sessionSync) check() {
	gen, err := ss.generation()
	if err != nil {
		return
	}
	wiped := gen != ss.gen && ss.gen != ""
	if !wiped && !ss.needFull.Swap(false) {
		ss.gen = gen
		return
	}
	log := ss.s.cfg.Logger
	if wiped {
		log.Warn("cloud: the session store lost its data (new generation); registering the node and every session again",
			"generation", gen)
	} else {
		log.Info("cloud: session store reachable again; registering the node and every session again")
	}
	start := time.Now()
	if !ss.putNode() || !ss.putAll() {
		ss.needFull.Store(true)
		return
	}
	ss.reportRooms()
	ss.gen = gen
	ss.recovered() // the removals and room removals a failure left pending
	log.Info("cloud: node and sessions registered again", "sessions", ss.s.stats.sessions.Load(),
		"took", time.Since(start).Round(time.Millisecond))
}

func (ss *sessionSync) node() imcloud.Node {
	s := ss.s
	return imcloud.Node{
		ID: s.id, LinkAddr: s.cfg.LinkAddr, PublicAddrs: s.cfg.PublicAddrs,
		Conns: int(s.stats.sessions.Load()), IPs: s.distinctIPs(), Updated: time.Now(), Epoch: ss.epoch,
		Since: ss.since,
	}
}

// putNode registers or renews the node. A failure sets needFull: the
// next check registers everything again.
func (ss *sessionSync) putNode() bool {
	ctx, cancel := ss.ctx()
	err := ss.store.PutNode(ctx, ss.node(), ss.s.cfg.NodeTTL)
	cancel()
	if err != nil {
		ss.failed("PutNode", err)
		ss.needFull.Store(true)
		return false
	}
	return true
}

// localCounts returns the node's room online counts.
func (s *Server) localCounts() map[string]int32 {
	counts := make(map[string]int32)
	for _, b := range s.bs.bs {
		b.mu.RLock()
		for room, l := range b.rooms {
			counts[room] += int32(len(l.conns))
		}
		b.mu.RUnlock()
	}
	return counts
}

func (ss *sessionSync) reportRooms() {
	counts := ss.s.localCounts()
	ctx, cancel := ss.ctx()
	defer cancel()
	if err := ss.store.PutRoomCounts(ctx, ss.s.id, counts, 3*ss.s.cfg.RoomCountInterval); err != nil {
		ss.failed("PutRoomCounts", err)
		return
	}
	all, err := ss.store.RoomCounts(ctx)
	if err != nil {
		ss.failed("RoomCounts", err)
		return
	}
	ss.cluster.Store(&all)
}

// clusterCount is the cached cluster-wide count of room, if known.
func (ss *sessionSync) clusterCount(room string) (int32, bool) {
	m := ss.cluster.Load()
	if m == nil {
		return 0, false
	}
	n, ok := (*m)[room]
	return n, ok
}

// deregister removes the node from the store (drain).
func (ss *sessionSync) deregister() {
	if ss.store == nil {
		return
	}
	ctx, cancel := ss.ctx()
	defer cancel()
	if err := ss.store.RemoveNode(ctx, ss.s.id); err != nil {
		ss.failed("RemoveNode", err)
	}
}

// flushFinal stops flushLoop and writes what it left: the removals of
// the last drained connections.
func (ss *sessionSync) flushFinal() {
	if ss.store == nil {
		return
	}
	close(ss.stop)
	<-ss.flushed
	ss.flush()
}

// session describes c for the store.
func (c *conn) session() imcloud.Session { return c.sessionIn(c.b.roomOf(c)) }

// sessionIn describes c, its primary room being room, for the store.
func (c *conn) sessionIn(room string) imcloud.Session {
	p := c.accepts.Load()
	var acc []int32
	if p != nil {
		acc = *p
	}
	return imcloud.Session{Mid: c.mid, Key: c.key, Room: room, Platform: c.platform, Accepts: acc, Node: c.srv.id,
		Since: time.Unix(int64(c.since), 0), Gen: c.gen}
}

// putSession schedules c's session put (sessionSync.put) if c is still
// the connection under its key, deciding under the bucket's lock: a
// connection replaced or kicked while one of its frames was being handled
// must not overwrite its successor's session, pending or stored. nil when
// nothing was put.
func (c *conn) putSession() <-chan struct{} {
	b := c.b
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.keys[c.key] != c {
		return nil
	}
	return c.srv.sess.put(c.sessionIn(c.room))
}
