package redis

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/routertest"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestKeySlot checks the slot computation against the Redis Cluster
// specification's CRC16 test vector and slots Redis reports.
func TestKeySlot(t *testing.T) {
	assert.Equal(t, uint16(0x31C3), crc16("123456789"))
	assert.Equal(t, uint16(12182), keySlot("foo")) // CLUSTER KEYSLOT foo
	assert.Equal(t, keySlot("s3"), keySlot("{s3}key_abc"))
	assert.Equal(t, keySlot("s3"), keySlot("app:{s3}{imcloud}:gen"), "the first tag counts")
	assert.Equal(t, crc16("a{}b{c}")%clusterSlots, keySlot("a{}b{c}"), "an empty first tag: the whole key")
	assert.Equal(t, crc16("a{b")%clusterSlots, keySlot("a{b"), "no closing brace: the whole key")
}

// clusterForTest returns a Cluster router over c.
func clusterForTest(t *testing.T, c *testenv.RedisCluster, cfg Config) *Router {
	t.Helper()
	cfg.Addrs, cfg.Cluster = c.Addrs, true
	r, err := NewRouter(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// TestRedisCluster runs the router over one 3-master Redis Cluster: the
// conformance suite and the history's (history_shard_test.go), the spread over the masters, a
// stale slot map, a shard's slot being migrated and then moved to another
// master under a running router.
//
// The conformance suite runs with 3 shards, each shard's slot on a master
// of its own: Redis refuses a script that touches a key of a slot its node
// does not serve ("non local key"), so a call that reached another shard's
// keys would fail. Redis 7 does not refuse a script without a shebang
// (ours: they load on earlier versions too) that touches another slot of
// the same node, hence the layout; and after the suite every key must be
// under its shard's prefix, on its shard's master.
func TestRedisCluster(t *testing.T) {
	c := testenv.StartRedisCluster(t, 3)
	t.Run("Conformance", func(t *testing.T) {
		const shards, window = 3, time.Second
		slots := ownMasters(t, c, shards)
		var n atomic.Int64
		routertest.Run(t, func(t *testing.T) routertest.Harness {
			prefix := fmt.Sprintf("t%d:", n.Add(1))
			r := clusterForTest(t, c, Config{KeyPrefix: prefix, ClusterShards: shards, RebuildWindow: window})
			return routertest.Harness{Store: r, Advance: time.Sleep, RebuildWindow: window,
				Wipe: func() {
					for _, addr := range c.Addrs {
						deleteEach(t, addr, prefix)
					}
				}}
		})
		for i, addr := range c.Addrs {
			keys := keysOn(t, addr, "*")
			require.NotEmpty(t, keys)
			for _, key := range keys {
				require.Regexp(t, `^t\d+:\{s`+strconv.Itoa(i)+`\}`, key, "key on master %d", i)
				require.Equal(t, slots[i], keySlot(key))
			}
		}
	})
	t.Run("History", func(t *testing.T) { testClusterHistory(t, c) })
	t.Run("Spread", func(t *testing.T) { testClusterSpread(t, c) })
	t.Run("StaleSlotMap", func(t *testing.T) { testClusterStaleMap(t, c) })
	t.Run("SlotMigrated", func(t *testing.T) { testClusterSlotMigrated(t, c) })
	t.Run("UnreachableSeed", func(t *testing.T) { testClusterUnreachableSeed(t, c) })
	t.Run("MasterHostDown", func(t *testing.T) { testClusterMasterHostDown(t, c) })
	t.Run("LastNodeDown", func(t *testing.T) { testClusterLastNodeDown(t, c) })
	t.Run("CancelledReader", func(t *testing.T) { testClusterCancelledReader(t, c) })
	t.Run("FrozenMaster", func(t *testing.T) { testClusterFrozenMaster(t, c) })
	t.Run("PinSurvivesRead", func(t *testing.T) { testClusterPinSurvivesRead(t, c) })
	t.Run("MovedMidPipeline", func(t *testing.T) { testClusterMovedMidPipeline(t, c) })
}

// testClusterStaleMap: a slot map that names a master nobody answers at
// is read again when a dial fails; one that names a master that no longer
// owns the slot is read again when the server closes a connection (a
// failed-over master's replacement is found both ways, with no call
// failing).
func testClusterStaleMap(t *testing.T, c *testenv.RedisCluster) {
	r := clusterForTest(t, c, Config{KeyPrefix: "st:", ClusterShards: 4, PoolWait: 5 * time.Second})
	ctx := context.Background()
	require.NoError(t, r.Ping(ctx))
	s := r.shards[0]
	owner := r.cl.current(s.slot)
	dead := refusing(t)

	// A dial to the stale master fails: the map is read again (the last
	// read made long ago: two reads start clusterBackoff apart).
	r.cl.pin(s.slot, dead)
	forgetLastRead(r)
	s.connLost.Store(time.Now().UnixNano()) // no idle connection: the next call dials
	require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: "node-a", Epoch: "e"}, time.Minute))
	assert.Equal(t, owner, r.cl.current(s.slot))

	// The server closes the connections dialed before: the map is read
	// again before the retry, which would get a MOVED reply from the
	// master the stale map names.
	require.NoError(t, r.Ping(ctx))
	stale := c.Addrs[0]
	if stale == owner {
		stale = c.Addrs[1]
	}
	r.cl.pin(s.slot, stale)
	forgetLastRead(r)
	nodeDo(t, owner, "CLIENT", "KILL", "TYPE", "normal")
	require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: "node-a", Epoch: "e"}, time.Minute))
	assert.Equal(t, owner, r.cl.current(s.slot))
}

// forgetLastRead makes r's next slot map read wanted at once, as when the
// last one was more than clusterBackoff ago.
func forgetLastRead(r *Router) {
	r.cl.mu.Lock()
	r.cl.readAt = time.Time{}
	r.cl.mu.Unlock()
}

// ownMasters moves the slots of the first n shards (n at most the
// number of masters) so that shard i's is on master i, and returns them.
func ownMasters(t *testing.T, c *testenv.RedisCluster, n int) []uint16 {
	t.Helper()
	r := clusterForTest(t, c, Config{ClusterShards: n})
	require.NoError(t, r.Ping(context.Background()))
	slots := make([]uint16, n)
	for i, s := range r.shards {
		slots[i] = s.slot
		if owner := r.cl.current(s.slot); owner != c.Addrs[i] {
			startMigration(t, owner, c.Addrs[i], s.slot).finish(t, c.Addrs)
		}
	}
	return slots
}

// testClusterSpread checks that the shards' keys spread over every
// master, each on the master the router's slot map names for its shard.
func testClusterSpread(t *testing.T, c *testenv.RedisCluster) {
	r := clusterForTest(t, c, Config{KeyPrefix: "sp:", ClusterShards: 8})
	ctx := context.Background()
	var sessions []imcloud.Session
	for mid := int64(1); mid <= 200; mid++ {
		sessions = append(sessions, imcloud.Session{Mid: mid, Key: "k" + strconv.FormatInt(mid, 10), Node: "node-a", Gen: 1})
	}
	require.NoError(t, r.PutSessions(ctx, sessions, time.Minute))
	require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: "node-a", Epoch: "e"}, time.Minute))
	perShard := make([]int, len(r.shards))
	for _, addr := range c.Addrs {
		keys := keysOn(t, addr, "sp:*")
		assert.NotEmpty(t, keys, "master %s holds keys", addr)
		for _, key := range keys {
			i := r.index[shardTag(key[len("sp:"):])]
			perShard[i]++
			assert.Equal(t, r.shards[i].slot, keySlot(key))
			assert.Equal(t, addr, r.cl.current(r.shards[i].slot), "key %s is on its shard's master", key)
			assert.Equal(t, int64(keySlot(key)), clusterKeySlot(t, addr, key), "Redis agrees on the slot of %s", key)
		}
	}
	for i, n := range perShard {
		assert.Greater(t, n, 0, "shard %d holds keys", i)
	}
}

// shardTag is the leading "{...}" of key.
func shardTag(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] == '}' {
			return key[:i+1]
		}
	}
	return ""
}

// deleteEach deletes every key under prefix on the node at addr, one
// DEL per key (a Cluster node refuses a DEL of keys in several slots).
func deleteEach(t *testing.T, addr, prefix string) {
	t.Helper()
	conn, err := redigo.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	keys := keysOn(t, addr, prefix+"*")
	for _, k := range keys {
		require.NoError(t, conn.Send("DEL", k))
	}
	require.NoError(t, conn.Flush())
	for range keys {
		_, err := conn.Receive()
		require.NoError(t, err)
	}
}

// keysOn lists the keys matching pattern on the node at addr.
func keysOn(t *testing.T, addr, pattern string) []string {
	t.Helper()
	conn, err := redigo.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	keys, err := redigo.Strings(conn.Do("KEYS", pattern))
	require.NoError(t, err)
	return keys
}

// clusterKeySlot is Redis's CLUSTER KEYSLOT of key.
func clusterKeySlot(t *testing.T, addr, key string) int64 {
	t.Helper()
	conn, err := redigo.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	n, err := redigo.Int64(conn.Do("CLUSTER", "KEYSLOT", key))
	require.NoError(t, err)
	return n
}

// testClusterSlotMigrated migrates one shard's slot to another master
// while the router holds connections to the old one: during the
// migration the shard's calls fail naming the shard, the other shards'
// work; once the slot is moved every call succeeds (the router follows
// the MOVED reply) and finds the routes written before.
func testClusterSlotMigrated(t *testing.T, c *testenv.RedisCluster) {
	r := clusterForTest(t, c, Config{KeyPrefix: "mv:", ClusterShards: 8, PoolWait: 5 * time.Second})
	ctx := context.Background()
	var sessions []imcloud.Session
	var mids []int64
	for mid := int64(1); mid <= 100; mid++ {
		sessions = append(sessions, imcloud.Session{Mid: mid, Key: "k" + strconv.FormatInt(mid, 10), Node: "node-a", Gen: 1})
		mids = append(mids, mid)
	}
	require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: "node-a", Epoch: "e"}, time.Minute))
	require.NoError(t, r.PutSessions(ctx, sessions, time.Minute))
	routes, err := r.NodesByMids(ctx, mids)
	require.NoError(t, err)
	require.Len(t, routes, len(sessions))

	moved := r.midShard(1)
	slot := r.shards[moved].slot
	source := r.cl.current(slot)
	target := c.Addrs[0]
	if target == source {
		target = c.Addrs[1]
	}
	var other int64 // a user on another shard, on another master
	for mid := int64(2); other == 0; mid++ {
		if r.cl.current(r.shards[r.midShard(mid)].slot) != source {
			other = mid
		}
	}

	m := startMigration(t, source, target, slot)
	m.migrateKeys(t, 1) // one key moved: the others are still on source
	err = r.PutSessions(ctx, []imcloud.Session{sessions[0]}, time.Minute)
	require.Error(t, err, "a shard's calls fail while its slot is migrated")
	assert.ErrorContains(t, err, fmt.Sprintf("shard {s%d}", moved))
	assert.ErrorContains(t, err, "being migrated")
	_, err = r.NodesByMids(ctx, []int64{other})
	require.NoError(t, err, "the other shards work")

	m.migrateKeys(t, 0)
	m.finish(t, c.Addrs)

	routes, err = r.NodesByMids(ctx, mids)
	require.NoError(t, err, "the router follows the slot to its new master")
	assert.Len(t, routes, len(sessions), "the routes written before the move are found")
	assert.Equal(t, target, r.cl.current(slot))
	require.NoError(t, r.PutSessions(ctx, sessions, time.Minute))
	nodes, err := r.Nodes(ctx)
	require.NoError(t, err)
	assert.Len(t, nodes, 1)
	assert.NotEmpty(t, keysOn(t, target, "mv:{s"+strconv.Itoa(moved)+"}*"))
	assert.Empty(t, keysOn(t, source, "mv:{s"+strconv.Itoa(moved)+"}*"))
}

// migration is a slot being moved from one master to another, the way
// redis-cli --cluster reshard does it.
type migration struct {
	slot                     uint16
	source, target           string
	sourceID, targetID, host string
	port                     string
}

func nodeDo(t *testing.T, addr string, cmd string, args ...any) any {
	t.Helper()
	conn, err := redigo.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	reply, err := conn.Do(cmd, args...)
	require.NoError(t, err, "%s %v on %s", cmd, args, addr)
	return reply
}

func startMigration(t *testing.T, source, target string, slot uint16) *migration {
	t.Helper()
	m := &migration{slot: slot, source: source, target: target}
	var err error
	m.sourceID, err = redigo.String(nodeDo(t, source, "CLUSTER", "MYID"), nil)
	require.NoError(t, err)
	m.targetID, err = redigo.String(nodeDo(t, target, "CLUSTER", "MYID"), nil)
	require.NoError(t, err)
	m.host, m.port, err = net.SplitHostPort(target)
	require.NoError(t, err)
	nodeDo(t, target, "CLUSTER", "SETSLOT", slot, "IMPORTING", m.sourceID)
	nodeDo(t, source, "CLUSTER", "SETSLOT", slot, "MIGRATING", m.targetID)
	return m
}

// migrateKeys moves n keys of the slot (0: all) to the target.
func (m *migration) migrateKeys(t *testing.T, n int) {
	t.Helper()
	count := n
	if count == 0 {
		count = 1 << 20
	}
	keys, err := redigo.Strings(nodeDo(t, m.source, "CLUSTER", "GETKEYSINSLOT", m.slot, count), nil)
	require.NoError(t, err)
	if len(keys) == 0 {
		return
	}
	args := []any{m.host, m.port, "", 0, 5000, "KEYS"}
	for _, k := range keys {
		args = append(args, k)
	}
	nodeDo(t, m.source, "MIGRATE", args...)
}

// finish gives the slot to the target on every master.
func (m *migration) finish(t *testing.T, masters []string) {
	t.Helper()
	nodeDo(t, m.target, "CLUSTER", "SETSLOT", m.slot, "NODE", m.targetID)
	nodeDo(t, m.source, "CLUSTER", "SETSLOT", m.slot, "NODE", m.targetID)
	for _, addr := range masters {
		if addr != m.source && addr != m.target {
			nodeDo(t, addr, "CLUSTER", "SETSLOT", m.slot, "NODE", m.targetID)
		}
	}
}

// TestClusterConfigRefused: what a Redis Cluster cannot do is refused
// when the router is made.
func TestClusterConfigRefused(t *testing.T) {
	for name, cfg := range map[string]Config{
		"DB":                     {Cluster: true, DB: 1},
		"brace in prefix":        {Cluster: true, KeyPrefix: "{app}"},
		"negative shards":        {Cluster: true, ClusterShards: -1},
		"shards without Cluster": {ClusterShards: 4},
		"Addr and Addrs":         {Cluster: true, Addr: "127.0.0.1:1", Addrs: []string{"127.0.0.1:2"}},
		"empty seed":             {Cluster: true, Addrs: []string{"127.0.0.1:1", ""}},
		"too many shards":        {Cluster: true, ClusterShards: maxClusterShards + 1},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewRouter(cfg)
			assert.ErrorIs(t, err, logic.ErrInvalidArgument)
		})
	}
}

// TestClusterModeOnPlainRedis: cluster mode pointed at a redis-server
// without cluster support fails with Redis's reason and the address.
func TestClusterModeOnPlainRedis(t *testing.T) {
	srv := testenv.StartRedis(t)
	r, err := NewRouter(Config{Addr: srv.Addr, Cluster: true, ClusterShards: 2})
	require.NoError(t, err, "NewRouter does not connect")
	defer r.Close()
	err = r.Ping(context.Background())
	require.Error(t, err)
	assert.ErrorContains(t, err, "cluster support disabled")
	assert.ErrorContains(t, err, srv.Addr)
	assert.ErrorContains(t, err, "shard {s0}")
}
