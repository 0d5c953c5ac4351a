package routertest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Presence (logic.PresenceRouter) and the mid lookup that says who is
// offline (logic.OfflineRouter): a user's sessions with their platform,
// primary room and since, as put, only on live nodes; gone at once when
// removed, expired, or their node's registration ended.

// since is a whole second: the Redis router keeps Since to the second.
var since = time.Unix(1_700_000_000, 0)

func psess(mid int64, key, node string, gen uint64, platform, room string, at time.Time) imcloud.Session {
	return imcloud.Session{Mid: mid, Key: key, Node: node, Gen: gen, Platform: platform, Room: room, Since: at, Accepts: []int32{1000}}
}

// brief is a session as Presence reports it, comparable: Since in Unix
// seconds (0 for the zero time), no Accepts.
type brief struct {
	Mid            int64
	Key, Node      string
	Gen            uint64
	Platform, Room string
	Since          int64
}

func briefs(sessions []imcloud.Session) []brief {
	out := make([]brief, len(sessions))
	for i, s := range sessions {
		var at int64
		if !s.Since.IsZero() {
			at = s.Since.Unix()
		}
		out[i] = brief{s.Mid, s.Key, s.Node, s.Gen, s.Platform, s.Room, at}
	}
	slices.SortFunc(out, func(a, b brief) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// presence calls Presence and returns its answer as briefs per mid.
func presence(t *testing.T, s Store, mids ...int64) map[int64][]brief {
	t.Helper()
	got, err := s.Presence(ctxT(t), mids)
	require.NoError(t, err)
	out := make(map[int64][]brief, len(got))
	for mid, sessions := range got {
		require.NotEmpty(t, sessions, "mid %d listed without sessions", mid)
		out[mid] = briefs(sessions)
	}
	return out
}

func briefOf(s imcloud.Session) brief { return briefs([]imcloud.Session{s})[0] }

// testPresence: every field as put; a user asked twice or never online;
// a room change and a removal show at once; a stale removal changes
// nothing.
func testPresence(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	putNodes(t, s, ttl, "node-a", "node-b")
	a1 := psess(1, "k1", "node-a", 1, "web", "live://1", since)
	b1 := psess(1, "k2", "node-b", 9, "ios", "", since.Add(time.Hour))
	a2 := psess(2, "k3", "node-a", 2, "android", "chat://a b/c\nd", since.Add(2*time.Second))
	anon := psess(0, "anon", "node-b", 3, "web", "", since)
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{a1, b1, a2, anon}, ttl))

	assert.Equal(t, map[int64][]brief{
		1: {briefOf(a1), briefOf(b1)},
		2: {briefOf(a2)},
	}, presence(t, s, 1, 2, 99, 1, 0), "a user asked twice once; nobody online absent")
	assert.Empty(t, presence(t, s))
	assert.Empty(t, presence(t, s, 99))

	// A room change is a put of the session with its new room.
	a1.Room = "live://2"
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{a1}, ttl))
	// A stale removal (an older generation) leaves it; the real one ends it.
	require.NoError(t, s.RemoveSessions(ctx, []imcloud.Session{psess(1, "k2", "node-b", 8, "", "", since)}))
	assert.Equal(t, map[int64][]brief{1: {briefOf(a1), briefOf(b1)}}, presence(t, s, 1))
	require.NoError(t, s.RemoveSessions(ctx, []imcloud.Session{b1}))
	assert.Equal(t, map[int64][]brief{1: {briefOf(a1)}}, presence(t, s, 1))

	// No Since: reported zero.
	a2.Since = time.Time{}
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{a2}, ttl))
	assert.Equal(t, map[int64][]brief{2: {briefOf(a2)}}, presence(t, s, 2))

	ended, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Presence(ended, []int64{1})
	assert.Error(t, err)
}

// testPresenceMoved: a key that reconnects on another node or as another
// user is reported where and whose it is now.
func testPresenceMoved(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	putNodes(t, s, ttl, "node-a", "node-b")
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{psess(1, "k1", "node-a", 1, "web", "", since)}, ttl))
	moved := psess(1, "k1", "node-b", 4, "web", "live://1", since.Add(time.Minute))
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{moved}, ttl))
	assert.Equal(t, map[int64][]brief{1: {briefOf(moved)}}, presence(t, s, 1))

	other := psess(2, "k1", "node-b", 5, "ios", "", since.Add(2*time.Minute))
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{other}, ttl))
	assert.Equal(t, map[int64][]brief{2: {briefOf(other)}}, presence(t, s, 1, 2))
}

// testPresenceNodeNotLive: the sessions of a node never registered, whose
// registration lapsed or that was removed (a drain) are not reported,
// however long their own ttl; a late renewal brings them back.
func testPresenceNodeNotLive(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	short := 300 * time.Millisecond
	putNodes(t, s, ttl, "node-a", "node-b")
	putNodes(t, s, short, "node-c")
	var all []imcloud.Session
	for i, id := range []string{"node-a", "node-b", "node-c", "node-unregistered"} {
		all = append(all, psess(1, fmt.Sprintf("k%d", i), id, uint64(i+1), "web", "", since))
	}
	require.NoError(t, s.PutSessions(ctx, all, ttl))
	assert.Equal(t, map[int64][]brief{1: briefs(all[:3])}, presence(t, s, 1))

	h.Advance(2 * short)
	assert.Equal(t, map[int64][]brief{1: briefs(all[:2])}, presence(t, s, 1), "node-c's registration lapsed")
	require.NoError(t, s.RemoveNode(ctx, "node-a"))
	assert.Equal(t, map[int64][]brief{1: briefs(all[1:2])}, presence(t, s, 1), "node-a drained")
	putNodes(t, s, ttl, "node-c")
	assert.Equal(t, map[int64][]brief{1: briefs(all[1:3])}, presence(t, s, 1), "node-c renewed late")

	// The routes stay, as for a push: Presence alone filters by node.
	got, err := s.NodesByMids(ctx, []int64{1})
	require.NoError(t, err)
	assert.Len(t, got, 4)
}

// testPresenceExpiry: a session not renewed within its ttl is gone.
func testPresenceExpiry(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	short := 300 * time.Millisecond
	putNodes(t, s, ttl, "node-a")
	keep := psess(1, "k1", "node-a", 1, "web", "", since)
	// The longer put last: a user's Redis hash lives as long as its last
	// put (cloud puts every session with the same ttl).
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{psess(1, "k2", "node-a", 2, "web", "", since)}, short))
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{keep}, ttl))
	h.Advance(2 * short)
	assert.Equal(t, map[int64][]brief{1: {briefOf(keep)}}, presence(t, s, 1))
}

// testPresenceMany: thousands of users in one call (several script calls
// for the Redis router), two sessions each on several nodes.
func testPresenceMany(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	const users = 2500
	putNodes(t, s, ttl, "node-0", "node-1", "node-2")
	var sessions []imcloud.Session
	mids := make([]int64, 0, users+1)
	for i := range users {
		mid := int64(i + 1)
		mids = append(mids, mid)
		for j := range 2 {
			sessions = append(sessions, psess(mid, fmt.Sprintf("u%d-%d", i, j), fmt.Sprintf("node-%d", (i+j)%3),
				uint64(2*i+j+1), "web", fmt.Sprintf("live://%d", i%7), since.Add(time.Duration(i)*time.Second)))
		}
	}
	require.NoError(t, s.PutSessions(ctx, sessions, ttl))
	mids = append(mids, users+100) // offline
	got := presence(t, s, mids...)
	require.Len(t, got, users)
	for i := range users {
		require.Equal(t, briefs(sessions[2*i:2*i+2]), got[int64(i+1)], "user %d", i+1)
	}
}

// testPresenceWipe: while the router rebuilds, Presence fails (a user's
// sessions may be on nodes that have not registered again yet), as does
// the offline lookup.
func testPresenceWipe(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	_, err := s.Generation(ctx, "")
	require.NoError(t, err)
	putNodes(t, s, ttl, "node-a")
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{psess(1, "k1", "node-a", 1, "web", "", since)}, ttl))
	assert.Len(t, presence(t, s, 1), 1)

	h.Wipe()
	_, err = s.Presence(ctx, []int64{1})
	assert.ErrorIs(t, err, logic.ErrRouterRebuilding)
	_, _, err = s.NodesByMidsOffline(ctx, []int64{1})
	assert.ErrorIs(t, err, logic.ErrRouterRebuilding)
	putNodes(t, s, ttl, "node-a")
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{psess(1, "k1", "node-a", 1, "web", "", since)}, ttl))
	_, err = s.Presence(ctx, []int64{1})
	assert.ErrorIs(t, err, logic.ErrRouterRebuilding, "still within the window")

	h.Advance(h.RebuildWindow + 50*time.Millisecond)
	assert.Len(t, presence(t, s, 1), 1)
}

// testOffline: NodesByMidsOffline answers NodesByMids's routes and the
// positive mids without any, in the order asked, repeated as asked.
func testOffline(t *testing.T, h Harness) {
	ctx := ctxT(t)
	s := h.Store
	require.NoError(t, s.PutSessions(ctx, []imcloud.Session{
		sess(1, "k1", "node-a", 1), sess(1, "k2", "node-b", 1), sess(2, "k3", "node-a", 2),
	}, ttl))
	asked := []int64{7, 1, 2, 99, 0, -1, 7}
	want, err := s.NodesByMids(ctx, asked)
	require.NoError(t, err)
	routes, offline, err := s.NodesByMidsOffline(ctx, asked)
	require.NoError(t, err)
	assert.Equal(t, want, routes)
	assert.Equal(t, []int64{7, 99, 7}, offline)

	routes, offline, err = s.NodesByMidsOffline(ctx, []int64{1, 2})
	require.NoError(t, err)
	assert.Len(t, routes, 3)
	assert.Empty(t, offline, "everyone online")
	routes, offline, err = s.NodesByMidsOffline(ctx, nil)
	require.NoError(t, err)
	assert.Empty(t, routes)
	assert.Empty(t, offline)

	// Gone once removed.
	require.NoError(t, s.RemoveSessions(ctx, []imcloud.Session{sess(2, "k3", "node-a", 2)}))
	_, offline, err = s.NodesByMidsOffline(ctx, []int64{1, 2})
	require.NoError(t, err)
	assert.Equal(t, []int64{2}, offline)
}
