package redis_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPresenceSchema: the gen_ entry carries since, platform and the
// primary room after goim's route fields (scripts.go).
func TestPresenceSchema(t *testing.T) {
	srv := testenv.StartRedis(t)
	r := newRedisRouter(t, redis.Config{Addr: srv.Addr})
	ctx := context.Background()
	require.NoError(t, r.PutSessions(ctx, []imcloud.Session{{Mid: 42, Key: "abc", Node: "node-a", Gen: 3,
		Platform: "web", Room: "live://1", Since: time.Unix(1_700_000_000, 0)}}, time.Minute))
	require.NoError(t, r.PutSessions(ctx, []imcloud.Session{{Mid: 43, Key: "def", Node: "node-a", Gen: 4,
		Platform: "a\nb"}}, time.Minute))
	c, err := redigo.Dial("tcp", srv.Addr)
	require.NoError(t, err)
	defer c.Close()
	v, err := redigo.String(c.Do("GET", "gen_abc"))
	require.NoError(t, err)
	assert.Equal(t, "node-a\n3\n42\n1700000000\nweb\nlive://1", v)
	v, err = redigo.String(c.Do("GET", "gen_def"))
	require.NoError(t, err)
	assert.Equal(t, "node-a\n4\n43\n0\na b\n", v, "no since; a newline in the platform is a space")

	// A removal reads the mid out of the entry: the user's hash goes.
	require.NoError(t, r.RemoveSessions(ctx, []imcloud.Session{{Key: "abc", Node: "node-a", Gen: 3}}))
	n, err := redigo.Int(c.Do("EXISTS", "mid_42", "gen_abc", "key_abc"))
	require.NoError(t, err)
	assert.Zero(t, n)
	// So does a put of the key as another user, and a restart.
	require.NoError(t, r.PutSessions(ctx, []imcloud.Session{{Mid: 44, Key: "def", Node: "node-a", Gen: 5}}, time.Minute))
	n, err = redigo.Int(c.Do("EXISTS", "mid_43"))
	require.NoError(t, err)
	assert.Zero(t, n)
	require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: "node-a", Epoch: "e1"}, time.Minute))
	require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: "node-a", Epoch: "e2"}, time.Minute))
	n, err = redigo.Int(c.Do("EXISTS", "mid_44", "gen_def", "key_def"))
	require.NoError(t, err)
	assert.Zero(t, n)
}

// TestPresenceEarlierEntries: sessions put by an earlier release (gen_
// entries ending after the mid) during a rolling upgrade are reported
// without platform, room and since, removed by their node and generation,
// cleared by their node's restart and by a put of the key as another
// user, with their user's hash field each time.
func TestPresenceEarlierEntries(t *testing.T) {
	srv := testenv.StartRedis(t)
	r := newRedisRouter(t, redis.Config{Addr: srv.Addr})
	ctx := context.Background()
	c, err := redigo.Dial("tcp", srv.Addr)
	require.NoError(t, err)
	defer c.Close()
	earlier := func(s imcloud.Session) {
		t.Helper()
		require.NoError(t, r.PutSessions(ctx, []imcloud.Session{s}, time.Minute))
		_, err := c.Do("SET", "gen_"+s.Key, s.Node+"\n"+itoa(int64(s.Gen))+"\n"+itoa(s.Mid), "PX", 60000)
		require.NoError(t, err)
	}
	require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: "node-a", Epoch: "e1"}, time.Minute))
	require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: "node-b"}, time.Minute))
	earlier(imcloud.Session{Mid: 1, Key: "k1", Node: "node-a", Gen: 1, Platform: "web"})
	earlier(imcloud.Session{Mid: 1, Key: "k2", Node: "node-b", Gen: 2})
	earlier(imcloud.Session{Mid: 2, Key: "k3", Node: "node-b", Gen: 3})

	got, err := r.Presence(ctx, []int64{1})
	require.NoError(t, err)
	assert.ElementsMatch(t, []imcloud.Session{{Mid: 1, Key: "k1", Node: "node-a", Gen: 1}, {Mid: 1, Key: "k2", Node: "node-b", Gen: 2}}, got[1])

	// Removed by node and generation, the user's hash field with it.
	require.NoError(t, r.RemoveSessions(ctx, []imcloud.Session{{Key: "k2", Node: "node-b", Gen: 2}}))
	fields, err := redigo.StringMap(c.Do("HGETALL", "mid_1"))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k1": "node-a"}, fields)

	// The key put again as another user leaves the earlier user's hash.
	require.NoError(t, r.PutSessions(ctx, []imcloud.Session{{Mid: 4, Key: "k3", Node: "node-b", Gen: 5}}, time.Minute))
	n, err := redigo.Int(c.Do("EXISTS", "mid_2"))
	require.NoError(t, err)
	assert.Zero(t, n, "user 2's hash field went with the put of its key as user 4")

	// node-a restarts (a new epoch): its earlier routes go, hash field too.
	require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: "node-a", Epoch: "e2"}, time.Minute))
	n, err = redigo.Int(c.Do("EXISTS", "mid_1", "gen_k1", "key_k1"))
	require.NoError(t, err)
	assert.Zero(t, n)
	got, err = r.Presence(ctx, []int64{1, 4})
	require.NoError(t, err)
	assert.Equal(t, map[int64][]imcloud.Session{4: {{Mid: 4, Key: "k3", Node: "node-b", Gen: 5}}}, got)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
