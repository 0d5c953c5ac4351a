package cloud

import (
	"hash/maphash"
	"sync"
)

// bucket is one shard of the node's connections, chosen by key hash: it
// owns the key index and, for the connections it holds, their room
// membership. Room and broadcast pushes visit every bucket (in parallel);
// key pushes visit one.
type bucket struct {
	mu    sync.RWMutex
	keys  map[string]*conn
	all   connList
	rooms map[string]*connList
}

// connList is a set of connections kept as a slice for fast iteration; each
// connection remembers its index (in conn.allIdx or conn.roomIdx) so
// removal is O(1).
type connList struct {
	conns []*conn
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

func allIdx(c *conn) *int  { return &c.allIdx }
func roomIdx(c *conn) *int { return &c.roomIdx }

// put registers c under its key, queues first (the AuthReply) on it while
// still holding the lock so no push can overtake it and a client that got
// its AuthReply is already reachable, and returns the connection it
// replaced (same key on this node), if any.
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
		b.joinLocked(c, c.room)
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

func (b *bucket) removeLocked(c *conn) {
	delete(b.keys, c.key)
	b.all.remove(c, &c.allIdx, allIdx)
	if c.room != "" {
		b.leaveLocked(c, c.room)
	}
}

func (b *bucket) joinLocked(c *conn, room string) {
	l := b.rooms[room]
	if l == nil {
		l = &connList{}
		b.rooms[room] = l
	}
	l.add(c, &c.roomIdx)
}

func (b *bucket) leaveLocked(c *conn, room string) {
	l := b.rooms[room]
	if l == nil {
		return
	}
	l.remove(c, &c.roomIdx, roomIdx)
	if len(l.conns) == 0 {
		delete(b.rooms, room)
	}
}

// changeRoom moves c to room ("" leaves every room). c.room is guarded by
// the bucket lock.
func (b *bucket) changeRoom(c *conn, room string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keys[c.key] != c {
		c.room = room
		return
	}
	if c.room != "" {
		b.leaveLocked(c, c.room)
	}
	c.room = room
	if room != "" {
		b.joinLocked(c, room)
	}
}

func (b *bucket) roomOf(c *conn) string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return c.room
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
