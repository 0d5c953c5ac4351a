// Package routertest is the conformance suite for imcloud's router: logic's
// Router together with cloud's SessionStore (and job's NodeDirectory, whose
// one method is Router.Nodes). The memory router and the Redis router both
// run it, so every role can rely on one set of semantics:
//
//   - sessions put are found by key and by mid until removed or expired;
//     renewal rewrites the route;
//   - a removal deletes a route only if it still names the same node and
//     generation;
//   - nodes and room-count reports live for their ttl; room counts sum over
//     nodes; removing a node drops its reports;
//   - many keys or mids resolve in one call; an ended ctx is an error;
//   - the router has a generation that changes when it loses its data;
//     then, for the rebuild window, a mid lookup and a key lookup that
//     finds a key without a route fail with logic.ErrRouterRebuilding,
//     and NodesRebuilding reports rebuilding; a node that merely expired
//     is not a rebuild;
//   - a node id registered again with another epoch (a restarted process)
//     loses the routes still naming it, at once; a renewal with the same
//     epoch keeps them;
//   - room membership (cloud.RoomStore, job.Rooms): a node's rooms are
//     found at once after PutRooms, until left or expired (a renewal
//     rewrites the expiry), and only while the node's registration is
//     live; many rooms go in one call; a rebuild fails the lookup with
//     logic.ErrRouterRebuilding (rooms.go);
//   - revocations (logic.Revoker, cloud.RevocationStore): a user's
//     revocation time is read back to the millisecond until its ttl ends;
//     a later one replaces an earlier one, never the reverse; many users
//     go in one call (revoke.go);
//   - a node removed (a drain) is remembered with the epoch of its last
//     registration; one that expired is not (drained.go);
//   - presence (logic.PresenceRouter): a user's sessions with platform,
//     primary room and since as put, only while put, unexpired and on a
//     node whose registration is live; many users in one call; a rebuild
//     fails it; the mid lookup with offline users (logic.OfflineRouter)
//     answers NodesByMids's routes and the positive mids without any
//     (presence.go).
package routertest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Store is the router under test: logic.Router plus cloud.SessionStore.
type Store interface {
	NodesByKeys(ctx context.Context, keys []string) (map[string]string, error)
	NodesByMids(ctx context.Context, mids []int64) (map[string]string, error)
	RoomCounts(ctx context.Context) (map[string]int32, error)
	Nodes(ctx context.Context) ([]imcloud.Node, error)
	PutSessions(ctx context.Context, sessions []imcloud.Session, ttl time.Duration) error
	RemoveSessions(ctx context.Context, sessions []imcloud.Session) error
	PutNode(ctx context.Context, node imcloud.Node, ttl time.Duration) error
	RemoveNode(ctx context.Context, id string) error
	PutRoomCounts(ctx context.Context, node string, counts map[string]int32, ttl time.Duration) error
	// cloud.RoomStore and job.Rooms.
	PutRooms(ctx context.Context, node string, joined, left []string, ttl time.Duration) error
	NodesByRooms(ctx context.Context, rooms []string) (map[string][]string, error)
	// logic.PresenceRouter and logic.OfflineRouter.
	Presence(ctx context.Context, mids []int64) (map[int64][]imcloud.Session, error)
	NodesByMidsOffline(ctx context.Context, mids []int64) (map[string]string, []int64, error)
	// cloud.GenerationStore and job.RebuildingDirectory.
	Generation(ctx context.Context, known string) (string, error)
	NodesRebuilding(ctx context.Context) ([]imcloud.Node, bool, error)
	// logic.Revoker and cloud.RevocationStore (revoke.go).
	Revoke(ctx context.Context, mids []int64, before time.Time, ttl time.Duration) error
	RevokedBefore(ctx context.Context, mids []int64) (map[int64]time.Time, error)
	// job.DrainedDirectory.
	Drained(ctx context.Context, ids []string) (map[string]string, error)
}

// Harness is one fresh, empty router under test.
type Harness struct {
	Store Store
	// Advance lets time pass by d for the store's expiries: a fake clock
	// moved forward, or a real sleep for a real backend.
	Advance func(d time.Duration)
	// Wipe makes the router lose every session, node, room count and
	// room membership at once, as a Redis restarted empty or flushed.
	Wipe func()
	// RebuildWindow is the router's configured rebuild window. With a
	// real clock the wipe test's steps must fit in it (1 s is plenty).
	RebuildWindow time.Duration
}

// Run runs the suite; newHarness is called once per subtest and must return
// an empty router.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"PutAndLookup", testPutAndLookup},
		{"Renewal", testRenewal},
		{"RemoveOnlyIfSameNodeAndGen", testRemove},
		{"SessionExpiry", testSessionExpiry},
		{"Nodes", testNodes},
		{"RoomCounts", testRoomCounts},
		{"ManyKeysOneCall", testMany},
		{"Concurrent", testConcurrent},
		{"ContextEnded", testContextEnded},
		{"Generation", testGeneration},
		{"Wipe", testWipe},
		{"RestartWithNewEpoch", testRestartEpoch},
		{"RoomsJoinLeave", testRoomsJoinLeave},
		{"RoomsExpiry", testRoomsExpiry},
		{"RoomsNodeNotLive", testRoomsNodeNotLive},
		{"RoomsMany", testRoomsMany},
		{"RoomsWipe", testRoomsWipe},
		{"RevokeLaterWins", testRevokeLaterWins},
		{"RevokeExpiry", testRevokeExpiry},
		{"RevokeMany", testRevokeMany},
		{"Drained", testDrained},
		{"Presence", testPresence},
		{"PresenceMoved", testPresenceMoved},
		{"PresenceNodeNotLive", testPresenceNodeNotLive},
		{"PresenceExpiry", testPresenceExpiry},
		{"PresenceMany", testPresenceMany},
		{"PresenceWipe", testPresenceWipe},
		{"Offline", testOffline},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newHarness(t)) })
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

const ttl = time.Minute

func sess(mid int64, key, node string, gen uint64) imcloud.Session {
	return imcloud.Session{Mid: mid, Key: key, Node: node, Gen: gen, Room: "live://1", Platform: "web", Accepts: []int32{1000}}
}

func testPutAndLookup(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{
		sess(1, "k1", "node-a", 1),
		sess(1, "k2", "node-b", 1),
		sess(2, "k3", "node-a", 2),
		sess(0, "anon", "node-b", 3), // no user: reachable by key only
	}, ttl))

	got, err := s.NodesByKeys(ctx, []string{"k1", "k3", "anon", "missing"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k1": "node-a", "k3": "node-a", "anon": "node-b"}, got)

	got, err = s.NodesByMids(ctx, []int64{1, 2, 99})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k1": "node-a", "k2": "node-b", "k3": "node-a"}, got)

	got, err = s.NodesByMids(ctx, []int64{0})
	require.NoError(t, err)
	assert.Empty(t, got, "mid 0 is nobody")

	got, err = s.NodesByKeys(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, got)
	got, err = s.NodesByMids(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, got)
}

func testRenewal(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{sess(1, "k1", "node-a", 1)}, ttl))
	// The same key reconnects on another node (a newer generation there).
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{sess(1, "k1", "node-b", 7)}, ttl))
	got, err := s.NodesByKeys(ctx, []string{"k1"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k1": "node-b"}, got)
	got, err = s.NodesByMids(ctx, []int64{1})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k1": "node-b"}, got)
}

func testRemove(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{
		sess(1, "k1", "node-a", 5),
		sess(1, "k2", "node-a", 6),
	}, ttl))
	// Stale removals: another node, an older generation on this node.
	require.NoError(t, s.RemoveSessions(ctx, []imcloud.Session{
		sess(1, "k1", "node-b", 5),
		sess(1, "k2", "node-a", 4),
		sess(1, "never-put", "node-a", 1),
	}))
	got, err := s.NodesByMids(ctx, []int64{1})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k1": "node-a", "k2": "node-a"}, got, "stale removals leave live routes")

	require.NoError(t, s.RemoveSessions(ctx, []imcloud.Session{sess(1, "k1", "node-a", 5)}))
	got, err = s.NodesByMids(ctx, []int64{1})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k2": "node-a"}, got)
	got, err = s.NodesByKeys(ctx, []string{"k1", "k2"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k2": "node-a"}, got)

	require.NoError(t, s.RemoveSessions(ctx, []imcloud.Session{sess(1, "k2", "node-a", 6)}))
	got, err = s.NodesByMids(ctx, []int64{1})
	require.NoError(t, err)
	assert.Empty(t, got)
	require.NoError(t, s.RemoveSessions(ctx, nil))
}

func testSessionExpiry(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	short := 300 * time.Millisecond
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{sess(1, "k1", "node-a", 1), sess(2, "k2", "node-a", 1)}, short))
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{sess(3, "k3", "node-a", 1)}, ttl))
	h.Advance(2 * short)
	got, err := s.NodesByMids(ctx, []int64{1, 2, 3})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k3": "node-a"}, got)
	got, err = s.NodesByKeys(ctx, []string{"k1", "k2", "k3"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k3": "node-a"}, got)
}

func testNodes(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	nodes, err := s.Nodes(ctx)
	require.NoError(t, err)
	assert.Empty(t, nodes)

	a := imcloud.Node{ID: "node-a", LinkAddr: "127.0.0.1:7000", PublicAddrs: []string{"tcp://a:3101", "ws://a:3102/sub"},
		Conns: 10, IPs: 7, Updated: time.Unix(1700000000, 0), Since: time.Unix(1699999000, 123456789), Epoch: "e1"}
	b := imcloud.Node{ID: "node-b", LinkAddr: "127.0.0.1:7001", Conns: 3, IPs: 3, Updated: time.Unix(1700000001, 0)}
	require.NoError(t, s.PutNode(ctx, a, ttl))
	require.NoError(t, s.PutNode(ctx, b, 300*time.Millisecond))
	nodes, err = s.Nodes(ctx)
	require.NoError(t, err)
	require.Len(t, nodes, 2)
	byID := map[string]imcloud.Node{}
	for _, n := range nodes {
		byID[n.ID] = n
	}
	assert.Equal(t, a.LinkAddr, byID["node-a"].LinkAddr)
	assert.Equal(t, a.PublicAddrs, byID["node-a"].PublicAddrs)
	assert.Equal(t, 10, byID["node-a"].Conns)
	assert.Equal(t, 7, byID["node-a"].IPs)
	assert.True(t, a.Updated.Equal(byID["node-a"].Updated))
	assert.True(t, a.Since.Equal(byID["node-a"].Since), "Since kept: %v", byID["node-a"].Since)
	assert.Equal(t, "e1", byID["node-a"].Epoch)
	assert.True(t, byID["node-b"].Since.IsZero(), "no Since registered: zero")

	// Renewal replaces the registration.
	a.Conns = 11
	require.NoError(t, s.PutNode(ctx, a, ttl))
	h.Advance(600 * time.Millisecond)
	nodes, err = s.Nodes(ctx)
	require.NoError(t, err)
	require.Len(t, nodes, 1, "node-b expired")
	assert.Equal(t, "node-a", nodes[0].ID)
	assert.Equal(t, 11, nodes[0].Conns)
	assert.True(t, a.Since.Equal(nodes[0].Since), "Since kept across renewals")

	require.NoError(t, s.RemoveNode(ctx, "node-a"))
	require.NoError(t, s.RemoveNode(ctx, "never-registered"))
	nodes, err = s.Nodes(ctx)
	require.NoError(t, err)
	assert.Empty(t, nodes)
}

func testRoomCounts(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	counts, err := s.RoomCounts(ctx)
	require.NoError(t, err)
	assert.Empty(t, counts)

	for _, id := range []string{"node-a", "node-b", "node-c"} {
		require.NoError(t, s.PutNode(ctx, imcloud.Node{ID: id}, ttl))
	}
	require.NoError(t, s.PutRoomCounts(ctx, "node-a", map[string]int32{"live://1": 3, "live://2": 1}, ttl))
	require.NoError(t, s.PutRoomCounts(ctx, "node-b", map[string]int32{"live://1": 4, "chat://9": 2}, ttl))
	require.NoError(t, s.PutRoomCounts(ctx, "node-c", map[string]int32{"live://1": 100}, 300*time.Millisecond))
	counts, err = s.RoomCounts(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string]int32{"live://1": 107, "live://2": 1, "chat://9": 2}, counts)

	// A report replaces the node's previous one.
	require.NoError(t, s.PutRoomCounts(ctx, "node-a", map[string]int32{"live://1": 5}, ttl))
	h.Advance(600 * time.Millisecond) // node-c's report expires
	counts, err = s.RoomCounts(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string]int32{"live://1": 9, "chat://9": 2}, counts)

	// An empty report clears the node's rooms; removing a node drops them.
	require.NoError(t, s.PutRoomCounts(ctx, "node-a", map[string]int32{}, ttl))
	require.NoError(t, s.RemoveNode(ctx, "node-b"))
	counts, err = s.RoomCounts(ctx)
	require.NoError(t, err)
	assert.Empty(t, counts)
}

func testMany(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	const n = 2000
	sessions := make([]imcloud.Session, n)
	keys := make([]string, n)
	mids := make([]int64, n/2)
	for i := range sessions {
		mid := int64(i/2 + 1)
		sessions[i] = sess(mid, fmt.Sprintf("key-%d", i), fmt.Sprintf("node-%d", i%5), uint64(i))
		keys[i] = sessions[i].Key
		mids[i/2] = mid
	}
	require.NoError(t, s.PutSessions(ctx, sessions, ttl))
	got, err := s.NodesByKeys(ctx, keys)
	require.NoError(t, err)
	require.Len(t, got, n)
	got, err = s.NodesByMids(ctx, mids)
	require.NoError(t, err)
	require.Len(t, got, n)
	for i, se := range sessions {
		require.Equal(t, se.Node, got[se.Key], "session %d", i)
	}
	require.NoError(t, s.RemoveSessions(ctx, sessions))
	got, err = s.NodesByKeys(ctx, keys)
	require.NoError(t, err)
	require.Empty(t, got)
}

func testConcurrent(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				mid := int64(g*1000 + i + 1)
				key := fmt.Sprintf("c-%d-%d", g, i)
				if err := s.PutSessions(ctx, []imcloud.Session{sess(mid, key, "node-a", 1)}, ttl); err != nil {
					errs <- err
					return
				}
				got, err := s.NodesByMids(ctx, []int64{mid})
				if err != nil {
					errs <- err
					return
				}
				if got[key] != "node-a" {
					errs <- fmt.Errorf("mid %d: got %v", mid, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

func testContextEnded(t *testing.T, h Harness) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := h.Store
	_, err := s.NodesByKeys(ctx, []string{"k"})
	assert.Error(t, err)
	_, err = s.NodesByMids(ctx, []int64{1})
	assert.Error(t, err)
	assert.Error(t, s.PutSessions(ctx, []imcloud.Session{sess(1, "k", "n", 1)}, ttl))
}

func testGeneration(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	g, err := s.Generation(ctx, "")
	require.NoError(t, err)
	require.NotEmpty(t, g)
	for _, known := range []string{"", g} {
		again, err := s.Generation(ctx, known)
		require.NoError(t, err)
		assert.Equal(t, g, again, "stable while nothing is lost")
	}

	// A node that expires is not a rebuild: lookups of nobody succeed.
	require.NoError(t, s.PutNode(ctx, imcloud.Node{ID: "node-a"}, 300*time.Millisecond))
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{sess(1, "k1", "node-a", 1)}, 300*time.Millisecond))
	h.Advance(600 * time.Millisecond)
	nodes, rebuilding, err := s.NodesRebuilding(ctx)
	require.NoError(t, err)
	assert.Empty(t, nodes)
	assert.False(t, rebuilding)
	got, err := s.NodesByMids(ctx, []int64{1})
	require.NoError(t, err)
	assert.Empty(t, got)
	got, err = s.NodesByKeys(ctx, []string{"k1"})
	require.NoError(t, err)
	assert.Empty(t, got)
}

func testWipe(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	g1, err := s.Generation(ctx, "")
	require.NoError(t, err)
	for _, id := range []string{"node-a", "node-b"} {
		require.NoError(t, s.PutNode(ctx, imcloud.Node{ID: id}, ttl))
	}
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{
		sess(1, "k1", "node-a", 1), sess(2, "k2", "node-b", 1), sess(3, "k3", "node-a", 1),
	}, ttl))
	got, err := s.NodesByMids(ctx, []int64{1, 2})
	require.NoError(t, err)
	assert.Len(t, got, 2)
	nodes, rebuilding, err := s.NodesRebuilding(ctx)
	require.NoError(t, err)
	assert.Len(t, nodes, 2)
	assert.False(t, rebuilding)

	h.Wipe()
	// Nothing is found, and the router says it does not know why.
	_, err = s.NodesByMids(ctx, []int64{1})
	assert.ErrorIs(t, err, logic.ErrRouterRebuilding)
	_, err = s.NodesByKeys(ctx, []string{"k1"})
	assert.ErrorIs(t, err, logic.ErrRouterRebuilding)
	got, err = s.NodesByKeys(ctx, nil)
	require.NoError(t, err, "nothing asked, nothing missing")
	assert.Empty(t, got)
	nodes, rebuilding, err = s.NodesRebuilding(ctx)
	require.NoError(t, err)
	assert.Empty(t, nodes)
	assert.True(t, rebuilding, "nodes vanished with the data, not expired")

	// A node that knew g1 sees a new generation and re-registers.
	g2, err := s.Generation(ctx, g1)
	require.NoError(t, err)
	require.NotEmpty(t, g2)
	assert.NotEqual(t, g1, g2)
	require.NoError(t, s.PutNode(ctx, imcloud.Node{ID: "node-a"}, ttl))
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{sess(1, "k1", "node-a", 1), sess(3, "k3", "node-a", 1)}, ttl))
	got, err = s.NodesByKeys(ctx, []string{"k1", "k3", "k1"})
	require.NoError(t, err, "every key found: complete")
	assert.Equal(t, map[string]string{"k1": "node-a", "k3": "node-a"}, got)
	_, err = s.NodesByKeys(ctx, []string{"k1", "k2"})
	assert.ErrorIs(t, err, logic.ErrRouterRebuilding, "k2's node has not re-registered yet")
	_, err = s.NodesByMids(ctx, []int64{1})
	assert.ErrorIs(t, err, logic.ErrRouterRebuilding, "user 1 may have connections on a node not back yet")
	nodes, rebuilding, err = s.NodesRebuilding(ctx)
	require.NoError(t, err)
	require.Len(t, nodes, 1)
	assert.Equal(t, "node-a", nodes[0].ID)
	assert.True(t, rebuilding)

	// The window ends: what is missing now is offline.
	h.Advance(h.RebuildWindow + 50*time.Millisecond) // Redis expires at millisecond resolution
	got, err = s.NodesByMids(ctx, []int64{1, 2})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k1": "node-a"}, got)
	got, err = s.NodesByKeys(ctx, []string{"k2"})
	require.NoError(t, err)
	assert.Empty(t, got)
	nodes, rebuilding, err = s.NodesRebuilding(ctx)
	require.NoError(t, err)
	assert.Len(t, nodes, 1)
	assert.False(t, rebuilding)
	again, err := s.Generation(ctx, g2)
	require.NoError(t, err)
	assert.Equal(t, g2, again)
}
