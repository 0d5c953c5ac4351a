package redis

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/routertest"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startShards starts n redis-servers and returns them with their
// addresses.
func startShards(t *testing.T, n int) ([]*testenv.Redis, []string) {
	t.Helper()
	srvs := make([]*testenv.Redis, n)
	addrs := make([]string, n)
	for i := range srvs {
		srvs[i] = testenv.StartRedis(t)
		addrs[i] = srvs[i].Addr
	}
	return srvs, addrs
}

func shardedForTest(t *testing.T, cfg Config) *Router {
	t.Helper()
	r, err := NewRouter(cfg)
	require.NoError(t, err)
	require.Len(t, r.shards, len(cfg.Addrs))
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// TestShardedRouterConformance runs the router conformance suite on a
// router over three redis-servers.
func TestShardedRouterConformance(t *testing.T) {
	_, addrs := startShards(t, 3)
	var n atomic.Int64
	const window = time.Second
	routertest.Run(t, func(t *testing.T) routertest.Harness {
		prefix := fmt.Sprintf("t%d:", n.Add(1))
		r := shardedForTest(t, Config{Addrs: addrs, KeyPrefix: prefix, RebuildWindow: window})
		return routertest.Harness{Store: r, Advance: time.Sleep, RebuildWindow: window,
			Wipe: func() {
				for _, addr := range addrs {
					deleteKeys(t, addr, prefix)
				}
			}}
	})
}

// deleteKeys deletes every key under prefix on the Redis at addr.
func deleteKeys(t testing.TB, addr, prefix string) {
	t.Helper()
	c, err := redigo.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	keys, err := redigo.Strings(c.Do("KEYS", prefix+"*"))
	require.NoError(t, err)
	if len(keys) > 0 {
		_, err = c.Do("DEL", redigo.Args{}.AddFlat(keys)...)
		require.NoError(t, err)
	}
}

// TestShardedRouterSpreads checks that routes spread over the shards and
// live where the hashing says: a key's route on its key's shard, a user's
// hash on its mid's shard.
func TestShardedRouterSpreads(t *testing.T) {
	_, addrs := startShards(t, 3)
	r := shardedForTest(t, Config{Addrs: addrs})
	ctx := context.Background()
	var sessions []imcloud.Session
	for mid := int64(1); mid <= 300; mid++ {
		sessions = append(sessions, imcloud.Session{Mid: mid, Key: "k" + strconv.FormatInt(mid, 10), Node: "node-a", Gen: 1})
	}
	require.NoError(t, r.PutSessions(ctx, sessions, time.Minute))
	perShard := make([]int, len(addrs))
	for _, s := range sessions {
		perShard[r.midShard(s.Mid)]++
		exists := func(addr, key string) bool {
			c, err := redigo.Dial("tcp", addr)
			require.NoError(t, err)
			defer c.Close()
			n, err := redigo.Int(c.Do("EXISTS", key))
			require.NoError(t, err)
			return n == 1
		}
		assert.True(t, exists(addrs[r.keyShard(s.Key)], "key_"+s.Key))
		assert.True(t, exists(addrs[r.midShard(s.Mid)], "mid_"+strconv.FormatInt(s.Mid, 10)))
		assert.True(t, exists(addrs[r.midShard(s.Mid)], "key_"+s.Key), "the user's shard has a copy of the route")
	}
	for i, n := range perShard {
		assert.Greater(t, n, 50, "shard %d holds a fair part", i)
	}
}

// TestShardedRouterShardDown stops one of three shards: pushes to users
// and keys on the other shards keep working, calls that need the stopped
// one fail naming it, and the node list and room membership stay
// readable.
func TestShardedRouterShardDown(t *testing.T) {
	srvs, addrs := startShards(t, 3)
	r := shardedForTest(t, Config{Addrs: addrs, DialTimeout: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, id := range []string{"node-a", "node-b"} {
		require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: id, Epoch: "e"}, time.Minute))
	}
	require.NoError(t, r.PutRooms(ctx, "node-a", []string{"room-1"}, nil, time.Minute))
	require.NoError(t, r.PutRooms(ctx, "node-b", []string{"room-1", "room-2"}, nil, time.Minute))
	_, err := r.Generation(ctx, "")
	require.NoError(t, err)
	var sessions []imcloud.Session
	for mid := int64(1); mid <= 60; mid++ {
		node := "node-a"
		if mid%2 == 0 {
			node = "node-b"
		}
		sessions = append(sessions, imcloud.Session{Mid: mid, Key: "k" + strconv.FormatInt(mid, 10), Node: node, Gen: 1})
	}
	require.NoError(t, r.PutSessions(ctx, sessions, time.Minute))

	const down = 1
	srvs[down].Stop()
	var upMids, upKeys, downMids, downKeys int
	for _, s := range sessions {
		want := map[string]string{s.Key: s.Node}
		got, err := r.NodesByMids(ctx, []int64{s.Mid})
		if r.midShard(s.Mid) == down {
			downMids++
			require.Error(t, err)
			assert.Contains(t, err.Error(), addrs[down], "the error names the stopped shard")
		} else {
			upMids++
			require.NoError(t, err, "mid %d is on a shard that is up", s.Mid)
			assert.Equal(t, want, got)
		}
		got, err = r.NodesByKeys(ctx, []string{s.Key})
		if r.keyShard(s.Key) == down {
			downKeys++
			require.Error(t, err)
			assert.Contains(t, err.Error(), addrs[down])
		} else {
			upKeys++
			require.NoError(t, err, "key %s is on a shard that is up", s.Key)
			assert.Equal(t, want, got)
		}
	}
	require.NotZero(t, upMids)
	require.NotZero(t, downMids)
	require.NotZero(t, upKeys)
	require.NotZero(t, downKeys)

	nodes, rebuilding, err := r.NodesRebuilding(ctx)
	require.NoError(t, err, "the node list is on every shard")
	assert.False(t, rebuilding)
	require.Len(t, nodes, 2)
	assert.Equal(t, "node-a", nodes[0].ID)
	assert.Equal(t, "node-b", nodes[1].ID)
	rooms, err := r.NodesByRooms(ctx, []string{"room-1", "room-2"})
	require.NoError(t, err, "room membership is on every shard")
	assert.Equal(t, map[string][]string{"room-1": {"node-a", "node-b"}, "room-2": {"node-b"}}, rooms)

	// Writes meant for every shard are done on the others and reported.
	err = r.PutRooms(ctx, "node-a", []string{"room-3"}, nil, time.Minute)
	require.Error(t, err)
	assert.Contains(t, err.Error(), addrs[down])
	rooms, err = r.NodesByRooms(ctx, []string{"room-3"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"room-3": {"node-a"}}, rooms)
	_, err = r.Generation(ctx, "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), addrs[down])

	// The shard comes back empty: it rebuilds on its own; the others
	// answer as before.
	srvs[down].Start()
	for _, s := range sessions {
		_, err := r.NodesByMids(ctx, []int64{s.Mid})
		if r.midShard(s.Mid) != down {
			require.NoError(t, err)
		}
	}
}

// TestShardedRouterKeyChangesUser: a key put again for another user
// leaves the previous user's shard too, wherever the shards fall.
func TestShardedRouterKeyChangesUser(t *testing.T) {
	_, addrs := startShards(t, 3)
	r := shardedForTest(t, Config{Addrs: addrs})
	ctx := context.Background()
	const key = "k"
	a, b := movedKeyUsers(r, key)
	require.NoError(t, r.PutSessions(ctx, []imcloud.Session{{Mid: a, Key: key, Node: "node-a", Gen: 1}}, time.Minute))
	require.NoError(t, r.PutSessions(ctx, []imcloud.Session{{Mid: b, Key: key, Node: "node-a", Gen: 2}}, time.Minute))
	got, err := r.NodesByMids(ctx, []int64{a})
	require.NoError(t, err)
	assert.Empty(t, got, "the key is no longer user %d's", a)
	got, err = r.NodesByMids(ctx, []int64{b})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{key: "node-a"}, got)
}

// movedKeyUsers finds, for key, two users whose shards differ from each
// other and from the key's.
func movedKeyUsers(r *Router, key string) (a, b int64) {
	for mid := int64(1); a == 0 || b == 0; mid++ {
		switch m := r.midShard(mid); {
		case m == r.keyShard(key):
		case a == 0:
			a = mid
		case m != r.midShard(a):
			b = mid
		}
	}
	return a, b
}

// putKeyOfUser puts key for user a, where a and b (movedKeyUsers) are on
// shards other than the key's and each other's.
func putKeyOfUser(t *testing.T, r *Router, key string) (ctx context.Context, a, b int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	a, b = movedKeyUsers(r, key)
	require.NoError(t, r.PutSessions(ctx, []imcloud.Session{{Mid: a, Key: key, Node: "node-a", Gen: 1}}, time.Minute))
	return ctx, a, b
}

// TestShardedRouterKeyChangesUserNewShardDown: the new user's shard is
// down while the key is put for it; the key's shard took the put and
// reported the previous user, so the previous user's copy is removed
// all the same, and a put once the shard is back leaves none either.
func TestShardedRouterKeyChangesUserNewShardDown(t *testing.T) {
	const key = "k"
	srvs, addrs := startShards(t, 3)
	r := shardedForTest(t, Config{Addrs: addrs, DialTimeout: 300 * time.Millisecond})
	ctx, a, b := putKeyOfUser(t, r, key)
	srvs[r.midShard(b)].Stop()
	moved := []imcloud.Session{{Mid: b, Key: key, Node: "node-b", Gen: 2}}
	err := r.PutSessions(ctx, moved, time.Minute)
	require.Error(t, err)
	assert.Contains(t, err.Error(), addrs[r.midShard(b)])
	srvs[r.midShard(b)].Start()
	require.NoError(t, r.PutSessions(ctx, moved, time.Minute))
	got, err := r.NodesByMids(ctx, []int64{a})
	require.NoError(t, err)
	assert.Empty(t, got, "the key is no longer user %d's", a)
	got, err = r.NodesByKeys(ctx, []string{key})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{key: "node-b"}, got)
}

// TestShardedRouterKeyChangesUserOldShardPaused: the previous user's
// shard does not answer while the key is put for another user, so the
// removal of its copy fails; the put reports it, and the next put
// removes it (the key's shard no longer reports the previous user then).
func TestShardedRouterKeyChangesUserOldShardPaused(t *testing.T) {
	const key = "k"
	_, addrs := startShards(t, 3)
	r := shardedForTest(t, Config{Addrs: addrs, ReadTimeout: 300 * time.Millisecond})
	ctx, a, b := putKeyOfUser(t, r, key)

	c, err := redigo.Dial("tcp", addrs[r.midShard(a)])
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Do("CLIENT", "PAUSE", 1500, "WRITE")
	require.NoError(t, err)
	paused := time.Now()
	moved := []imcloud.Session{{Mid: b, Key: key, Node: "node-b", Gen: 2}}
	err = r.PutSessions(ctx, moved, time.Minute)
	require.Error(t, err, "the previous user's shard did not answer")
	assert.Contains(t, err.Error(), addrs[r.midShard(a)])
	time.Sleep(time.Until(paused.Add(1600 * time.Millisecond)))

	require.NoError(t, r.PutSessions(ctx, moved, time.Minute))
	got, err := r.NodesByMids(ctx, []int64{a})
	require.NoError(t, err)
	assert.Empty(t, got, "the key is no longer user %d's", a)
}
