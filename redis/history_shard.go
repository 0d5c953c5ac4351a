package redis

import (
	"context"
	"strconv"

	"github.com/imcloud/imcloud"
)

// History over a sharded Router (several addresses, or the hash-tag
// shards of a Redis Cluster): each stream lives on one shard, so that the
// history's load spreads over the shards as the routes' does instead of
// landing on one Redis (with recovery on, every push to a user or a room
// is appended). A user's stream ("u:42") lives on the user's shard, with
// its routes (midShard); a room's ("r:live://1") on the shard the
// router's rendezvous hashing gives its name. Keeping a user's stream with
// its routes keeps a shard's failure to that shard's users: a push to a
// user on a down shard already fails at its lookup, before the queue, so
// job never holds a partition for such a user's stream, while a push to a
// user on a live shard finds its stream there too.
//
// A stream's keys (its entries and its metadata: epoch, partition, last
// offset, what was trimmed) all live on its shard, under the shard's key
// prefix, and every script call runs on one shard over that shard's keys
// (in a Cluster: one slot, the shard's prefix declared as KEYS[1]), as on
// one Redis. So each shard behaves as one Redis does: a shard that lost
// its data gives its streams new epochs at their next read or append, and
// the other shards' streams keep theirs.
//
// Append groups its items by shard (keeping their order within each
// stream) and sends each group to its shard, all at once: one round trip
// per shard (one script call per MaxAppendsPerCall items, a stream never
// split over two calls of a round trip: history_append.go), the call's
// latency its slowest shard's. It fails when any
// shard failed, with an error naming each that did; the groups of the
// shards that answered are stored, and appending the same items again
// (job does, until the call succeeds) is a no-op for those. Read and Last
// go to the stream's shard alone. With a shard down, the streams of the
// other shards are appended and read as usual, and those of the down
// shard fail as they would on one Redis that is down.
//
// Where a stream lives depends on the shard names (the address list, or
// ClusterShards), like everything else of the sharded router: changing
// them moves the streams of the shards added or removed. The first
// History of the new layout sees the change on the shards that were in
// the previous one and stamps every shard, so every stream starts over
// under a new epoch (its clients are told epoch_changed), including a
// stream that moved away and back, whose old shard still held its old
// metadata (history_layout.go). A restart with the same names keeps the
// epochs.

// streamShardKey is stream s's shard key: a user stream's mid, the key
// of the user's routes (midShard), or a room stream's name.
func streamShardKey(s imcloud.Stream) string {
	if mid, ok := s.Mid(); ok {
		return strconv.FormatInt(mid, 10)
	}
	return string(s)
}

// shardedAppend appends items, each on its stream's shard, and sets their
// epochs.
func (h *History) shardedAppend(ctx context.Context, items []imcloud.HistoryAppend) error {
	r := h.r
	at := make([]int, len(items)) // the items' indices, grouped by shard
	for i := range at {
		at[i] = i
	}
	groups := group(len(r.shards), at, func(i int) int { return r.shardOf(streamShardKey(items[i].Stream)) })
	return onGroups(ctx, r, groups, func(shard int, _ *Router, g []int) error {
		part := make([]imcloud.HistoryAppend, len(g))
		for j, i := range g {
			part[j] = items[i]
		}
		err := h.appendOn(ctx, shard, part)
		for j, i := range g {
			items[i].Epoch = part[j].Epoch // each goroutine writes its own items
		}
		return err
	})
}
