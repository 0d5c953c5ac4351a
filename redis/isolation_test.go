package redis_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRegistrationsServedWhileLookupsSaturate: push lookups of many mids
// run back to back, as a burst of large pushes makes them, while the same
// Router (an all-in-one process: the cloud node registers through it)
// writes sessions and its node. The writes have their own pool, and the
// lookups reach Redis in script calls of MaxMidsPerCall mids, so the
// writes neither wait for a connection nor time out behind one long
// script. With one shared pool of one connection and one script call per
// lookup, every write waited for a lookup's whole round trip, longer than
// PoolWait.
func TestRegistrationsServedWhileLookupsSaturate(t *testing.T) {
	srv := testenv.StartRedis(t)
	r := newRedisRouter(t, redis.Config{Addr: srv.Addr, PoolSize: 1, Lookups: 2,
		PoolWait: 50 * time.Millisecond, ReadTimeout: 2 * time.Second})
	ctx := context.Background()
	// The write pool's connection is dialed before the lookups start: the
	// test is about waiting for a connection, and a dial on a loaded
	// machine may take longer than PoolWait on its own.
	require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: "node-a"}, time.Minute))
	mids := make([]int64, 100_000) // users not online: the script still reads each
	for i := range mids {
		mids[i] = int64(i + 1_000_000)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, err := r.NodesByMids(ctx, mids)
				assert.NoError(t, err)
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	time.Sleep(100 * time.Millisecond) // the lookups are under way
	for i := 0; i < 20; i++ {
		s := imcloud.Session{Mid: int64(i + 1), Key: "k" + strconv.Itoa(i), Node: "node-a", Gen: 1}
		require.NoError(t, r.PutSessions(ctx, []imcloud.Session{s}, time.Minute), "write %d", i)
		require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: "node-a"}, time.Minute), "write %d", i)
	}
	routes, err := r.NodesByMids(ctx, []int64{1, 20})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k0": "node-a", "k19": "node-a"}, routes)
	assert.Greater(t, r.Stats().Lookups, uint64(1), "the lookups ran meanwhile")
}

// TestLookupSplitIntoScriptCalls: a lookup of more mids than
// MaxMidsPerCall is answered whole, from several script calls.
func TestLookupSplitIntoScriptCalls(t *testing.T) {
	srv := testenv.StartRedis(t)
	r := newRedisRouter(t, redis.Config{Addr: srv.Addr, MaxMidsPerCall: 3})
	ctx := context.Background()
	var sessions []imcloud.Session
	want := map[string]string{}
	var mids []int64
	for i := 1; i <= 10; i++ {
		for _, node := range []string{"node-a", "node-b"} {
			key := fmt.Sprintf("%s-%d", node, i)
			sessions = append(sessions, imcloud.Session{Mid: int64(i), Key: key, Node: node, Gen: 1})
			want[key] = node
		}
		mids = append(mids, int64(i))
	}
	require.NoError(t, r.PutSessions(ctx, sessions, time.Minute))
	before := scriptCalls(t, srv.Addr)
	got, err := r.NodesByMids(ctx, append(mids, 404))
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.GreaterOrEqual(t, scriptCalls(t, srv.Addr)-before, 4, "11 mids, 3 per call")

	// Lookups coalesced into one round trip are split the same way, each
	// answered with its own routes.
	var wg sync.WaitGroup
	for i := 1; i <= 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := r.NodesByMids(ctx, []int64{int64(i), 404, int64(i)})
			assert.NoError(t, err)
			assert.Equal(t, map[string]string{fmt.Sprintf("node-a-%d", i): "node-a", fmt.Sprintf("node-b-%d", i): "node-b"}, got)
		}()
	}
	wg.Wait()
}

// scriptCalls is the server's count of EVALSHA and EVAL calls.
func scriptCalls(t *testing.T, addr string) int {
	t.Helper()
	c, err := redigo.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	info, err := redigo.String(c.Do("INFO", "commandstats"))
	require.NoError(t, err)
	n := 0
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd); ok {
				v, _, _ := strings.Cut(rest, ",")
				k, err := strconv.Atoi(v)
				require.NoError(t, err)
				n += k
			}
		}
	}
	return n
}

// TestSmallLookupsDoNotWaitForLargeOnes: a lookup of one mid made while a
// lookup of 200,000 mids is in flight is answered before it: small
// lookups have a goroutine of their own and Redis answers them between two
// script calls of the large one. With one queue for all lookups, the small
// one waited for the large one's whole round trip.
func TestSmallLookupsDoNotWaitForLargeOnes(t *testing.T) {
	srv := testenv.StartRedis(t)
	r := newRedisRouter(t, redis.Config{Addr: srv.Addr})
	ctx := context.Background()
	require.NoError(t, r.PutSessions(ctx, []imcloud.Session{{Mid: 7, Key: "k7", Node: "node-a", Gen: 1}}, time.Minute))
	mids := make([]int64, 200_000)
	for i := range mids {
		mids[i] = int64(i + 1_000_000)
	}
	largeDone := make(chan struct{})
	go func() {
		defer close(largeDone)
		_, err := r.NodesByMids(ctx, mids)
		assert.NoError(t, err)
	}()
	require.Eventually(t, func() bool { return r.Stats().RoundTrips > 0 }, 10*time.Second, time.Millisecond,
		"the large lookup's round trip started")
	routes, err := r.NodesByMids(ctx, []int64{7})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"k7": "node-a"}, routes)
	select {
	case <-largeDone:
		t.Fatal("the small lookup was answered only after the large one")
	default:
	}
	<-largeDone
}
