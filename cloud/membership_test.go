package cloud_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/cloud"
)

// roomStore is fakeStore with room membership (cloud.RoomStore): which
// node has which room, every PutRooms call in order, and an optional delay
// before a call takes effect (a slow store), so that a reply sent before
// the write would reach the client first.
type roomStore struct {
	*fakeStore
	rmu   sync.Mutex
	delay time.Duration
	began int                        // PutRooms calls begun
	has   map[string]map[string]bool // room -> node
	calls []roomCall
}

type roomCall struct {
	node         string
	joined, left []string
}

var _ cloud.RoomStore = (*roomStore)(nil)

func newRoomStore() *roomStore {
	return &roomStore{fakeStore: newFakeStore(), has: map[string]map[string]bool{}}
}

func (r *roomStore) PutRooms(_ context.Context, node string, joined, left []string, _ time.Duration) error {
	r.rmu.Lock()
	delay := r.delay
	r.began++
	r.rmu.Unlock()
	time.Sleep(delay)
	r.fakeStore.mu.Lock()
	down := r.fakeStore.down
	r.fakeStore.mu.Unlock()
	if down {
		return errStoreDown
	}
	r.rmu.Lock()
	defer r.rmu.Unlock()
	r.calls = append(r.calls, roomCall{node, slices.Clone(joined), slices.Clone(left)})
	for _, room := range joined {
		if r.has[room] == nil {
			r.has[room] = map[string]bool{}
		}
		r.has[room][node] = true
	}
	for _, room := range left {
		delete(r.has[room], node)
	}
	return nil
}

func (r *roomStore) setDelay(d time.Duration) {
	r.rmu.Lock()
	r.delay = d
	r.rmu.Unlock()
}

// begun returns how many PutRooms calls began.
func (r *roomStore) begun() int {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	return r.began
}

// storeRound returns once whatever n queued for its store so far is
// written: a fresh client's auth waits for the store round of its
// session, and the node writes its rounds one after another.
func storeRound(t *testing.T, n *node) {
	t.Helper()
	c := dialRaw(t, n.tcpAddr, false)
	c.auth(1, goimAuth(99, "", ""))
	_ = c.nc.Close()
}

// hasRoom reports whether the store says node has room.
func (r *roomStore) hasRoom(node, room string) bool {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	return r.has[room][node]
}

// writes counts the calls that wrote room as joined.
func (r *roomStore) writes(room string) int {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	n := 0
	for _, c := range r.calls {
		if slices.Contains(c.joined, room) {
			n++
		}
	}
	return n
}

// forget drops what the store knows of room (an expiry).
func (r *roomStore) forget(room string) {
	r.rmu.Lock()
	delete(r.has, room)
	r.rmu.Unlock()
}

// TestMembershipBeforeReply: the store has the node in a room before the
// reply of the member that brought the room to the node reaches it, by
// auth room_id and by ChangeRoom, even when the store is slow, and also
// for a second member entering while the first one's write is under way.
// A room the node keeps is not written again; the last member's leaving
// removes it.
func TestMembershipBeforeReply(t *testing.T) {
	st := newRoomStore()
	st.setDelay(150 * time.Millisecond)
	n := startNode(t, cloud.Config{Store: st, NodeID: "m1"})

	a := dialRaw(t, n.tcpAddr, false)
	a.auth(1, goimAuth(1, "", "live://a"))
	assert.True(t, st.hasRoom("m1", "live://a"), "the AuthReply came before the room's write")

	// Two members change to live://b almost at once: the second one's
	// reply waits for the first one's write too.
	b := dialRaw(t, n.tcpAddr, false)
	b.auth(1, goimAuth(2, "", ""))
	c := dialRaw(t, n.tcpAddr, false)
	c.auth(1, goimAuth(3, "", ""))
	before := st.begun()
	require.NoError(t, b.send(1, 12, 2, []byte("live://b")))
	waitFor(t, "b's write under way", func() bool { return st.begun() > before })
	require.NoError(t, c.send(1, 12, 2, []byte("live://b")))
	c.nextOp(13)
	assert.True(t, st.hasRoom("m1", "live://b"), "the second member's reply came before the room's write")
	b.nextOp(13)
	assert.True(t, st.hasRoom("m1", "live://b"))
	assert.Equal(t, 1, st.writes("live://b"), "one write for the room's first member")

	// The last member of live://a leaves: removed, without a wait.
	st.setDelay(0)
	require.NoError(t, a.send(1, 12, 3, []byte("live://b")))
	a.nextOp(13)
	waitFor(t, "live://a removed", func() bool { return !st.hasRoom("m1", "live://a") })
	assert.Equal(t, 1, st.writes("live://b"), "a room the node has is not written again")

	// Disconnects: the room goes with its last member.
	_ = b.nc.Close()
	_ = c.nc.Close()
	waitFor(t, "b and c ended", func() bool { return n.srv.Stats().Sessions == 1 })
	storeRound(t, n)
	assert.True(t, st.hasRoom("m1", "live://b"), "a is still in live://b")
	_ = a.nc.Close()
	waitFor(t, "live://b removed", func() bool { return !st.hasRoom("m1", "live://b") })
}

// TestMembershipRenewal: the node renews the rooms it has every
// SessionTTL/3, so an expired membership comes back, and writes them all
// again once the store is back after an outage, with the removals it
// owes.
func TestMembershipRenewal(t *testing.T) {
	st := newRoomStore()
	n := startNode(t, cloud.Config{Store: st, NodeID: "m2", SessionTTL: 300 * time.Millisecond,
		StoreTimeout: 200 * time.Millisecond, StoreCheckInterval: 50 * time.Millisecond})
	a := dialRaw(t, n.tcpAddr, false)
	a.auth(1, goimAuth(1, "", "live://r"))
	require.True(t, st.hasRoom("m2", "live://r"))
	st.forget("live://r")
	waitFor(t, "renewed", func() bool { return st.hasRoom("m2", "live://r") && st.writes("live://r") >= 3 })

	st.setDown(true)
	waitFor(t, "store error seen", func() bool { return n.srv.Stats().StoreErrors > 0 })
	require.NoError(t, a.send(1, 12, 2, []byte("live://s")))
	a.nextOp(13)
	st.setDown(false)
	waitFor(t, "written again", func() bool { return st.hasRoom("m2", "live://s") })
	waitFor(t, "the left room removed", func() bool { return !st.hasRoom("m2", "live://r") })
}

// TestRoomMisses: a room push for a room with no member on the node is
// dropped and counted.
func TestRoomMisses(t *testing.T) {
	n := startNode(t, cloud.Config{})
	a := dialRaw(t, n.tcpAddr, false)
	a.auth(1, goimAuth(1, "", "live://here"))
	deliver(t, n.srv, roomMsg("live://nobody", 1000, "x"), roomMsg("live://nobody", 1000, "y"))
	deliver(t, n.srv, roomMsg("live://here", 1000, "z"))
	assert.Equal(t, "z", string(a.nextOp(1000).body))
	assert.Equal(t, uint64(2), n.srv.Stats().RoomMisses)
}
