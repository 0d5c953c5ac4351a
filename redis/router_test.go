package redis_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/routertest"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/logic"
	"github.com/imcloud/imcloud/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newRedisRouter(t testing.TB, cfg redis.Config) *redis.Router {
	t.Helper()
	r, err := redis.NewRouter(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestRedisRouterConformance(t *testing.T) {
	srv := testenv.StartRedis(t)
	var n atomic.Int64
	const window = time.Second
	routertest.Run(t, func(t *testing.T) routertest.Harness {
		// One server; each subtest gets an empty keyspace through its prefix.
		prefix := fmt.Sprintf("t%d:", n.Add(1))
		r := newRedisRouter(t, redis.Config{Addr: srv.Addr, KeyPrefix: prefix, RebuildWindow: window})
		return routertest.Harness{Store: r, Advance: time.Sleep, RebuildWindow: window,
			Wipe: func() { deletePrefix(t, srv.Addr, prefix) }}
	})
}

// deletePrefix deletes every key under prefix: a FLUSHALL of one
// subtest's keyspace.
func deletePrefix(t testing.TB, addr, prefix string) {
	t.Helper()
	c, err := redigo.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	keys, err := redigo.Strings(c.Do("KEYS", prefix+"*"))
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	_, err = c.Do("DEL", redigo.Args{}.AddFlat(keys)...)
	require.NoError(t, err)
}

// TestRedisRouterSchema checks goim's key names and values, so goim-era
// tooling that reads Redis keeps working.
func TestRedisRouterSchema(t *testing.T) {
	srv := testenv.StartRedis(t)
	r := newRedisRouter(t, redis.Config{Addr: srv.Addr})
	ctx := context.Background()
	require.NoError(t, r.PutSessions(ctx, []imcloud.Session{{Mid: 42, Key: "abc", Node: "node-a", Gen: 3}}, time.Minute))
	require.NoError(t, r.PutRoomCounts(ctx, "node-a", map[string]int32{"live://1": 2}, time.Minute))

	c, err := redigo.Dial("tcp", srv.Addr)
	require.NoError(t, err)
	defer c.Close()
	v, err := redigo.String(c.Do("GET", "key_abc"))
	require.NoError(t, err)
	assert.Equal(t, "node-a", v)
	h, err := redigo.StringMap(c.Do("HGETALL", "mid_42"))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"abc": "node-a"}, h)
	ttl, err := redigo.Int64(c.Do("PTTL", "mid_42"))
	require.NoError(t, err)
	assert.InDelta(t, 60000, ttl, 5000)
	ol, err := redigo.StringMap(c.Do("HGETALL", "ol_node-a"))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"live://1": "2"}, ol)
}

// TestRedisRouterStaleMidField checks that a mid's hash field whose key
// expired (its node crashed) is not reported.
func TestRedisRouterStaleMidField(t *testing.T) {
	srv := testenv.StartRedis(t)
	r := newRedisRouter(t, redis.Config{Addr: srv.Addr})
	ctx := context.Background()
	require.NoError(t, r.PutSessions(ctx, []imcloud.Session{{Mid: 1, Key: "old", Node: "node-a", Gen: 1}}, 200*time.Millisecond))
	require.NoError(t, r.PutSessions(ctx, []imcloud.Session{{Mid: 1, Key: "new", Node: "node-b", Gen: 1}}, time.Minute))
	time.Sleep(400 * time.Millisecond)
	got, err := r.NodesByMids(ctx, []int64{1})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"new": "node-b"}, got)

	// A key that moves to another user leaves its old user.
	require.NoError(t, r.PutSessions(ctx, []imcloud.Session{{Mid: 2, Key: "new", Node: "node-b", Gen: 2}}, time.Minute))
	got, err = r.NodesByMids(ctx, []int64{1, 2})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"new": "node-b"}, got)
	got, err = r.NodesByMids(ctx, []int64{1})
	require.NoError(t, err)
	assert.Empty(t, got)
}

// TestRedisRouterAuth checks AUTH with a password and a wrong one.
func TestRedisRouterAuth(t *testing.T) {
	srv := testenv.StartRedis(t)
	c, err := redigo.Dial("tcp", srv.Addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Do("ACL", "SETUSER", "pusher", "on", ">pw", "~*", "+@all")
	require.NoError(t, err)
	ctx := context.Background()

	good := newRedisRouter(t, redis.Config{Addr: srv.Addr, Username: "pusher", Password: "pw"})
	require.NoError(t, good.Ping(ctx))
	bad := newRedisRouter(t, redis.Config{Addr: srv.Addr, Username: "pusher", Password: "nope"})
	require.Error(t, bad.Ping(ctx))
	_, err = bad.NodesByMids(ctx, []int64{1})
	require.Error(t, err)

	_, err = redis.NewRouter(redis.Config{DB: -1})
	require.ErrorIs(t, err, logic.ErrInvalidArgument)
}

func TestRedisRouterClosed(t *testing.T) {
	srv := testenv.StartRedis(t)
	r := newRedisRouter(t, redis.Config{Addr: srv.Addr})
	require.NoError(t, r.Close())
	require.NoError(t, r.Close(), "idempotent")
	_, err := r.NodesByKeys(context.Background(), []string{"k"})
	require.ErrorIs(t, err, logic.ErrClosed)
	require.ErrorIs(t, r.PutNode(context.Background(), imcloud.Node{ID: "n"}, time.Second), logic.ErrClosed)
}

// clockSlack is added to sleeps meant to outlast a rebuild window: Redis
// expires keys at millisecond resolution, on its own clock.
const clockSlack = 50 * time.Millisecond

// TestRedisRouterWiped: a node's router and a pusher's router (two
// processes' views of one Redis) after Redis lost its data. The pusher's
// lookups fail with ErrRouterRebuilding rather than answering "offline"
// (a restart's stale pooled connections are not an error either), until
// the window ends; the node sees a new generation.
func TestRedisRouterWiped(t *testing.T) {
	for _, w := range testenv.RedisWipes() {
		t.Run(w.Name, func(t *testing.T) {
			srv := testenv.StartRedis(t)
			const window = time.Second
			node := newRedisRouter(t, redis.Config{Addr: srv.Addr, RebuildWindow: window})
			pusher := newRedisRouter(t, redis.Config{Addr: srv.Addr, RebuildWindow: window, Lookups: 4})
			ctx := context.Background()
			g1, err := node.Generation(ctx, "")
			require.NoError(t, err)
			require.NoError(t, node.PutNode(ctx, imcloud.Node{ID: "node-a"}, time.Minute))
			require.NoError(t, node.PutSessions(ctx, []imcloud.Session{{Mid: 1, Key: "k1", Node: "node-a", Gen: 1}}, time.Minute))
			// Several pooled connections, all of which a restart leaves stale.
			var wg sync.WaitGroup
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got, err := pusher.NodesByMids(ctx, []int64{1})
					assert.NoError(t, err)
					assert.Len(t, got, 1)
				}()
			}
			wg.Wait()

			w.Wipe(srv)
			for i := 0; i < 3; i++ {
				_, err = pusher.NodesByMids(ctx, []int64{1})
				require.ErrorIs(t, err, logic.ErrRouterRebuilding, "lookup %d", i)
			}
			nodes, rebuilding, err := pusher.NodesRebuilding(ctx)
			require.NoError(t, err)
			assert.Empty(t, nodes)
			assert.True(t, rebuilding)

			g2, err := node.Generation(ctx, g1)
			require.NoError(t, err)
			assert.NotEqual(t, g1, g2)
			require.NoError(t, node.PutSessions(ctx, []imcloud.Session{{Mid: 1, Key: "k1", Node: "node-a", Gen: 1}}, time.Minute))
			got, err := pusher.NodesByKeys(ctx, []string{"k1"})
			require.NoError(t, err)
			assert.Equal(t, map[string]string{"k1": "node-a"}, got)

			time.Sleep(window + clockSlack)
			got, err = pusher.NodesByMids(ctx, []int64{1, 2})
			require.NoError(t, err)
			assert.Equal(t, map[string]string{"k1": "node-a"}, got)
		})
	}
}

// TestRedisRouterGenerationWithoutWindow: no rebuild window where nothing
// known can be missing: a fresh deployment, a process that never saw the
// previous generation, a new generation found after its window.
func TestRedisRouterGenerationWithoutWindow(t *testing.T) {
	srv := testenv.StartRedis(t)
	const window = 500 * time.Millisecond
	ctx := context.Background()
	pusher := newRedisRouter(t, redis.Config{Addr: srv.Addr, RebuildWindow: window})
	got, err := pusher.NodesByMids(ctx, []int64{1})
	require.NoError(t, err, "fresh Redis: nobody online")
	assert.Empty(t, got)
	node := newRedisRouter(t, redis.Config{Addr: srv.Addr, RebuildWindow: window})
	g1, err := node.Generation(ctx, "")
	require.NoError(t, err)
	got, err = pusher.NodesByMids(ctx, []int64{1})
	require.NoError(t, err)
	assert.Empty(t, got)

	// A wipe noticed by the node: the window runs; a process started now
	// (it never saw g1) sees it through the marker.
	deletePrefix(t, srv.Addr, "")
	g2, err := node.Generation(ctx, g1)
	require.NoError(t, err)
	late := newRedisRouter(t, redis.Config{Addr: srv.Addr, RebuildWindow: window})
	_, err = late.NodesByMids(ctx, []int64{1})
	require.ErrorIs(t, err, logic.ErrRouterRebuilding)
	time.Sleep(window + clockSlack)
	_, err = late.NodesByMids(ctx, []int64{1})
	require.NoError(t, err)

	// A wipe nobody notices within the window: the first to notice it
	// after the window starts none (the window runs from the new
	// generation's creation, here by a node that never saw g2).
	_, err = pusher.NodesByMids(ctx, []int64{1})
	require.NoError(t, err)
	deletePrefix(t, srv.Addr, "")
	fresh := newRedisRouter(t, redis.Config{Addr: srv.Addr, RebuildWindow: window})
	g3, err := fresh.Generation(ctx, "")
	require.NoError(t, err)
	time.Sleep(window + clockSlack)
	again, err := node.Generation(ctx, g2)
	require.NoError(t, err)
	assert.Equal(t, g3, again)
	_, err = pusher.NodesByMids(ctx, []int64{1})
	require.NoError(t, err, "the new generation's window has passed")
}
