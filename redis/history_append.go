package redis

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	redigo "github.com/gomodule/redigo/redis"
	"github.com/imcloud/imcloud"
)

// appendOn appends items on shard i (h.shards[i]) in script calls of at
// most MaxAppendsPerCall items, pipelined in one round trip, and sets
// their epochs.
//
// A stream's items are never split over two calls of one round trip: the
// calls of a pipeline can fail one by one (NOSCRIPT, BUSY, an error
// reply), and a later call of a stream that succeeded after an earlier
// one failed would make the earlier items, appended again, look like
// redeliveries (offsets at or below the stream's last), dropped for good.
// So the calls are packed by stream: each call carries whole streams, in
// the order they first appear. A stream with more items than fit in one
// call is sent in chunks, one per round trip, in order, each only after
// the round trip of the one before succeeded; the items of the rounds
// not sent are stored when the Append is retried.
func (h *History) appendOn(ctx context.Context, i int, items []imcloud.HistoryAppend) error {
	s := h.shards[i]
	if err := h.layout.ready(ctx, h.shards, i); err != nil {
		return err
	}
	now := h.now()
	for _, round := range appendRounds(items, h.perCall) {
		calls := make([][]any, len(round))
		for c, idx := range round {
			args := append(h.common(s, now), h.maxLen)
			for _, k := range idx {
				args = appendItemArgs(args, items[k], now)
			}
			calls[c] = args
		}
		replies, err := s.scriptReplies(ctx, histAppendScript, calls)
		for c, reply := range replies {
			if reply == nil {
				continue // the call failed: err says so
			}
			epochs, perr := redigo.Strings(reply, nil)
			if perr == nil && len(epochs) != len(round[c]) {
				perr = fmt.Errorf("%d epochs for %d items", len(epochs), len(round[c]))
			}
			if perr != nil {
				return fmt.Errorf("redis: history append: %w", perr)
			}
			for j, k := range round[c] {
				items[k].Epoch = epochs[j]
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// appendItemArgs appends the histAppendScript arguments of it to args:
// a zero Accepted is taken as now.
func appendItemArgs(args []any, it imcloud.HistoryAppend, now time.Time) []any {
	e := it.Entry
	acc := e.Accepted
	if acc.IsZero() {
		acc = now
	}
	var exp int64
	if !e.Expires.IsZero() {
		exp = max(e.Expires.UnixMilli(), 1)
	}
	return append(args, string(it.Stream), strconv.FormatInt(int64(it.Partition), 10),
		strconv.FormatInt(e.Offset, 10), e.ID[:], int64(e.Op), e.Body, acc.UnixMilli(), exp)
}

// appendRounds packs the indices of items into round trips of script
// calls of at most per items each: every call holds whole streams (in
// order of first appearance, each stream's items in order), except a
// stream of more than per items, whose n-th chunk of per goes in the n-th
// round trip.
func appendRounds(items []imcloud.HistoryAppend, per int) [][][]int {
	var order []imcloud.Stream
	byStream := make(map[imcloud.Stream][]int)
	for k, it := range items {
		if _, ok := byStream[it.Stream]; !ok {
			order = append(order, it.Stream)
		}
		byStream[it.Stream] = append(byStream[it.Stream], k)
	}
	var rounds [][][]int
	for _, st := range order {
		n := 0
		for chunk := range slices.Chunk(byStream[st], per) {
			if n == len(rounds) {
				rounds = append(rounds, nil)
			}
			calls := rounds[n]
			if last := len(calls) - 1; last >= 0 && len(calls[last])+len(chunk) <= per {
				calls[last] = append(calls[last], chunk...)
			} else {
				calls = append(calls, slices.Clone(chunk))
			}
			rounds[n] = calls
			n++
		}
	}
	return rounds
}
