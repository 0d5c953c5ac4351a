package routertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Room membership (cloud.RoomStore writes it, job.Rooms reads it): which
// nodes have members in a room, so that a room push goes only to them.

func putNodes(t *testing.T, s Store, ttl time.Duration, ids ...string) {
	t.Helper()
	for _, id := range ids {
		require.NoError(t, s.PutNode(ctxT(t), imcloud.Node{ID: id}, ttl))
	}
}

// testRoomsJoinLeave: a join is visible at once, a leave removes the node,
// a room without members is absent; bad input.
func testRoomsJoinLeave(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	putNodes(t, s, ttl, "node-a", "node-b", "node-c")
	require.NoError(t, s.PutRooms(ctx, "node-a", []string{"live://1", "live://2"}, nil, ttl))
	require.NoError(t, s.PutRooms(ctx, "node-b", []string{"live://1", ""}, nil, ttl), "an empty room name is ignored")
	got, err := s.NodesByRooms(ctx, []string{"live://1", "live://2", "live://3", ""})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"live://1": {"node-a", "node-b"}, "live://2": {"node-a"}}, got)

	require.NoError(t, s.PutRooms(ctx, "node-a", nil, []string{"live://1", "never-joined://1"}, ttl))
	got, err = s.NodesByRooms(ctx, []string{"live://1", "live://2"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"live://1": {"node-b"}, "live://2": {"node-a"}}, got)
	require.NoError(t, s.PutRooms(ctx, "node-b", nil, []string{"live://1"}, ttl))
	got, err = s.NodesByRooms(ctx, []string{"live://1", "live://2"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"live://2": {"node-a"}}, got, "the last member left: the room is absent")

	// Joined and left in one call: joined wins (a stale membership costs a
	// dropped push, a missing one lost pushes).
	require.NoError(t, s.PutRooms(ctx, "node-c", []string{"live://3"}, []string{"live://3"}, ttl))
	got, err = s.NodesByRooms(ctx, []string{"live://3"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"live://3": {"node-c"}}, got)

	// No-ops and bad input.
	require.NoError(t, s.PutRooms(ctx, "node-a", nil, nil, ttl))
	require.NoError(t, s.PutRooms(ctx, "node-a", []string{}, []string{""}, ttl))
	require.ErrorIs(t, s.PutRooms(ctx, "", []string{"live://1"}, nil, ttl), logic.ErrInvalidArgument)
	got, err = s.NodesByRooms(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, got)
	got, err = s.NodesByRooms(ctx, []string{"live://2", "live://2"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"live://2": {"node-a"}}, got, "a room asked twice")

	ended, cancel := context.WithCancel(context.Background())
	cancel()
	assert.Error(t, s.PutRooms(ended, "node-a", []string{"live://9"}, nil, ttl))
	_, err = s.NodesByRooms(ended, []string{"live://2"})
	assert.Error(t, err)
}

// testRoomsExpiry: a membership lasts its ttl; a renewal rewrites the
// expiry (longer or shorter); one node's short membership does not cut
// another node's longer one short.
func testRoomsExpiry(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	short := 300 * time.Millisecond
	putNodes(t, s, ttl, "node-a", "node-b")
	require.NoError(t, s.PutRooms(ctx, "node-b", []string{"live://1"}, nil, ttl))
	require.NoError(t, s.PutRooms(ctx, "node-a", []string{"live://1", "live://2"}, nil, short))
	require.NoError(t, s.PutRooms(ctx, "node-a", []string{"live://3"}, nil, ttl))
	require.NoError(t, s.PutRooms(ctx, "node-a", []string{"live://3"}, nil, short), "renewed shorter")
	got, err := s.NodesByRooms(ctx, []string{"live://1", "live://2", "live://3"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"live://1": {"node-a", "node-b"}, "live://2": {"node-a"}, "live://3": {"node-a"}}, got)

	h.Advance(short / 2)
	require.NoError(t, s.PutRooms(ctx, "node-a", []string{"live://2"}, nil, ttl), "renewed longer")
	h.Advance(short)
	got, err = s.NodesByRooms(ctx, []string{"live://1", "live://2", "live://3"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"live://1": {"node-b"}, "live://2": {"node-a"}}, got)
}

// testRoomsNodeNotLive: only live nodes are a room's members: one never
// registered, one whose registration lapsed, one removed (graceful drain)
// are not, whatever their memberships say.
func testRoomsNodeNotLive(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	short := 300 * time.Millisecond
	putNodes(t, s, ttl, "node-a", "node-b")
	putNodes(t, s, short, "node-c")
	for _, id := range []string{"node-a", "node-b", "node-c", "node-unregistered"} {
		require.NoError(t, s.PutRooms(ctx, id, []string{"live://1"}, nil, ttl))
	}
	got, err := s.NodesByRooms(ctx, []string{"live://1"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"live://1": {"node-a", "node-b", "node-c"}}, got)

	h.Advance(2 * short)
	got, err = s.NodesByRooms(ctx, []string{"live://1"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"live://1": {"node-a", "node-b"}}, got, "node-c's registration lapsed")

	require.NoError(t, s.RemoveNode(ctx, "node-a"))
	got, err = s.NodesByRooms(ctx, []string{"live://1"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"live://1": {"node-b"}}, got, "node-a drained")
	require.NoError(t, s.RemoveNode(ctx, "node-b"))
	got, err = s.NodesByRooms(ctx, []string{"live://1"})
	require.NoError(t, err)
	assert.Empty(t, got)

	// A registration renewed late: its unexpired memberships count again.
	putNodes(t, s, ttl, "node-c")
	got, err = s.NodesByRooms(ctx, []string{"live://1"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"live://1": {"node-c"}}, got)
}

// testRoomsMany: thousands of rooms in one call, several nodes per room,
// joins and leaves of one room in one call.
func testRoomsMany(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	const n = 10_000
	rooms := make([]string, n)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("live://%d", i)
	}
	putNodes(t, s, ttl, "node-0", "node-1", "node-2")
	require.NoError(t, s.PutRooms(ctx, "node-0", rooms, nil, ttl))
	var odd, third []string
	for i, room := range rooms {
		if i%2 == 1 {
			odd = append(odd, room)
		}
		if i%3 == 0 {
			third = append(third, room)
		}
	}
	require.NoError(t, s.PutRooms(ctx, "node-1", odd, nil, ttl))
	require.NoError(t, s.PutRooms(ctx, "node-2", third, nil, ttl))
	asked := append([]string{"nobody://1"}, rooms...)
	got, err := s.NodesByRooms(ctx, asked)
	require.NoError(t, err)
	require.Len(t, got, n)
	for i, room := range rooms {
		want := []string{"node-0"}
		if i%2 == 1 {
			want = append(want, "node-1")
		}
		if i%3 == 0 {
			want = append(want, "node-2")
		}
		require.Equal(t, want, got[room], "room %d", i)
	}

	// node-0 leaves every room but the first 2,000, and joins those again
	// in the same call: the other nodes' memberships stay.
	require.NoError(t, s.PutRooms(ctx, "node-0", rooms[:2000], rooms, ttl))
	got, err = s.NodesByRooms(ctx, rooms)
	require.NoError(t, err)
	members := 0
	for i, room := range rooms {
		var want []string
		if i < 2000 {
			want = append(want, "node-0")
		}
		if i%2 == 1 {
			want = append(want, "node-1")
		}
		if i%3 == 0 {
			want = append(want, "node-2")
		}
		require.Equal(t, want, got[room], "room %d", i)
		if want != nil {
			members++
		}
	}
	require.Len(t, got, members, "only rooms with members")
}

// testRoomsWipe: while the router rebuilds, a rooms lookup fails (a room's
// members may be on nodes that have not written their rooms again yet);
// after the window, what was written again is found.
func testRoomsWipe(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	g1, err := s.Generation(ctx, "")
	require.NoError(t, err)
	putNodes(t, s, ttl, "node-a", "node-b")
	require.NoError(t, s.PutRooms(ctx, "node-a", []string{"live://1", "live://2"}, nil, ttl))
	require.NoError(t, s.PutRooms(ctx, "node-b", []string{"live://1"}, nil, ttl))
	got, err := s.NodesByRooms(ctx, []string{"live://1"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"live://1": {"node-a", "node-b"}}, got)

	h.Wipe()
	_, err = s.NodesByRooms(ctx, []string{"live://1"})
	assert.ErrorIs(t, err, logic.ErrRouterRebuilding)
	got, err = s.NodesByRooms(ctx, nil)
	require.NoError(t, err, "nothing asked, nothing missing")
	assert.Empty(t, got)

	// node-a notices and writes its rooms again; node-b has not yet.
	_, err = s.Generation(ctx, g1)
	require.NoError(t, err)
	putNodes(t, s, ttl, "node-a")
	require.NoError(t, s.PutRooms(ctx, "node-a", []string{"live://1", "live://2"}, nil, ttl))
	_, err = s.NodesByRooms(ctx, []string{"live://2"})
	assert.ErrorIs(t, err, logic.ErrRouterRebuilding, "a room may have members on a node not back yet")

	h.Advance(h.RebuildWindow + 50*time.Millisecond) // Redis expires at millisecond resolution
	got, err = s.NodesByRooms(ctx, []string{"live://1", "live://2"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"live://1": {"node-a"}, "live://2": {"node-a"}}, got)
}
