package cloud

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/protocol"
)

// Recovery (docs/protocol-recovery.md; docs/design.md, recovery).
//
// A connection that authenticated with ver 2 and "recover": true (a
// recover connection, conn.rec) follows two streams: its user's (mid
// above 0) and its room's. Pushes that carry a stream reach it as op 24
// frames, which tell the stream, epoch and offset; every other connection
// receives the plain frame, byte for byte what it received before
// recovery existed. Deliver builds the op 24 variant once per message and
// shares it, as it shares the plain frame.
//
// At auth the client may send the positions it last saw. The queue is
// paused while the connection registers (conn.authenticate); then, for
// each stream it follows, the node reads the history after the position
// (Config.History), and splices into the paused queue, after the
// AuthReply: the replayed pushes as op 24 frames, one op 25 frame telling
// per stream whether the replay was complete, then the live pushes
// buffered meanwhile, less the op 24 frames the client has: in the epoch
// of the position it sent, at or below that position or the last push
// replayed. A push appended before the read is in the read; one delivered
// after the registration is live; the overlap is dropped by offset, so
// the client gets every push once, in order. A client without a position
// in the current epoch (first connect, epoch changed) was replayed
// nothing and gets every live push. ChangeRoom and Join do the same for
// the room's stream (join.go).

// History is the history store a node replays from: logic.MemoryHistory
// all-in-one, redis.History clustered. Read returns the pushes of s after
// since, at most limit, with the stream's epoch and top
// (imcloud.HistoryRead). It may be called from many goroutines at once.
type History interface {
	Read(ctx context.Context, s imcloud.Stream, since imcloud.Position, limit int) (imcloud.HistoryRead, error)
}

// maxPositions is the most positions an auth body may carry.
const maxPositions = 16

// errTooManyPositions refuses an auth body with more than maxPositions.
var errTooManyPositions = fmt.Errorf("cloud: more than %d positions in the auth body", maxPositions)

// recovery outcomes, the keys of Stats.Recoveries: recovered, or the
// reason a stream was not.
const (
	recRecovered = iota
	recEpochChanged
	recTrimmed
	recUnknownPosition
	recNotFollowed
	recUnavailable
	numRecOutcomes
)

var recOutcomes = [numRecOutcomes]string{
	recRecovered:       "recovered",
	recEpochChanged:    imcloud.ReasonEpochChanged,
	recTrimmed:         imcloud.ReasonTrimmed,
	recUnknownPosition: imcloud.ReasonUnknownPosition,
	recNotFollowed:     imcloud.ReasonNotFollowed,
	recUnavailable:     imcloud.ReasonUnavailable,
}

// countRecovery counts one stream's outcome.
func (s *Server) countRecovery(rs *protocol.RecoveryStream) {
	i := recRecovered
	if !rs.Recovered {
		i = slices.Index(recOutcomes[:], rs.Reason)
		if i < 0 {
			i = recUnavailable
		}
	}
	s.stats.recoveries[i].Add(1)
	s.stats.replayed.Add(uint64(rs.Replayed))
}

// recoveryCounts returns the outcomes by key, for Stats.
func (c *counters) recoveryCounts() map[string]uint64 {
	m := make(map[string]uint64, numRecOutcomes)
	for i, k := range recOutcomes {
		m[k] = c.recoveries[i].Load()
	}
	return m
}

// pick returns what c receives of a push: its op 24 variant (rv) on a
// recover connection when the push carries a stream; it otherwise.
func (c *conn) pick(it outItem, rv *recVariant) (outItem, bool) {
	if !c.rec {
		return it, true
	}
	rit, ok := rv.item()
	if !ok {
		return it, true
	}
	if c.hasFloors.Load() {
		return c.pastFloors(rit)
	}
	return rit, true
}

// Floors: after a replay, job may still deliver live a push the replay
// already gave (appended before the read, its users resolved or its
// fan-out reaching this node only after the connection's queue resumed).
// The splice drops the live copies that arrived while the queue was
// paused; floors drop those that arrive later: per stream replayed, the
// position the client holds. A stream's floor goes as soon as one of its
// pushes above it arrives: pushes of a stream come in order, so no older
// one can follow.

// setFloors records, per stream, the position the client holds after a
// replay.
func (c *conn) setFloors(drop map[string]imcloud.Position) {
	if len(drop) == 0 {
		return
	}
	c.floorMu.Lock()
	defer c.floorMu.Unlock()
	if c.floors == nil {
		c.floors = make(map[string]imcloud.Position, len(drop))
	}
	for k, v := range drop {
		c.floors[k] = v
	}
	c.hasFloors.Store(true)
}

// pastFloors returns it without the op 24 frames at or below their
// stream's floor (false: nothing is left), and lifts the floor of every
// stream that has a push above it in it.
func (c *conn) pastFloors(it outItem) (outItem, bool) {
	c.floorMu.Lock()
	defer c.floorMu.Unlock()
	out, keep := filterPushAt(it, func(p *protocol.PushAt) bool {
		if held(c.floors, p) {
			return false
		}
		delete(c.floors, string(p.Stream)) // a push above the floor: no older one follows
		return true
	})
	if len(c.floors) == 0 {
		c.hasFloors.Store(false)
	}
	return out, keep
}

// recVariant is what recover connections receive of a push or of a room
// run: op 24 frames for the pushes that carry a stream, the plain frame
// for those that do not. It is built on first use, so a node without
// recover connections, or a fan-out that reaches none, never builds it
// (a push carrying a stream costs nobody else an encoding). The
// goroutines of one fan-out share it.
type recVariant struct {
	parts []recPart
	at    uint32
	once  sync.Once
	b     []byte // nil: no push of it can travel as op 24
}

// recPart is one push of a variant and its plain frame; a nil m is
// frames that travel as they are.
type recPart struct {
	m     *imcloud.Message
	frame []byte
}

// item returns the variant as an outItem, building it the first time;
// ok false when none of its pushes travels as op 24 (no stream, or a name
// op 24 cannot carry): the plain item serves. A nil v has none.
func (v *recVariant) item() (outItem, bool) {
	if v == nil {
		return outItem{}, false
	}
	v.once.Do(func() { v.b = v.build() })
	return outItem{b: v.b, at: v.at}, v.b != nil
}

func (v *recVariant) build() []byte {
	n, streams := 0, false
	for _, p := range v.parts {
		if p.m != nil && p.m.Stream != "" {
			n += protocol.HeaderLen + protocol.PushAtLen(string(p.m.Stream), p.m.Epoch, len(p.m.Body))
			streams = true
		} else {
			n += len(p.frame)
		}
	}
	if !streams {
		return nil
	}
	dst, carried := make([]byte, 0, n), false
	for _, p := range v.parts {
		if p.m != nil && p.m.Stream != "" {
			var ok bool
			if dst, ok = appendPushAtFrame(dst, p.m.Op, p.m.Offset, p.m.Stream, p.m.Epoch, p.m.Body); ok {
				carried = true
				continue
			}
		}
		dst = append(dst, p.frame...)
	}
	if !carried {
		return nil
	}
	return dst
}

// oneVariant is the variant of a single push that carries a stream; nil
// for one that carries none.
func oneVariant(m *imcloud.Message, frame []byte, at uint32) *recVariant {
	if m.Stream == "" {
		return nil
	}
	return &recVariant{parts: []recPart{{m: m, frame: frame}}, at: at}
}

// appendPushAtFrame appends an op 24 frame; ok false (dst unchanged) for
// a stream or epoch over protocol.MaxPushAtName bytes.
func appendPushAtFrame(dst []byte, op int32, offset int64, s imcloud.Stream, epoch string, body []byte) ([]byte, bool) {
	n := protocol.PushAtLen(string(s), epoch, len(body))
	if len(s) > protocol.MaxPushAtName || len(epoch) > protocol.MaxPushAtName {
		return dst, false
	}
	if dst == nil {
		dst = make([]byte, 0, protocol.HeaderLen+n)
	}
	dst = protocol.AppendHeader(dst, n, protocol.VerExtensions, protocol.OpPushAt, 0)
	dst, _ = protocol.AppendPushAt(dst, op, offset, string(s), epoch, body)
	return dst, true
}

// checkPositions validates the recovery fields of an auth body: at most
// maxPositions (more is a malformed auth).
func checkPositions(b *AuthBody) error {
	if len(b.Positions) > maxPositions {
		return errTooManyPositions
	}
	return nil
}

// followed returns the streams c follows now: its user's and those of
// the rooms it is in, its primary room's first.
func (c *conn) followed() []imcloud.Stream {
	var ss []imcloud.Stream
	if c.mid > 0 {
		ss = append(ss, imcloud.UserStream(c.mid))
	}
	for _, room := range c.b.roomList(c) {
		ss = append(ss, imcloud.RoomStream(room))
	}
	return ss
}

// recoverAt replays streams into c's paused queue at index at (after the
// AuthReply, or the ChangeRoom reply), from the positions the client
// sent (a stream without one: first connect, nothing replayed), queues
// op 25, and reports positions for streams c does not follow as
// not_followed without reading them. The caller resumes the queue.
func (c *conn) recoverAt(at int, streams []imcloud.Stream, positions map[string]imcloud.Position) {
	s := c.srv
	var ins []outItem
	var body protocol.Recovery
	drop := make(map[string]imcloud.Position, len(streams))
	var run []byte
	flush := func() {
		if len(run) > 0 {
			ins = append(ins, outItem{b: run, kind: itemPush})
			run = nil
		}
	}
	for _, st := range streams {
		pos, asked := positions[string(st)]
		rs, entries := c.readStream(st, pos, asked)
		for _, e := range entries {
			n := protocol.HeaderLen + protocol.PushAtLen(string(st), rs.Epoch, len(e.Body))
			if len(run) > 0 && len(run)+n > maxRoomRun {
				flush()
			}
			if run == nil {
				run = make([]byte, 0, min(maxRoomRun, n*(len(entries))))
			}
			run, _ = appendPushAtFrame(run, e.Op, e.Offset, st, rs.Epoch, e.Body)
		}
		flush()
		if asked && rs.Epoch == pos.Epoch {
			// The client has everything up to its position or the
			// replay's end in its epoch: live copies go. In another
			// epoch (first connect, epoch changed) it has seen none.
			drop[string(st)] = imcloud.Position{Epoch: rs.Epoch, Offset: max(rs.Offset, pos.Offset)}
		}
		body.Streams = append(body.Streams, rs)
	}
	for _, name := range slices.Sorted(maps.Keys(positions)) {
		if !slices.Contains(streams, imcloud.Stream(name)) {
			p := positions[name]
			body.Streams = append(body.Streams, protocol.RecoveryStream{Stream: name, Epoch: p.Epoch, Offset: p.Offset, Reason: imcloud.ReasonNotFollowed})
		}
	}
	for i := range body.Streams {
		s.countRecovery(&body.Streams[i])
	}
	b, _ := json.Marshal(body)
	ins = append(ins, outItem{b: protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerExtensions, Op: protocol.OpRecovery, Body: b}), kind: itemFrame})
	c.out.splice(at, ins, func(it outItem) (outItem, bool) { return dropReplayed(it, drop) })
	c.setFloors(drop)
}

// readStream reads one stream's history after pos (asked: the client
// sent one) and returns its op 25 entry and the entries to replay.
func (c *conn) readStream(st imcloud.Stream, pos imcloud.Position, asked bool) (protocol.RecoveryStream, []imcloud.HistoryEntry) {
	s := c.srv
	rs := protocol.RecoveryStream{Stream: string(st), Epoch: pos.Epoch, Offset: pos.Offset}
	if s.cfg.History == nil || len(st) > protocol.MaxPushAtName {
		rs.Reason = imcloud.ReasonUnavailable
		return rs, nil
	}
	if !asked {
		pos = imcloud.Position{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HistoryTimeout)
	r, err := s.cfg.History.Read(ctx, st, pos, s.cfg.HistoryLimit)
	cancel()
	if err != nil {
		s.cfg.Logger.Debug("cloud: history read failed", "stream", string(st), "err", err)
		rs.Reason = imcloud.ReasonUnavailable
		return rs, nil
	}
	if len(r.Epoch) > protocol.MaxPushAtName {
		rs.Reason = imcloud.ReasonUnavailable
		return rs, nil
	}
	now := time.Now()
	entries := r.Entries[:0:0]
	last := int64(-1)
	var ids map[imcloud.MessageID]struct{}
	for _, e := range r.Entries {
		if e.Offset <= last || (asked && e.Offset <= pos.Offset) {
			continue // out of order or at the position: never twice
		}
		last = e.Offset
		if !e.ID.IsZero() {
			// A push retried with its idempotency key was appended at
			// two offsets; the client gets it once, as it would live
			// (the nodes' dedup).
			if ids == nil {
				ids = make(map[imcloud.MessageID]struct{}, len(r.Entries))
			}
			if _, dup := ids[e.ID]; dup {
				continue
			}
			ids[e.ID] = struct{}{}
		}
		if e.Expired(now) {
			continue
		}
		entries = append(entries, e)
	}
	rs.Epoch, rs.Offset = r.Epoch, r.Top
	if len(entries) > 0 && !r.Complete && r.Reason != imcloud.ReasonTrimmed {
		// An incomplete read for another reason returns nothing to
		// replay; a store that did is not trusted with it.
		entries = nil
	}
	if len(entries) > 0 {
		rs.Offset = entries[len(entries)-1].Offset
		if last > rs.Offset {
			rs.Offset = last // expired entries at the end count as seen
		}
	}
	rs.Recovered, rs.Reason, rs.Replayed = r.Complete, r.Reason, len(entries)
	if rs.Recovered {
		rs.Reason = ""
	} else if rs.Reason == "" {
		rs.Reason = imcloud.ReasonTrimmed
	}
	return rs, entries
}

// dropReplayed returns it without the op 24 frames of a stream in drop at
// or below its position there (same epoch): pushes the replay carried,
// or the client had. ok false when nothing is left.
func dropReplayed(it outItem, drop map[string]imcloud.Position) (outItem, bool) {
	if len(drop) == 0 {
		return it, true
	}
	return filterPushAt(it, func(p *protocol.PushAt) bool { return !held(drop, p) })
}

// held reports whether p is at or below its stream's position in pos
// (same epoch).
func held(pos map[string]imcloud.Position, p *protocol.PushAt) bool {
	at, ok := pos[string(p.Stream)]
	return ok && at.Epoch == string(p.Epoch) && p.Offset <= at.Offset
}

// filterPushAt returns it without the op 24 frames keep refuses (other
// frames stay), in one pass over its frames; ok false when nothing is
// left. An item without op 24 frames is returned as it is.
func filterPushAt(it outItem, keep func(*protocol.PushAt) bool) (outItem, bool) {
	if !bytes.Contains(it.b, pushAtMarker) {
		return it, true
	}
	var kept []byte
	rest, off := it.b, 0
	for len(rest) > 0 {
		n := frameLen(rest)
		drop := false
		var f protocol.Frame
		if _, err := protocol.ParseFrame(rest[:n], &f, 0); err == nil && f.Op == protocol.OpPushAt {
			if p, err := protocol.ParsePushAt(f.Body); err == nil {
				drop = !keep(&p)
			}
		}
		if drop {
			if kept == nil {
				kept = append(make([]byte, 0, len(it.b)), it.b[:off]...)
			}
		} else if kept != nil {
			kept = append(kept, rest[:n]...)
		}
		rest, off = rest[n:], off+n
	}
	if kept == nil {
		return it, true
	}
	it.b = kept
	return it, len(kept) > 0
}

// pushAtMarker is the header bytes ver 2, op 24 start with: an item
// without them holds no op 24 frame.
var pushAtMarker = []byte{0, protocol.HeaderLen, 0, byte(protocol.VerExtensions), 0, 0, 0, byte(protocol.OpPushAt)}
