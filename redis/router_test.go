package redis_test

import (
	"context"
	"fmt"
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
	routertest.Run(t, func(t *testing.T) routertest.Harness {
		// One server; each subtest gets an empty keyspace through its prefix.
		r := newRedisRouter(t, redis.Config{Addr: srv.Addr, KeyPrefix: fmt.Sprintf("t%d:", n.Add(1))})
		return routertest.Harness{Store: r, Advance: time.Sleep}
	})
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
