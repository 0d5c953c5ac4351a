package redis

import (
	"context"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func routerForTest(t *testing.T, cfg Config) *Router {
	t.Helper()
	r, err := NewRouter(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// userOn returns a user stream that r places on shard i.
func userOn(t *testing.T, r *Router, i int) imcloud.Stream {
	t.Helper()
	for mid := int64(1); mid < 1000; mid++ {
		if r.midShard(mid) == i {
			return imcloud.UserStream(mid)
		}
	}
	t.Fatalf("no user on shard %d", i)
	return ""
}

func appendOne(t *testing.T, h *History, s imcloud.Stream, off int64) string {
	t.Helper()
	items := []imcloud.HistoryAppend{shardHistItem(s, off)}
	require.NoError(t, h.Append(context.Background(), items))
	return items[0].Epoch
}

// TestHistoryStreamMovedBack moves a stream to another shard and back
// (addresses [A,B,C], then [A,B], then [A,B,C] again, each a restart
// with a new router): the pushes appended while it was away are not on
// its first shard, so a client positioned before them is told
// epoch_changed, not "nothing missed". A restart with the same list
// keeps the epochs.
func TestHistoryStreamMovedBack(t *testing.T) {
	_, addrs := startShards(t, 3)
	ctx := context.Background()
	three := shardedForTest(t, Config{Addrs: addrs})
	s := userOn(t, three, 2)
	e1 := appendOne(t, NewHistory(three, HistoryConfig{}), s, 10)

	two := NewHistory(shardedForTest(t, Config{Addrs: addrs[:2]}), HistoryConfig{})
	e2 := appendOne(t, two, s, 11)
	assert.NotEqual(t, e1, e2, "a new epoch on the stream's new shard")
	appendOne(t, two, s, 12)

	back := NewHistory(shardedForTest(t, Config{Addrs: addrs}), HistoryConfig{})
	e3 := appendOne(t, back, s, 13)
	got, err := back.Read(ctx, s, imcloud.Position{Epoch: e1, Offset: 10}, 0)
	require.NoError(t, err)
	assert.False(t, got.Complete, "11 and 12 are not on the stream's first shard")
	assert.Equal(t, imcloud.ReasonEpochChanged, got.Reason)
	assert.NotEqual(t, e1, e3)
	assert.Equal(t, e3, got.Epoch)

	// The same list again: nothing moved, every epoch is kept.
	again := NewHistory(shardedForTest(t, Config{Addrs: addrs}), HistoryConfig{})
	got, err = again.Read(ctx, s, imcloud.Position{Epoch: e3, Offset: 13}, 0)
	require.NoError(t, err)
	assert.True(t, got.Complete)
	assert.Equal(t, e3, appendOne(t, again, s, 14))
}

// TestHistoryShardedBackToOne moves from one Redis to two and back: the
// layout change is seen (the first Redis names the single instance's
// layout), so every stream starts over, and the streams that moved to the
// second Redis and came back start over again.
func TestHistoryShardedBackToOne(t *testing.T) {
	_, addrs := startShards(t, 2)
	ctx := context.Background()
	one := NewHistory(routerForTest(t, Config{Addr: addrs[0]}), HistoryConfig{})
	two := shardedForTest(t, Config{Addrs: addrs})
	moved, stayed := userOn(t, two, 1), userOn(t, two, 0)
	em, es := appendOne(t, one, moved, 10), appendOne(t, one, stayed, 10)

	h2 := NewHistory(two, HistoryConfig{})
	appendOne(t, h2, moved, 11)
	assert.NotEqual(t, es, appendOne(t, h2, stayed, 11), "a layout change seen: every stream starts over")

	back := NewHistory(routerForTest(t, Config{Addr: addrs[0]}), HistoryConfig{})
	got, err := back.Read(ctx, moved, imcloud.Position{Epoch: em, Offset: 10}, 0)
	require.NoError(t, err)
	assert.Equal(t, imcloud.ReasonEpochChanged, got.Reason, "11 is on the other Redis")
}

// TestHistoryUnstampedMetadata: metadata written without a layout stamp
// (by the release before it) keeps its epoch on one instance, and on the
// shard its Redis becomes in a first sharded layout; the streams that
// moved start over on their new shard.
func TestHistoryUnstampedMetadata(t *testing.T) {
	_, addrs := startShards(t, 2)
	ctx := context.Background()
	one := NewHistory(routerForTest(t, Config{Addr: addrs[0]}), HistoryConfig{})
	two := shardedForTest(t, Config{Addrs: addrs})
	moved, stayed := userOn(t, two, 1), userOn(t, two, 0)
	epochs := map[imcloud.Stream]string{}
	for _, s := range []imcloud.Stream{moved, stayed} {
		epochs[s] = appendOne(t, one, s, 10)
		nodeDo(t, addrs[0], "HDEL", "histmeta:{"+string(s)+"}", "layout")
	}
	nodeDo(t, addrs[0], "DEL", "histlayout")

	restarted := NewHistory(routerForTest(t, Config{Addr: addrs[0]}), HistoryConfig{})
	got, err := restarted.Read(ctx, stayed, imcloud.Position{Epoch: epochs[stayed], Offset: 10}, 0)
	require.NoError(t, err)
	assert.True(t, got.Complete, "one instance: nothing moved")
	nodeDo(t, addrs[0], "HDEL", "histmeta:{"+string(stayed)+"}", "layout")
	nodeDo(t, addrs[0], "DEL", "histlayout")

	h2 := NewHistory(two, HistoryConfig{})
	got, err = h2.Read(ctx, stayed, imcloud.Position{Epoch: epochs[stayed], Offset: 10}, 0)
	require.NoError(t, err)
	assert.True(t, got.Complete, "the stream stayed on its Redis")
	got, err = h2.Read(ctx, moved, imcloud.Position{Epoch: epochs[moved], Offset: 10}, 0)
	require.NoError(t, err)
	assert.Equal(t, imcloud.ReasonEpochChanged, got.Reason, "the stream moved")
}

// TestHistoryAppendKeepsStreamsWhole: when one script call of an Append
// fails (here a stream whose metadata key has the wrong type), no other
// call of the round trip holds later items of the same streams, so
// appending again once the cause is gone stores every item: none is taken
// for a redelivery. A stream longer than a call is sent in order, each
// chunk after the one before succeeded.
func TestHistoryAppendKeepsStreamsWhole(t *testing.T) {
	srv := testenv.StartRedis(t)
	h := NewHistory(routerForTest(t, Config{Addr: srv.Addr}), HistoryConfig{MaxAppendsPerCall: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bad, short, long := imcloud.UserStream(1), imcloud.UserStream(2), imcloud.UserStream(3)
	items := []imcloud.HistoryAppend{shardHistItem(bad, 1)}
	for off := range int64(4) {
		items = append(items, shardHistItem(short, 10+off))
	}
	for off := range int64(9) {
		items = append(items, shardHistItem(long, 20+off))
	}
	nodeDo(t, srv.Addr, "SET", "histmeta:{"+string(bad)+"}", "not a hash")
	require.Error(t, h.Append(ctx, items))

	nodeDo(t, srv.Addr, "DEL", "histmeta:{"+string(bad)+"}")
	require.NoError(t, h.Append(ctx, items))
	for s, n := range map[imcloud.Stream]int{bad: 1, short: 4, long: 9} {
		got, err := h.Last(ctx, s, 0)
		require.NoError(t, err)
		assert.True(t, got.Complete)
		assert.Len(t, got.Entries, n, "every push of %s", s)
		var want []imcloud.MessageID
		for _, it := range items {
			if it.Stream == s {
				want = append(want, it.Entry.ID)
				assert.Equal(t, got.Epoch, it.Epoch)
			}
		}
		var ids []imcloud.MessageID
		for _, e := range got.Entries {
			ids = append(ids, e.ID)
		}
		assert.Equal(t, want, ids, "%s in order", s)
	}
}

func TestAppendRounds(t *testing.T) {
	var items []imcloud.HistoryAppend
	for _, s := range []int64{1, 2, 2, 1, 3, 3, 3, 3, 3, 3, 4} {
		items = append(items, imcloud.HistoryAppend{Stream: imcloud.UserStream(s)})
	}
	assert.Equal(t, [][][]int{{{0, 3, 1, 2}, {4, 5, 6, 7}, {10}}, {{8, 9}}}, appendRounds(items, 4))
}
