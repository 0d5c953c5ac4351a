package redis

import (
	"context"
	"net"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// frozenNodes returns n loopback addresses that accept connections and
// never answer, as frozen Cluster nodes do, and their count of accepted
// connections.
func frozenNodes(t *testing.T, n int) ([]string, *atomic.Int32) {
	t.Helper()
	var accepted atomic.Int32
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { _ = ln.Close() })
		addrs[i] = ln.Addr().String()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted.Add(1)
				t.Cleanup(func() { _ = c.Close() })
			}
		}()
	}
	return addrs, &accepted
}

// TestClusterReadEndsAtClose: a slot map read asking nodes that never
// answer ends when the router is closed: the node being asked is given
// up, no other is asked, and no read starts after. Before, the read went
// on through every node (each up to DialTimeout + ReadTimeout).
func TestClusterReadEndsAtClose(t *testing.T) {
	seeds, accepted := frozenNodes(t, 3)
	r, err := NewRouter(Config{Addrs: seeds, Cluster: true, ClusterShards: 1,
		DialTimeout: 500 * time.Millisecond, ReadTimeout: 2 * time.Second})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.Error(t, r.Ping(ctx), "the caller gives up; the read goes on")
	eventually(t, 10*time.Second, func() error {
		if accepted.Load() == 0 {
			return context.DeadlineExceeded
		}
		return nil
	})
	require.NoError(t, r.Close())
	res := <-r.cl.reads.DoChan("", func() (any, error) { return nil, r.cl.read() }) // joins the read, if it still runs
	require.ErrorIs(t, res.Err, errClusterClosed)
	assert.Equal(t, int32(1), accepted.Load(), "no node asked after Close")
	require.ErrorIs(t, r.cl.refresh(context.Background(), r.cl.version()), errClusterClosed)
	assert.Equal(t, int32(1), accepted.Load())
}

// TestClusterReadsRateLimited: a map read that succeeds but leaves the
// shard's slot out (a node in cluster mode that serves no slot) is not
// followed by another read at every call: two reads start at least
// clusterBackoff apart. Before, only failed reads were rate-limited, and
// every call read the map.
func TestClusterReadsRateLimited(t *testing.T) {
	node := testenv.StartRedisClusterNode(t)
	r := routerForTest(t, Config{Addr: node.Addr, Cluster: true, ClusterShards: 1})
	ctx := context.Background()
	const calls = 20
	start := time.Now()
	for range calls {
		err := r.Ping(ctx)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "no master serves slot")
	}
	elapsed := time.Since(start)
	info, err := redigo.String(nodeDo(t, node.Addr, "INFO", "commandstats"), nil)
	require.NoError(t, err)
	m := regexp.MustCompile(`cmdstat_cluster\|slots:calls=(\d+),`).FindStringSubmatch(info)
	require.NotNil(t, m, "the map was read: %s", info)
	reads, _ := strconv.Atoi(m[1])
	assert.LessOrEqual(t, reads, 1+int(elapsed/clusterBackoff), "%d calls in %v", calls, elapsed)
}
