package redis

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The slot map's reads when nodes are down, frozen or slow, on the
// package's shared Cluster (TestRedisCluster runs these). Each test waits
// for the router to recover within a generous limit (eventually): what is
// tested is that it recovers at all, not how fast.

// eventually calls f until it succeeds or limit passes, and fails the
// test with every error f returned if it never did.
func eventually(t *testing.T, limit time.Duration, f func() error) {
	t.Helper()
	var errs []error
	for deadline := time.Now().Add(limit); ; {
		err := f()
		if err == nil {
			return
		}
		errs = append(errs, err)
		if time.Now().After(deadline) {
			t.Fatalf("no success within %v: %v", limit, errors.Join(errs...))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// blackhole returns a loopback address whose connects time out, as a
// host that is down does: a listener with a full accept queue.
func blackhole(t *testing.T) string {
	t.Helper()
	fd := boundSocket(t)
	require.NoError(t, syscall.Listen(fd, 0))
	addr := sockAddr(t, fd)
	c, err := net.Dial("tcp", addr) // fills the queue
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = net.DialTimeout("tcp", addr, 200*time.Millisecond)
	require.Error(t, err, "blackhole")
	return addr
}

// refusing returns a loopback address whose connects are refused, as a
// stopped server's are: a bound socket that does not listen, held until
// the test ends so that no other process takes its port.
func refusing(t *testing.T) string {
	t.Helper()
	return sockAddr(t, boundSocket(t))
}

// boundSocket returns a TCP socket bound to a free loopback port, closed
// when the test ends.
func boundSocket(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Close(fd) })
	require.NoError(t, syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}))
	return fd
}

func sockAddr(t *testing.T, fd int) string {
	t.Helper()
	sa, err := syscall.Getsockname(fd)
	require.NoError(t, err)
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

// silent returns the address of a listener that accepts connections and
// never answers (a frozen node), and a channel told of each connection.
func silent(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan struct{}, 100)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return ln.Addr().String(), accepted
}

// testClusterUnreachableSeed: the first seed's host is down (its dial
// times out, after the callers' pool wait): the map is read from the next
// seeds and the router starts; the next reads ask that seed last.
func testClusterUnreachableSeed(t *testing.T, c *testenv.RedisCluster) {
	down := blackhole(t)
	r, err := NewRouter(Config{Cluster: true, Addrs: append([]string{down}, c.Addrs...),
		ClusterShards: 2, DialTimeout: 500 * time.Millisecond, PoolWait: 250 * time.Millisecond})
	require.NoError(t, err)
	defer r.Close()
	eventually(t, 20*time.Second, func() error { return r.Ping(context.Background()) })
	r.cl.mu.Lock()
	order := r.cl.candidates()
	r.cl.mu.Unlock()
	assert.Equal(t, down, order[len(order)-1], "the seed that failed is asked last: %v", order)
}

// testClusterMasterHostDown: a shard's master stops answering (its host is
// down; the Cluster gave its slot to another master): the dial times out
// after the caller's pool wait and the map is read again all the same.
func testClusterMasterHostDown(t *testing.T, c *testenv.RedisCluster) {
	r := clusterForTest(t, c, Config{KeyPrefix: "bh:", ClusterShards: 4,
		DialTimeout: 500 * time.Millisecond, PoolWait: 250 * time.Millisecond})
	eventually(t, 20*time.Second, func() error { return r.Ping(context.Background()) })
	followed(t, r, pointAway(r, blackhole(t)))
}

// pointAway points shard 0 of r at addr, as a stale map would, with no
// idle connection (the next call dials), and returns its slot's master.
func pointAway(r *Router, addr string) string {
	s := r.shards[0]
	owner := r.cl.current(s.slot)
	r.cl.pin(s.slot, addr)
	s.connLost.Store(time.Now().UnixNano())
	return owner
}

// followed checks that r's calls succeed again, and shard 0 reaches owner.
func followed(t *testing.T, r *Router, owner string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		return r.PutNode(context.Background(), imcloud.Node{ID: "node-a", Epoch: "e"}, time.Minute)
	})
	assert.Equal(t, owner, r.cl.current(r.shards[0].slot))
}

// testClusterLastNodeDown: the node that answered the last map read has
// gone down with its host, and a shard's master is replaced (its old
// address refuses): the map read does not stop at the node that times out
// but goes on to the others.
func testClusterLastNodeDown(t *testing.T, c *testenv.RedisCluster) {
	r := clusterForTest(t, c, Config{KeyPrefix: "ln:", ClusterShards: 4,
		DialTimeout: 500 * time.Millisecond, PoolWait: 250 * time.Millisecond})
	ctx := context.Background()
	eventually(t, 20*time.Second, func() error { return r.Ping(ctx) })
	r.cl.mu.Lock()
	r.cl.last = blackhole(t)
	r.cl.mu.Unlock()
	followed(t, r, pointAway(r, refusing(t)))
}

// testClusterCancelledReader: a caller whose context ends while the map is
// read does not fail the other callers waiting for the same read.
func testClusterCancelledReader(t *testing.T, c *testenv.RedisCluster) {
	r, err := NewRouter(Config{Cluster: true, Addrs: append([]string{blackhole(t)}, c.Addrs...),
		ClusterShards: 1, DialTimeout: 300 * time.Millisecond, PoolWait: 10 * time.Second})
	require.NoError(t, err)
	defer r.Close()
	actx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Ping(actx) }()
	time.Sleep(30 * time.Millisecond)
	errB := r.Ping(context.Background())
	t.Logf("the cancelled caller: %v", <-done)
	assert.NoError(t, errB, "this caller's context was never cancelled")
}

// testClusterFrozenMaster: a shard's master freezes (connects succeed,
// nothing answers: SIGSTOP, a paused VM) after the Cluster gave its slot
// to another master: the calls time out, which reads the map again, and
// the shard reaches the slot's new master. A call that timed out is not
// retried (it may have run).
func testClusterFrozenMaster(t *testing.T, c *testenv.RedisCluster) {
	frozen := testenv.StartRedis(t)
	r := clusterForTest(t, c, Config{KeyPrefix: "fz:", ClusterShards: 4,
		ReadTimeout: 300 * time.Millisecond, PoolWait: 10 * time.Second})
	require.NoError(t, r.Ping(context.Background()))
	require.NoError(t, syscall.Kill(frozen.Pid(), syscall.SIGSTOP))
	t.Cleanup(func() { _ = syscall.Kill(frozen.Pid(), syscall.SIGCONT) })
	followed(t, r, pointAway(r, frozen.Addr))
}

// testClusterPinSurvivesRead: a slot pinned by a MOVED reply while a map
// read runs keeps its pin when that read ends (the node it asked may not
// know of the move yet); a pin also clears an older read's failure.
func testClusterPinSurvivesRead(t *testing.T, c *testenv.RedisCluster) {
	r := clusterForTest(t, c, Config{KeyPrefix: "pn:", ClusterShards: 4,
		ReadTimeout: 500 * time.Millisecond, PoolWait: 10 * time.Second})
	ctx := context.Background()
	require.NoError(t, r.Ping(ctx))
	slot := r.shards[0].slot
	owner := r.cl.current(slot)
	moved := c.Addrs[0]
	if moved == owner {
		moved = c.Addrs[1]
	}
	slow, accepted := silent(t)
	r.cl.mu.Lock()
	r.cl.last = slow // the next read asks it first, and waits ReadTimeout
	r.cl.mu.Unlock()
	forgetLastRead(r)
	read := make(chan error, 1)
	go func() { read <- r.cl.refresh(ctx, r.cl.version()) }()
	<-accepted // the read is waiting on the slow node
	r.cl.pin(slot, moved)
	require.NoError(t, <-read)
	assert.Equal(t, moved, r.cl.current(slot), "the pin made during the read")

	r.cl.mu.Lock()
	r.cl.err = errors.New("an older read failed")
	r.cl.mu.Unlock()
	seen := r.cl.version()
	r.cl.pin(slot, owner)
	assert.NoError(t, r.cl.refresh(ctx, seen), "the pin is newer than the failure")
}

// testClusterDownBackoff: while no node answers, the map is read at most
// once per clusterBackoff, however many calls want it; the calls fail
// with the last read's error.
func testClusterDownBackoff(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	var reads atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			reads.Add(1)
			_ = c.Close() // a node that drops every client
		}
	}()
	r, err := NewRouter(Config{Cluster: true, Addr: ln.Addr().String(), ClusterShards: 1})
	require.NoError(t, err)
	defer r.Close()
	start := time.Now()
	for range 30 {
		err := r.Ping(context.Background())
		require.Error(t, err)
		assert.ErrorContains(t, err, "CLUSTER SLOTS")
	}
	most := int64(time.Since(start)/clusterBackoff) + 2
	assert.LessOrEqual(t, reads.Load(), most, "map reads")
}

func TestClusterDownBackoff(t *testing.T) { testClusterDownBackoff(t) }

// TestMovedTo: the address of a MOVED reply, IPv6 (unbracketed, as Redis
// writes it) and an unknown endpoint (no host: the node asked) included.
func TestMovedTo(t *testing.T) {
	for reply, want := range map[string]string{
		"MOVED 3999 127.0.0.1:6381": "127.0.0.1:6381",
		"MOVED 3999 ::1:6379":       "[::1]:6379",
		"MOVED 3999 :6380":          ":6380",
		"MOVED 3999 redis-2:6380":   "redis-2:6380",
	} {
		got, ok := movedTo(redigo.Error(reply))
		assert.True(t, ok, reply)
		assert.Equal(t, want, got, reply)
	}
	for _, reply := range []string{"ASK 3999 127.0.0.1:6381", "MOVED 3999", "ERR x"} {
		_, ok := movedTo(redigo.Error(reply))
		assert.False(t, ok, reply)
	}
}

// testClusterMovedMidPipeline: a MOVED reply to a call of a pipeline
// after earlier calls ran retries that call alone, and the replies of the
// calls that ran are kept (a putSessionsScript call's reply reports the
// previous user of a key it moved, once: rerun, it reports nothing).
//
// One shard's calls all have its slot, so the slot would have to move
// between two calls of a pipeline; instead the pipeline's first call
// names another shard on the same master (as the calls before a move
// would run), and the second the shard whose slot was moved to another
// master behind the router's back.
func testClusterMovedMidPipeline(t *testing.T, c *testenv.RedisCluster) {
	r := clusterForTest(t, c, Config{KeyPrefix: "mp:", ClusterShards: 8, PoolWait: 5 * time.Second})
	ctx := context.Background()
	require.NoError(t, r.Ping(ctx))
	a, b := -1, -1 // two shards on one master
	for i := range r.shards {
		for j := range i {
			if r.cl.current(r.shards[i].slot) == r.cl.current(r.shards[j].slot) {
				a, b = i, j
			}
		}
	}
	require.GreaterOrEqual(t, a, 0, "8 shards over 3 masters: two share one")
	sa, sb := r.shards[a], r.shards[b]
	require.NoError(t, sb.PutSessions(ctx, []imcloud.Session{{Mid: 1, Key: "k1", Node: "n", Gen: 1}}, time.Minute))
	source := r.cl.current(sa.slot)
	target := c.Addrs[0]
	if target == source {
		target = c.Addrs[1]
	}
	m := startMigration(t, source, target, sa.slot)
	m.migrateKeys(t, 0) // other tests' keys of the slot (their shard's tag is the same)
	m.finish(t, c.Addrs)

	calls := append(sessionCalls(sb.prefix, []imcloud.Session{{Mid: 2, Key: "k1", Node: "n", Gen: 2}}, time.Minute),
		sessionCalls(sa.prefix, []imcloud.Session{{Mid: 3, Key: "k3", Node: "n", Gen: 1}}, time.Minute)...)
	replies, err := sa.scriptReplies(ctx, putSessionsScript, calls)
	require.NoError(t, err)
	require.Len(t, replies, 2)
	moved, _ := replies[0].([]any)
	require.Len(t, moved, 2, "the first call's report of k1's previous user")
	assert.Equal(t, "k1", string(moved[0].([]byte)))
	assert.Equal(t, target, r.cl.current(sa.slot))
}
