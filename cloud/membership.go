package cloud

import (
	"maps"
	"slices"
)

// Membership: which rooms the node has, in the store (docs/design.md,
// rooms).
//
// job sends a room push only to the nodes that have a member of the room,
// as the store says (RoomStore). The race it must not lose: a client
// enters a room no one on its node was in, gets its reply, and a push the
// API accepted after that reply must find the node. So the node counts
// its connections per room, and when a room's count goes from 0 to 1 (a
// first member by auth room_id, ChangeRoom or Join) the room joins the
// pending store write of sessionSync's next flush round; the member's
// reply (AuthReply, op 13, op 19) reaches the client only after that
// round (awaitPut: at most StoreTimeout, not at all while the store is
// failing, as for the session put at auth). A member entering a room
// whose write is still under way waits for the same round; one entering
// a room the store has does not wait.
//
// When a room's count goes back to 0 its removal is written in the next
// round, which nobody waits for: a stale membership only costs the node a
// push it drops (Stats.RoomMisses). The node renews every room it has
// every SessionTTL/3 with its sessions, StoreCallSessions rooms per call,
// ttl SessionTTL, and writes them all again after a store failure or a
// generation change (putAll): a room costs a store write on its
// transitions and one per renewal, never one per RoomCountInterval.
//
// A renewal writes a room only if the node still has it, and no removal
// is written while a renewal's call is under way (roomWrite), so a
// renewal never restores a room whose removal was written.
//
// Only a store that is a RoomStore is written; with another, or none, the
// node keeps no counts.

// roomState is the node's count of one room's members.
type roomState struct {
	n int32
	// written is closed once the round that writes the room's 0 -> 1 is
	// over; nil once it was seen closed.
	written chan struct{}
}

// entered counts one more member of room on the node and returns what its
// reply waits for: the round writing the room, nil when the store has it
// (or no membership is kept). Called under the member's bucket lock.
func (ss *sessionSync) entered(room string) <-chan struct{} {
	if ss == nil || ss.roomStore == nil {
		return nil
	}
	ss.mu.Lock()
	st := ss.members[room]
	st.n++
	first := st.n == 1
	if first {
		ss.roomPuts[room] = true
		st.written = ss.round
	} else if st.written != nil && isClosed(st.written) {
		st.written = nil
	}
	ss.members[room] = st
	ss.mu.Unlock()
	if first {
		ss.signal()
	}
	if st.written == nil {
		return nil
	}
	return st.written
}

// exited counts one member less of room; the last one's leaving is
// written in the next round. Called under the member's bucket lock.
func (ss *sessionSync) exited(room string) {
	if ss == nil || ss.roomStore == nil {
		return
	}
	ss.mu.Lock()
	st := ss.members[room]
	if st.n--; st.n > 0 {
		ss.members[room] = st
		ss.mu.Unlock()
		return
	}
	delete(ss.members, room)
	ss.roomPuts[room] = false
	ss.mu.Unlock()
	ss.signal()
}

// takeRooms returns the pending room writes and clears them. Called
// under ss.mu.
func (ss *sessionSync) takeRooms() (joined, left []string) {
	for room, in := range ss.roomPuts {
		if in {
			joined = append(joined, room)
		} else {
			left = append(left, room)
		}
	}
	clear(ss.roomPuts)
	return joined, left
}

// writeRooms writes a round's room changes. On failure the removals the
// node still owes are pending again (the additions are written again by
// putAll, which the failure triggers).
func (ss *sessionSync) writeRooms(joined, left []string) bool {
	ss.roomWrite.Lock()
	defer ss.roomWrite.Unlock()
	if ss.putRooms(joined, left) {
		return true
	}
	ss.mu.Lock()
	for _, room := range left {
		if _, had := ss.members[room]; !had {
			if _, pending := ss.roomPuts[room]; !pending {
				ss.roomPuts[room] = false
			}
		}
	}
	ss.mu.Unlock()
	return false
}

// putRooms writes joined and left, StoreCallSessions rooms per call. A
// failure sets needFull.
func (ss *sessionSync) putRooms(joined, left []string) bool {
	per := ss.s.cfg.StoreCallSessions
	for len(joined)+len(left) > 0 {
		j := joined[:min(per, len(joined))]
		l := left[:min(per-len(j), len(left))]
		joined, left = joined[len(j):], left[len(l):]
		ctx, cancel := ss.ctx()
		err := ss.roomStore.PutRooms(ctx, ss.s.id, j, l, ss.s.cfg.SessionTTL)
		cancel()
		if err != nil {
			ss.failed("PutRooms", err)
			ss.needFull.Store(true)
			return false
		}
	}
	return true
}

// renewRooms writes every room the node has (renewal, and putAll after a
// failure or a wipe), StoreCallSessions at a time, each call only with
// the rooms the node still has, under roomWrite. It stops at the first
// failure (needFull is set: the next check writes everything again).
func (ss *sessionSync) renewRooms() bool {
	if ss.roomStore == nil {
		return true
	}
	ss.mu.Lock()
	rooms := slices.Collect(maps.Keys(ss.members))
	ss.mu.Unlock()
	per := ss.s.cfg.StoreCallSessions
	for i := 0; i < len(rooms); i += per {
		chunk := rooms[i:min(i+per, len(rooms))]
		ss.roomWrite.Lock()
		ss.mu.Lock()
		chunk = slices.DeleteFunc(chunk, func(room string) bool { _, had := ss.members[room]; return !had })
		ss.mu.Unlock()
		ok := ss.putRooms(chunk, nil)
		ss.roomWrite.Unlock()
		if !ok {
			return false
		}
	}
	return true
}

// memberRooms returns how many rooms the node has (membership kept only
// with a RoomStore).
func (ss *sessionSync) memberRooms() int {
	if ss.roomStore == nil {
		return 0
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.members)
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
