package logic_test

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

// plainRouter is a Router and nothing more: no presence, no offline
// lookup (a Router of one's own).
type plainRouter struct{ r logic.Router }

func (p plainRouter) NodesByKeys(ctx context.Context, keys []string) (map[string]string, error) {
	return p.r.NodesByKeys(ctx, keys)
}

func (p plainRouter) NodesByMids(ctx context.Context, mids []int64) (map[string]string, error) {
	return p.r.NodesByMids(ctx, mids)
}

func (p plainRouter) RoomCounts(ctx context.Context) (map[string]int32, error) {
	return p.r.RoomCounts(ctx)
}

func (p plainRouter) Nodes(ctx context.Context) ([]imcloud.Node, error) { return p.r.Nodes(ctx) }

var at = time.Unix(1_700_000_000, 0)

// TestPresence: a user's sessions on live nodes, by since then key; a
// user offline absent; bad input, an unsupported router, a failing one
// and one rebuilding.
func TestPresence(t *testing.T) {
	e := newEnv(t, logic.Config{})
	ctx := context.Background()
	require.NoError(t, e.router.PutNode(ctx, imcloud.Node{ID: "node-a"}, time.Minute))
	require.NoError(t, e.router.PutNode(ctx, imcloud.Node{ID: "node-b"}, time.Minute))
	require.NoError(t, e.router.PutSessions(ctx, []imcloud.Session{
		{Mid: 7, Key: "z", Node: "node-a", Gen: 5, Platform: "web", Room: "live://1", Since: at},
		{Mid: 7, Key: "y", Node: "node-b", Gen: 6, Platform: "ios", Since: at.Add(time.Second)},
		{Mid: 7, Key: "x", Node: "node-b", Gen: 7, Platform: "android", Since: at},
		{Mid: 8, Key: "w", Node: "node-gone", Gen: 1, Since: at}, // its node never registered
	}, time.Minute))

	got, err := e.p.Presence(ctx, []int64{7, 8, 404, 7})
	require.NoError(t, err)
	require.Len(t, got, 1)
	var keys []string
	for _, s := range got[7] {
		keys = append(keys, s.Key)
		assert.Equal(t, int64(7), s.Mid)
	}
	assert.Equal(t, []string{"x", "z", "y"}, keys, "by since, then key")
	assert.Equal(t, imcloud.Session{Mid: 7, Key: "z", Node: "node-a", Gen: 5, Platform: "web", Room: "live://1", Since: at}, got[7][1])

	for _, mids := range [][]int64{nil, {}, {1, 0}, {-1}, make([]int64, logic.MaxPresenceMids+1)} {
		_, err := e.p.Presence(ctx, mids)
		assert.ErrorIs(t, err, logic.ErrInvalidArgument, "%d mids", len(mids))
	}
	many := make([]int64, logic.MaxPresenceMids)
	for i := range many {
		many[i] = int64(i + 1)
	}
	got, err = e.p.Presence(ctx, many)
	require.NoError(t, err)
	assert.Len(t, got, 3, "users 1 and 2 of newEnv and 7")

	plain := newEnv(t, logic.Config{Router: plainRouter{e.router}})
	_, err = plain.p.Presence(ctx, []int64{7})
	assert.ErrorIs(t, err, logic.ErrPresenceUnsupported)

	failing := newEnv(t, logic.Config{Router: failingPresence{e.router}})
	_, err = failing.p.Presence(ctx, []int64{7})
	assert.ErrorIs(t, err, logic.ErrRouter)
	assert.ErrorIs(t, err, errBackend)

	e.router.Wipe()
	_, err = e.p.Presence(ctx, []int64{7})
	assert.ErrorIs(t, err, logic.ErrRouterRebuilding)
}

// failingPresence is a router whose Presence fails.
type failingPresence struct{ *logic.MemoryRouter }

func (failingPresence) Presence(context.Context, []int64) (map[int64][]imcloud.Session, error) {
	return nil, errBackend
}

// TestPushMidsOffline: a mid push lists the users it found no connection
// for, each once, in the order asked, mids below 1 never, nil when
// everyone is online; with and without history, through an
// OfflineRouter and through a plain Router; other pushes list none.
func TestPushMidsOffline(t *testing.T) {
	mem := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	ctx := context.Background()
	require.NoError(t, mem.PutSessions(ctx, []imcloud.Session{
		{Mid: 1, Key: "k1", Node: "node-a", Gen: 1},
		{Mid: 1, Key: "k2", Node: "node-b", Gen: 2},
		{Mid: 2, Key: "k3", Node: "node-a", Gen: 3},
	}, time.Minute))
	cases := []struct {
		mids    []int64
		offline []int64
	}{
		{[]int64{1}, nil},
		{[]int64{1, 2}, nil},
		{[]int64{1, 2, 1, 2}, nil},
		{[]int64{404}, []int64{404}},
		{[]int64{404, 404}, []int64{404}},
		{[]int64{0, -5}, nil},
		{[]int64{9, 1, 404, 0, 9, -1, 2, 404}, []int64{9, 404}},
		{[]int64{5, 4, 3}, []int64{5, 4, 3}},
	}
	for _, history := range []bool{false, true} {
		for _, router := range []logic.Router{mem, plainRouter{mem}} {
			cfg := logic.Config{Router: router}
			if history {
				cfg.History = newHistory(t)
			}
			e := newEnv(t, cfg)
			name := fmt.Sprintf("history %v, %T", history, router)
			for _, tc := range cases {
				asked := append([]int64(nil), tc.mids...)
				res, err := e.p.PushMids(ctx, 1000, tc.mids, []byte("x"))
				require.NoError(t, err, name)
				assert.Equal(t, tc.offline, res.Offline, "%s: %v", name, tc.mids)
				assert.Equal(t, asked, tc.mids, "%s: the caller's mids untouched", name)
				if len(res.Offline) > 0 {
					res.Offline[0] = -42 // never the caller's slice
					assert.Equal(t, asked, tc.mids, name)
				}
			}
			res, err := e.p.PushKeys(ctx, 1000, []string{"k1", "nope"}, []byte("x"))
			require.NoError(t, err)
			assert.Nil(t, res.Offline, "a key push lists no users")
			res, err = e.p.PushRoom(ctx, 1000, "live://1", []byte("x"))
			require.NoError(t, err)
			assert.Nil(t, res.Offline)
		}
	}
}

// TestOfflineLookupAllocs: telling who is offline costs the memory
// router's mid lookup no allocation while everyone is online.
func TestOfflineLookupAllocs(t *testing.T) {
	mem := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	ctx := context.Background()
	require.NoError(t, mem.PutSessions(ctx, []imcloud.Session{
		{Mid: 1, Key: "k1", Node: "node-a", Gen: 1},
		{Mid: 2, Key: "k2", Node: "node-b", Gen: 2},
	}, time.Minute))
	mids := []int64{1, 2}
	plain := testing.AllocsPerRun(100, func() { _, _ = mem.NodesByMids(ctx, mids) })
	offline := testing.AllocsPerRun(100, func() { _, _, _ = mem.NodesByMidsOffline(ctx, mids) })
	assert.Equal(t, plain, offline)
}
