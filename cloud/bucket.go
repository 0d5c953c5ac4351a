package cloud

import (
	"hash/maphash"
	"sync"
)

// bucket is one shard of the node's connections, chosen by key hash: it
// owns the key index and, for the connections it holds, their room
// membership. Room and broadcast pushes visit every bucket (in parallel);
// key pushes visit one.
//
// A connection is in a set of rooms (rooms.go): one list per room here,
// and on the connection one roomRef per room it is in, which says where
// in that list it is. A room's list is where room pushes find its
// members, so a connection in a room by auth and by Join is in its list
// once, and the lists' lengths are the room online counts.
type bucket struct {
	mu    sync.RWMutex
	keys  map[string]*conn
	all   connList
	rooms map[string]*connList
	// ss counts the node's members per room for the store (membership.go);
	// nil for a bucket outside a server.
	ss *sessionSync
}

// connList is a set of connections kept as a slice for fast iteration; each
// connection remembers its index (in conn.allIdx, or its roomRef for the
// list's room) so removal is O(1).
type connList struct {
	// room is the list's room key ("" for all), shared by its members'
	// primary room strings.
	room  string
	conns []*conn
}

// roomRef is one room a connection is in: the room's list in the
// connection's bucket, and the connection's index in it.
type roomRef struct {
	l   *connList
	idx int
}

func newBucket() *bucket {
	return &bucket{keys: make(map[string]*conn), rooms: make(map[string]*connList)}
}

func (l *connList) add(c *conn, idx *int) {
	*idx = len(l.conns)
	l.conns = append(l.conns, c)
}

func (l *connList) remove(c *conn, idx *int, idxOf func(*conn) *int) {
	i := *idx
	if i < 0 || i >= len(l.conns) || l.conns[i] != c {
		return
	}
	last := len(l.conns) - 1
	if i != last {
		moved := l.conns[last]
		l.conns[i] = moved
		*idxOf(moved) = i
	}
	l.conns[last] = nil
	l.conns = l.conns[:last]
	*idx = -1
	// Give memory back when a large room empties.
	if cap(l.conns) > 64 && len(l.conns) < cap(l.conns)/4 {
		l.conns = append([]*conn(nil), l.conns...)
	}
}

func allIdx(c *conn) *int { return &c.allIdx }

// put registers c under its key, queues first (the AuthReply) on it while
// still holding the lock so no push can overtake it and a client that got
// its AuthReply is already reachable, and returns the connection it
// replaced (same key on this node), if any. c enters its primary room
// (c.room) if it has one.
func (b *bucket) put(c *conn, first outItem) (old *conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c.enqueue(first)
	old = b.keys[c.key]
	if old != nil {
		b.removeLocked(old)
	}
	b.keys[c.key] = c
	b.all.add(c, &c.allIdx)
	if c.room != "" {
		// The caller awaits the session put, a later store round than
		// the room's (membership.go).
		l, _ := b.enterLocked(c, c.room)
		c.room = l.room
	}
	return old
}

// del unregisters c if it is still the connection under its key.
func (b *bucket) del(c *conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys[c.key] != c {
		return false
	}
	b.removeLocked(c)
	return true
}

// removeLocked unregisters c and takes it out of every room; c.room still
// names its primary room.
func (b *bucket) removeLocked(c *conn) {
	delete(b.keys, c.key)
	b.all.remove(c, &c.allIdx, allIdx)
	for i := len(c.rooms) - 1; i >= 0; i-- {
		b.exitLocked(c, i)
	}
	c.rooms = nil
}

// enterLocked adds c to room's list, which c is not in, and returns the
// list. The node's count of the room follows: done is closed once the
// store has the node's membership of room (nil: nothing to wait for;
// membership.go).
func (b *bucket) enterLocked(c *conn, room string) (l *connList, done <-chan struct{}) {
	l = b.rooms[room]
	if l == nil {
		l = &connList{room: room}
		b.rooms[room] = l
	}
	ref := roomRef{l: l}
	l.add(c, &ref.idx)
	c.addRef(ref)
	return l, b.ss.entered(l.room)
}

// exitLocked takes c out of the room of its roomRef i.
func (b *bucket) exitLocked(c *conn, i int) {
	ref := &c.rooms[i]
	l := ref.l
	l.remove(c, &ref.idx, func(m *conn) *int { return m.idxIn(l) })
	if len(l.conns) == 0 {
		delete(b.rooms, l.room)
	}
	c.dropRef(i)
	b.ss.exited(l.room)
}

func (b *bucket) get(key string) *conn {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.keys[key]
}

// roomCount is the number of connections in room held by this bucket.
func (b *bucket) roomCount(room string) int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if l := b.rooms[room]; l != nil {
		return len(l.conns)
	}
	return 0
}

// buckets is the node's set of shards.
type buckets struct {
	seed maphash.Seed
	bs   []*bucket
}

func newBuckets(n int) *buckets {
	bs := &buckets{seed: maphash.MakeSeed(), bs: make([]*bucket, n)}
	for i := range bs.bs {
		bs.bs[i] = newBucket()
	}
	return bs
}

func (bs *buckets) of(key string) *bucket {
	return bs.bs[maphash.String(bs.seed, key)%uint64(len(bs.bs))]
}

// snapshot returns the connections of bucket b (room "" = all).
func (b *bucket) snapshot(dst []*conn, room string) []*conn {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if room == "" {
		return append(dst, b.all.conns...)
	}
	if l := b.rooms[room]; l != nil {
		dst = append(dst, l.conns...)
	}
	return dst
}
