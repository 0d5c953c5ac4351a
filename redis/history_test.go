package redis_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/historytest"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/imcloud/imcloud/redis"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRedisHistoryConformance(t *testing.T) {
	srv := testenv.StartRedis(t)
	var n atomic.Int64
	historytest.Run(t, func(t *testing.T, cfg historytest.Config) historytest.Harness {
		// One server; each subtest gets an empty keyspace through its prefix.
		r := newRedisRouter(t, redis.Config{Addr: srv.Addr, KeyPrefix: fmt.Sprintf("h%d:", n.Add(1))})
		h := redis.NewHistory(r, redis.HistoryConfig{MaxLen: cfg.MaxLen, MaxAge: cfg.MaxAge})
		return historytest.Harness{Store: h, Now: time.Now, Advance: time.Sleep}
	})
}

func histItem(s imcloud.Stream, off int64) imcloud.HistoryAppend {
	return imcloud.HistoryAppend{Stream: s, Entry: imcloud.HistoryEntry{
		Offset: off, ID: imcloud.NewMessageID(), Op: 1000, Body: []byte("hello"), Accepted: time.Now()}}
}

// TestRedisHistoryWipe checks that a Redis that lost its data shows as a
// new epoch: a client holding the old one is told epoch_changed, and a
// redelivery after the loss starts the new epoch rather than vanishing.
func TestRedisHistoryWipe(t *testing.T) {
	for _, w := range testenv.RedisWipes() {
		t.Run(w.Name, func(t *testing.T) {
			srv := testenv.StartRedis(t)
			h := redis.NewHistory(newRedisRouter(t, redis.Config{Addr: srv.Addr}), redis.HistoryConfig{})
			ctx := context.Background()
			s := imcloud.UserStream(42)
			items := []imcloud.HistoryAppend{histItem(s, 10), histItem(s, 11)}
			require.NoError(t, h.Append(ctx, items))
			old := items[0].Epoch

			w.Wipe(srv)

			r, err := h.Read(ctx, s, imcloud.Position{Epoch: old, Offset: 10}, 0)
			require.NoError(t, err)
			assert.False(t, r.Complete)
			assert.Equal(t, imcloud.ReasonEpochChanged, r.Reason)
			assert.NotEqual(t, old, r.Epoch)
			assert.Equal(t, int64(-1), r.Top)
			assert.Empty(t, r.Entries)

			// The job redelivers 11 (it had not committed it): it is held
			// again under the new epoch.
			again := items[1:]
			require.NoError(t, h.Append(ctx, again))
			assert.Equal(t, r.Epoch, again[0].Epoch)
			last, err := h.Last(ctx, s, 0)
			require.NoError(t, err)
			require.Len(t, last.Entries, 1)
			assert.Equal(t, int64(11), last.Entries[0].Offset)
		})
	}
}

// TestRedisHistoryMetaTTL checks that a stream idle past MetaTTL starts
// over under a new epoch, its old stream key gone with it.
func TestRedisHistoryMetaTTL(t *testing.T) {
	srv := testenv.StartRedis(t)
	h := redis.NewHistory(newRedisRouter(t, redis.Config{Addr: srv.Addr}),
		redis.HistoryConfig{MaxAge: 100 * time.Millisecond, MetaTTL: 600 * time.Millisecond})
	ctx := context.Background()
	s := imcloud.RoomStream("live://7")
	items := []imcloud.HistoryAppend{histItem(s, 5)}
	require.NoError(t, h.Append(ctx, items))
	time.Sleep(200 * time.Millisecond)
	r, err := h.Read(ctx, s, imcloud.Position{Epoch: items[0].Epoch, Offset: 5}, 0)
	require.NoError(t, err)
	assert.True(t, r.Complete, "within MetaTTL the epoch stands: %+v", r)

	time.Sleep(600 * time.Millisecond)
	r, err = h.Read(ctx, s, imcloud.Position{Epoch: items[0].Epoch, Offset: 5}, 0)
	require.NoError(t, err)
	assert.Equal(t, imcloud.ReasonEpochChanged, r.Reason)
	assert.Equal(t, int64(-1), r.Top)
}

// TestRedisHistorySchema checks the key names (both of a stream tagged
// {<stream>}, so they share a Cluster slot), fields and expiries the
// design documents.
func TestRedisHistorySchema(t *testing.T) {
	srv := testenv.StartRedis(t)
	r := newRedisRouter(t, redis.Config{Addr: srv.Addr, KeyPrefix: "app:"})
	h := redis.NewHistory(r, redis.HistoryConfig{MaxAge: time.Minute, MetaTTL: time.Hour})
	ctx := context.Background()
	items := []imcloud.HistoryAppend{histItem(imcloud.UserStream(42), 7), histItem(imcloud.RoomStream("live://1"), 8)}
	items[1].Partition = 3
	require.NoError(t, h.Append(ctx, items))

	c, err := redigo.Dial("tcp", srv.Addr)
	require.NoError(t, err)
	defer c.Close()
	meta, err := redigo.StringMap(c.Do("HGETALL", "app:histmeta:{r:live://1}"))
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"epoch": items[1].Epoch, "part": "3", "last": "8", "trimmed": "-1",
		"newest": fmt.Sprint(items[1].Entry.Accepted.UnixMilli()), "layout": ""}, meta)
	layout, err := redigo.StringMap(c.Do("HGETALL", "app:histlayout"))
	require.NoError(t, err)
	assert.Len(t, layout["fp"], 16, "the layout's fingerprint, no stamp: no layout change seen")
	assert.NotContains(t, layout, "stamp")
	ttl, err := redigo.Int64(c.Do("PTTL", "app:histlayout"))
	require.NoError(t, err)
	assert.Equal(t, int64(-1), ttl, "no expiry")
	ttl, err = redigo.Int64(c.Do("PTTL", "app:histmeta:{u:42}"))
	require.NoError(t, err)
	assert.InDelta(t, time.Hour.Milliseconds(), ttl, 5000)
	ttl, err = redigo.Int64(c.Do("PTTL", "app:hist:{u:42}"))
	require.NoError(t, err)
	assert.InDelta(t, time.Minute.Milliseconds(), ttl, 5000)
	es, err := redigo.Values(c.Do("XRANGE", "app:hist:{u:42}", "-", "+"))
	require.NoError(t, err)
	require.Len(t, es, 1)
	id, err := redigo.String(es[0].([]any)[0], nil)
	require.NoError(t, err)
	assert.Equal(t, "7-1", id)
}

// TestRedisHistoryManyCalls checks an Append larger than one script call:
// pipelined calls in one round trip, every item's epoch set, each call's
// new epochs distinct from the others'.
func TestRedisHistoryManyCalls(t *testing.T) {
	srv := testenv.StartRedis(t)
	h := redis.NewHistory(newRedisRouter(t, redis.Config{Addr: srv.Addr}), redis.HistoryConfig{MaxAppendsPerCall: 3})
	ctx := context.Background()
	var items []imcloud.HistoryAppend
	for i := int64(0); i < 10; i++ {
		items = append(items, histItem(imcloud.UserStream(1+i%5), i))
	}
	require.NoError(t, h.Append(ctx, items))
	epochs := map[imcloud.Stream]string{}
	for _, it := range items {
		if e, ok := epochs[it.Stream]; ok {
			assert.Equal(t, e, it.Epoch, "one stream, one epoch")
		}
		epochs[it.Stream] = it.Epoch
	}
	seen := map[string]bool{}
	for _, e := range epochs {
		assert.False(t, seen[e], "epoch %s given to two streams", e)
		seen[e] = true
	}
	for s, e := range epochs {
		r, err := h.Read(ctx, s, imcloud.Position{Epoch: e, Offset: -1}, 0)
		require.NoError(t, err)
		assert.True(t, r.Complete)
		assert.Len(t, r.Entries, 2)
	}
}

func newBenchHistory(b *testing.B) *redis.History {
	srv := testenv.StartRedis(b)
	r, err := redis.NewRouter(redis.Config{Addr: srv.Addr})
	require.NoError(b, err)
	b.Cleanup(func() { _ = r.Close() })
	return redis.NewHistory(r, redis.HistoryConfig{})
}

func BenchmarkRedisHistoryAppend(b *testing.B) { historytest.BenchAppend(b, newBenchHistory(b)) }

func BenchmarkRedisHistoryRead(b *testing.B) { historytest.BenchRead(b, newBenchHistory(b)) }
