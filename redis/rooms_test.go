package redis_test

import (
	"context"
	"fmt"
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

// TestRedisRoomsSchema checks the membership keys: {p}rn_{room}, a hash of
// node id -> expiry (unix ms) whose PX covers its longest field and is
// never shortened, gone when its last member left.
func TestRedisRoomsSchema(t *testing.T) {
	srv := testenv.StartRedis(t)
	r := newRedisRouter(t, redis.Config{Addr: srv.Addr, KeyPrefix: "p:"})
	ctx := context.Background()
	before := time.Now().UnixMilli()
	require.NoError(t, r.PutRooms(ctx, "node-a", []string{"live://1"}, nil, time.Minute))
	require.NoError(t, r.PutRooms(ctx, "node-b", []string{"live://1"}, nil, time.Second))

	c, err := redigo.Dial("tcp", srv.Addr)
	require.NoError(t, err)
	defer c.Close()
	h, err := redigo.StringMap(c.Do("HGETALL", "p:rn_live://1"))
	require.NoError(t, err)
	require.Len(t, h, 2)
	a, err := strconv.ParseInt(h["node-a"], 10, 64)
	require.NoError(t, err)
	assert.InDelta(t, before+60_000, a, 5000, "node-a's expiry, unix ms")
	b, err := strconv.ParseInt(h["node-b"], 10, 64)
	require.NoError(t, err)
	assert.InDelta(t, before+1000, b, 5000, "node-b's expiry, unix ms")
	pttl, err := redigo.Int64(c.Do("PTTL", "p:rn_live://1"))
	require.NoError(t, err)
	assert.InDelta(t, 60_000, pttl, 5000, "node-b's shorter put did not shorten the key")

	require.NoError(t, r.PutRooms(ctx, "node-a", nil, []string{"live://1"}, time.Minute))
	require.NoError(t, r.PutRooms(ctx, "node-b", nil, []string{"live://1"}, time.Minute))
	n, err := redigo.Int(c.Do("EXISTS", "p:rn_live://1"))
	require.NoError(t, err)
	assert.Zero(t, n, "the last member left: no key")
}

// TestRedisRoomsExpiredFieldDeleted: a lookup deletes the expired fields it
// meets (a node that crashed never left its rooms), keeping the live ones.
func TestRedisRoomsExpiredFieldDeleted(t *testing.T) {
	srv := testenv.StartRedis(t)
	r := newRedisRouter(t, redis.Config{Addr: srv.Addr})
	ctx := context.Background()
	for _, id := range []string{"node-a", "node-b"} {
		require.NoError(t, r.PutNode(ctx, imcloud.Node{ID: id}, time.Minute))
	}
	require.NoError(t, r.PutRooms(ctx, "node-a", []string{"live://1"}, nil, 200*time.Millisecond))
	require.NoError(t, r.PutRooms(ctx, "node-b", []string{"live://1"}, nil, time.Minute))
	time.Sleep(400 * time.Millisecond)

	c, err := redigo.Dial("tcp", srv.Addr)
	require.NoError(t, err)
	defer c.Close()
	n, err := redigo.Int(c.Do("HLEN", "rn_live://1"))
	require.NoError(t, err)
	require.Equal(t, 2, n, "the expired field is still there before a lookup")
	got, err := r.NodesByRooms(ctx, []string{"live://1"})
	require.NoError(t, err)
	assert.Equal(t, map[string][]string{"live://1": {"node-b"}}, got)
	fields, err := redigo.Strings(c.Do("HKEYS", "rn_live://1"))
	require.NoError(t, err)
	assert.Equal(t, []string{"node-b"}, fields)
}

// benchRooms is the membership the benchmarks read: rooms spread over
// nodes so that each has members on 1 to 3 of them, as a cluster whose
// rooms live on a handful of gateways.
func benchRooms(b *testing.B, r *redis.Router, nodes, rooms int) []string {
	b.Helper()
	ctx := context.Background()
	names := make([]string, rooms)
	byNode := make([][]string, nodes)
	for i := range names {
		names[i] = fmt.Sprintf("live://%d", i)
		for j := 0; j <= i%3; j++ {
			n := (i + j*7) % nodes
			byNode[n] = append(byNode[n], names[i])
		}
	}
	for n, joined := range byNode {
		id := fmt.Sprintf("node-%d", n)
		require.NoError(b, r.PutNode(ctx, imcloud.Node{ID: id}, time.Hour))
		require.NoError(b, r.PutRooms(ctx, id, joined, nil, time.Hour))
	}
	return names
}

// BenchmarkRedisNodesByRooms: one lookup of 100 rooms (a job batch's room
// pushes) among 10,000 rooms on 20 nodes, members on 1-3 nodes per room.
func BenchmarkRedisNodesByRooms(b *testing.B) {
	srv := testenv.StartRedis(b)
	r := newRedisRouter(b, redis.Config{Addr: srv.Addr})
	names := benchRooms(b, r, 20, 10_000)
	ctx := context.Background()
	const perCall = 100
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		at := (i * perCall) % (len(names) - perCall)
		got, err := r.NodesByRooms(ctx, names[at:at+perCall])
		if err != nil || len(got) != perCall {
			b.Fatalf("lookup: %d rooms, %v", len(got), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perCall), "ns/room")
}

// BenchmarkRedisPutRooms: a node renews 512 rooms in one call (one
// StoreCallSessions batch of its periodic renewal).
func BenchmarkRedisPutRooms(b *testing.B) {
	srv := testenv.StartRedis(b)
	r := newRedisRouter(b, redis.Config{Addr: srv.Addr})
	const perCall = 512
	names := make([]string, 10*perCall)
	for i := range names {
		names[i] = fmt.Sprintf("live://%d", i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		at := (i * perCall) % len(names)
		if err := r.PutRooms(ctx, "node-a", names[at:at+perCall], nil, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perCall), "ns/room")
}
