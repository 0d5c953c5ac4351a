package cloud

import "slices"

// A connection's rooms.
//
// A connection is in a set of rooms, at most Config.MaxRooms. One of them
// may be its primary room: goim's room, from the auth room_id and
// ChangeRoom, the one the heartbeat reply's online count, the session's
// Room and upstream messages name. The others it joined (op 18, ver-2
// connections; join.go). c.rooms holds one roomRef per room, the
// primary's among them, and c.room the primary's key ("" for none,
// sharing the room list's string); both are guarded by the bucket's lock
// once the connection is registered, and change only on the
// connection's reader goroutine, or when a newer connection with its key
// replaces it (which empties c.rooms).
//
// The set costs a connection one roomRef (16 bytes) per room and its
// entry in the room's list: no map and no goroutine per connection; the
// scans below are over at most MaxRooms refs.

// roomResult is what a change of a connection's rooms did.
type roomResult uint8

const (
	roomChanged roomResult = iota // entered or left
	roomSame                      // nothing to do: already in it (enter), not in it (leave)
	roomTooMany                   // refused: the connection is in MaxRooms rooms
)

// addRef records that c is in r's room. The slice grows by about a
// quarter: a connection in a few rooms holds few spare refs.
func (c *conn) addRef(r roomRef) {
	if len(c.rooms) == cap(c.rooms) {
		c.rooms = slices.Grow(c.rooms[:len(c.rooms):len(c.rooms)], 1+len(c.rooms)/4)
	}
	c.rooms = append(c.rooms, r)
}

// dropRef forgets c's roomRef i, keeping the others in order.
func (c *conn) dropRef(i int) {
	c.rooms = slices.Delete(c.rooms, i, i+1)
	if len(c.rooms) == 0 {
		c.rooms = nil
	}
}

// idxIn returns where c's index in l is kept. c is in l.
func (c *conn) idxIn(l *connList) *int {
	for i := range c.rooms {
		if c.rooms[i].l == l {
			return &c.rooms[i].idx
		}
	}
	panic("cloud: a connection in a room list without its roomRef")
}

// roomIndex returns the index of room's roomRef in c.rooms, -1 if c is
// not in room.
func (c *conn) roomIndex(room string) int {
	for i := range c.rooms {
		if c.rooms[i].l.room == room {
			return i
		}
	}
	return -1
}

// roomsOf reports, under the lock, whether c is in room, how many rooms
// it is in, and its primary room: what a Join or ChangeRoom checks before
// asking whether c may enter.
func (b *bucket) roomsOf(c *conn, room string) (in bool, n int, primary string) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return c.roomIndex(room) >= 0, len(c.rooms), c.room
}

// roomOf returns c's primary room.
func (b *bucket) roomOf(c *conn) string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return c.room
}

// roomList returns c's rooms, its primary room first.
func (b *bucket) roomList(c *conn) []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var rooms []string
	if c.room != "" {
		rooms = append(rooms, c.room)
	}
	for _, r := range c.rooms {
		if r.l.room != c.room {
			rooms = append(rooms, r.l.room)
		}
	}
	return rooms
}

// join puts c in room (not empty) unless it is in it already or in max
// rooms. done is closed once the store has the node's membership of room
// (nil: nothing to wait for; membership.go). A connection no longer
// registered (replaced) is left as it is.
func (b *bucket) join(c *conn, room string, max int) (res roomResult, done <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.keys[c.key] != c || c.roomIndex(room) >= 0:
		return roomSame, nil
	case len(c.rooms) >= max:
		return roomTooMany, nil
	}
	_, done = b.enterLocked(c, room)
	return roomChanged, done
}

// leave takes c out of room; leaving its primary room (primary true)
// leaves c without one. A connection no longer registered (replaced,
// kicked) is left as it is: roomSame, not primary.
func (b *bucket) leave(c *conn, room string) (res roomResult, primary bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys[c.key] != c {
		return roomSame, false
	}
	if primary = room == c.room; primary {
		c.room = ""
	}
	i := c.roomIndex(room)
	if i < 0 {
		return roomSame, primary
	}
	b.exitLocked(c, i)
	return roomChanged, primary
}

// changeRoom makes room c's primary room ("" none): c leaves its primary
// room and enters room, or, already in room by a Join, just makes it
// primary. It is refused when c would be in more than max rooms. done is
// as for join. A connection no longer registered only records room.
func (b *bucket) changeRoom(c *conn, room string, max int) (res roomResult, done <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys[c.key] != c {
		c.room = room
		return roomChanged, nil
	}
	if room == c.room {
		return roomSame, nil
	}
	in := room != "" && c.roomIndex(room) >= 0
	n := len(c.rooms)
	if c.room != "" {
		n--
	}
	if room != "" && !in && n >= max {
		return roomTooMany, nil
	}
	if i := c.roomIndex(c.room); c.room != "" && i >= 0 {
		b.exitLocked(c, i)
	}
	c.room = room
	if room != "" && !in {
		var l *connList
		l, done = b.enterLocked(c, room)
		c.room = l.room
	} else if in {
		c.room = c.rooms[c.roomIndex(room)].l.room
	}
	return roomChanged, done
}
