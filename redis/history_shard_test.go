package redis

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/historytest"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestShardedHistoryConformance runs the history suite on a router over
// three redis-servers.
func TestShardedHistoryConformance(t *testing.T) {
	_, addrs := startShards(t, 3)
	var n atomic.Int64
	historytest.Run(t, func(t *testing.T, cfg historytest.Config) historytest.Harness {
		r := shardedForTest(t, Config{Addrs: addrs, KeyPrefix: fmt.Sprintf("h%d:", n.Add(1))})
		h := NewHistory(r, HistoryConfig{MaxLen: cfg.MaxLen, MaxAge: cfg.MaxAge})
		return historytest.Harness{Store: h, Now: time.Now, Advance: time.Sleep}
	})
}

func shardHistItem(s imcloud.Stream, off int64) imcloud.HistoryAppend {
	return imcloud.HistoryAppend{Stream: s, Entry: imcloud.HistoryEntry{
		Offset: off, ID: imcloud.NewMessageID(), Op: 1000, Body: []byte("hello"), Accepted: time.Now()}}
}

// histStreams returns n user streams and n room streams.
func histStreams(n int) []imcloud.Stream {
	var out []imcloud.Stream
	for i := 1; i <= n; i++ {
		out = append(out, imcloud.UserStream(int64(i)), imcloud.RoomStream("live://"+strconv.Itoa(i)))
	}
	return out
}

// TestShardedHistorySpreads checks that streams spread over the shards
// and live where the hashing says (a stream's two keys on its shard and
// nowhere else), and that an Append spanning every shard is one script
// call per shard.
func TestShardedHistorySpreads(t *testing.T) {
	_, addrs := startShards(t, 3)
	r := shardedForTest(t, Config{Addrs: addrs})
	h := NewHistory(r, HistoryConfig{})
	ctx := context.Background()
	streams := histStreams(45)
	var items []imcloud.HistoryAppend
	for i, s := range streams {
		items = append(items, shardHistItem(s, int64(i)))
	}
	require.NoError(t, h.Append(ctx, items))
	perShard := make([]int, len(addrs))
	for _, s := range streams {
		at := r.shardOf(streamShardKey(s))
		if mid, ok := s.Mid(); ok {
			assert.Equal(t, r.midShard(mid), at, "user %d's stream on the user's shard", mid)
		}
		perShard[at]++
		for i, addr := range addrs {
			for _, key := range []string{"hist:{" + string(s) + "}", "histmeta:{" + string(s) + "}"} {
				assert.Equal(t, i == at, nodeDo(t, addr, "EXISTS", key) == int64(1), "%s on shard %d", key, i)
			}
		}
	}
	for i, n := range perShard {
		assert.Greater(t, n, 15, "shard %d holds a fair part of 90 streams", i)
	}

	for _, addr := range addrs {
		nodeDo(t, addr, "CONFIG", "RESETSTAT")
	}
	for i := range items {
		items[i] = shardHistItem(items[i].Stream, items[i].Entry.Offset+100)
	}
	require.NoError(t, h.Append(ctx, items))
	for i, addr := range addrs {
		info, err := redigo.String(nodeDo(t, addr, "INFO", "commandstats"), nil)
		require.NoError(t, err)
		assert.Regexp(t, regexp.MustCompile(`cmdstat_evalsha:calls=1,`), info, "shard %d: one script call", i)
	}
	for _, it := range items {
		got, err := h.Last(ctx, it.Stream, 0)
		require.NoError(t, err)
		assert.Equal(t, it.Epoch, got.Epoch)
		require.Len(t, got.Entries, 2)
		assert.Equal(t, it.Entry.ID, got.Entries[1].ID)
	}
}

// TestShardedHistoryShardDown stops one of three shards: the streams of
// the others are appended and read, those of the stopped one fail with an
// error naming it, an Append spanning every shard stores the groups of
// the shards that answer and fails, and appending it again once the shard
// is back (empty) stores the rest: the streams of the shard that lost its
// data start new epochs, the others keep theirs.
func TestShardedHistoryShardDown(t *testing.T) {
	srvs, addrs := startShards(t, 3)
	r := shardedForTest(t, Config{Addrs: addrs, DialTimeout: 500 * time.Millisecond})
	h := NewHistory(r, HistoryConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	streams := histStreams(10)
	first := make([]imcloud.HistoryAppend, len(streams))
	for i, s := range streams {
		first[i] = shardHistItem(s, 10)
	}
	require.NoError(t, h.Append(ctx, first))

	const down = 1
	srvs[down].Stop()
	var up, gone int
	for i, s := range streams {
		one := []imcloud.HistoryAppend{shardHistItem(s, 11)}
		err := h.Append(ctx, one)
		_, rerr := h.Read(ctx, s, imcloud.Position{Epoch: first[i].Epoch, Offset: 10}, 0)
		if r.shardOf(streamShardKey(s)) == down {
			gone++
			require.Error(t, err)
			assert.Contains(t, err.Error(), addrs[down], "the error names the stopped shard")
			require.Error(t, rerr)
			assert.Contains(t, rerr.Error(), addrs[down])
			continue
		}
		up++
		require.NoError(t, err, "stream %s is on a shard that is up", s)
		assert.Equal(t, first[i].Epoch, one[0].Epoch)
		got, err := h.Read(ctx, s, imcloud.Position{Epoch: first[i].Epoch, Offset: 10}, 0)
		require.NoError(t, err)
		assert.True(t, got.Complete)
		require.Len(t, got.Entries, 1)
		assert.Equal(t, one[0].Entry.ID, got.Entries[0].ID)
	}
	require.NotZero(t, up)
	require.NotZero(t, gone)

	// One Append over every shard: the live shards' groups are stored.
	batch := make([]imcloud.HistoryAppend, len(streams))
	for i, s := range streams {
		batch[i] = shardHistItem(s, 12)
	}
	err := h.Append(ctx, batch)
	require.Error(t, err)
	assert.Contains(t, err.Error(), addrs[down])
	for i, s := range streams {
		if r.shardOf(streamShardKey(s)) == down {
			continue
		}
		got, err := h.Last(ctx, s, 1)
		require.NoError(t, err)
		require.Len(t, got.Entries, 1)
		assert.Equal(t, batch[i].Entry.ID, got.Entries[0].ID, "stored on its live shard")
	}

	// The shard comes back empty; the same batch appended again (as job
	// retries it) is a no-op where it was stored and starts new epochs
	// where the data was lost.
	srvs[down].Start()
	require.NoError(t, h.Append(ctx, batch))
	for i, s := range streams {
		got, err := h.Read(ctx, s, imcloud.Position{Epoch: first[i].Epoch, Offset: 10}, 0)
		require.NoError(t, err)
		if r.shardOf(streamShardKey(s)) == down {
			assert.NotEqual(t, first[i].Epoch, batch[i].Epoch, "stream %s lost with its shard", s)
			assert.Equal(t, imcloud.ReasonEpochChanged, got.Reason)
			assert.Equal(t, batch[i].Epoch, got.Epoch)
			continue
		}
		assert.Equal(t, first[i].Epoch, batch[i].Epoch)
		assert.True(t, got.Complete)
		require.Len(t, got.Entries, 2, "11 and 12, once each")
		assert.Equal(t, batch[i].Entry.ID, got.Entries[1].ID)
	}
}

// testClusterHistory runs the history suite on a router over the Redis
// Cluster c with 3 shards, each shard's slot on a master of its own (so a
// script reaching another shard's key would fail: non local key), then
// checks that every history key is under its shard's prefix on its
// shard's master and that the streams spread over the masters.
func testClusterHistory(t *testing.T, c *testenv.RedisCluster) {
	const shards = 3
	slots := ownMasters(t, c, shards)
	var n atomic.Int64
	historytest.Run(t, func(t *testing.T, cfg historytest.Config) historytest.Harness {
		r := clusterForTest(t, c, Config{KeyPrefix: fmt.Sprintf("h%d:", n.Add(1)), ClusterShards: shards})
		h := NewHistory(r, HistoryConfig{MaxLen: cfg.MaxLen, MaxAge: cfg.MaxAge})
		return historytest.Harness{Store: h, Now: time.Now, Advance: time.Sleep}
	})

	r := clusterForTest(t, c, Config{KeyPrefix: "hs:", ClusterShards: shards})
	h := NewHistory(r, HistoryConfig{})
	var items []imcloud.HistoryAppend
	for i, s := range histStreams(30) {
		items = append(items, shardHistItem(s, int64(i)))
	}
	require.NoError(t, h.Append(context.Background(), items))
	for i, addr := range c.Addrs {
		for _, key := range keysOn(t, addr, "h*") {
			require.Regexp(t, `^hs?\d*:\{s`+strconv.Itoa(i)+`\}`, key, "key on master %d", i)
			require.Equal(t, slots[i], keySlot(key))
		}
		assert.NotEmpty(t, keysOn(t, addr, "hs:*histmeta:*"), "master %d holds streams", i)
	}
	for _, it := range items {
		key := "hs:" + r.names[r.shardOf(streamShardKey(it.Stream))] + "hist:{" + string(it.Stream) + "}"
		assert.Equal(t, int64(1), nodeDo(t, c.Addrs[r.shardOf(streamShardKey(it.Stream))], "EXISTS", key), key)
	}
}
