package logic

import (
	"context"
	"fmt"

	"github.com/imcloud/imcloud"
)

// With history on (Config.History), a push to mids belongs to each user's
// stream (docs/design.md, recovery). logic publishes one KindMids message
// per user, keyed by the user's stream (PartitionKey), so the queue's
// offset is the push's position in that stream, and job appends it to the
// user's history before resolving the user's connections. A user who is
// offline is published to all the same: the push waits in the history
// for the user's next connection.
//
// logic still looks the users up first, for the answer only: Keys and
// Nodes count the connections the users had when the push was accepted
// (as with history off, so the push API's answer keeps its meaning), and
// a router that is rebuilding fails the push with ErrRouterRebuilding
// rather than report online users as offline. Delivery does not depend on
// it: job resolves the users again after the append, so a connection that
// appeared in between gets the push too.

var _ History = (*MemoryHistory)(nil)

// usersBatch is how many per-user messages one Queue.Publish carries: a
// push to many users is published in batches, well within what one
// Publish may hold (MemoryQueue's Capacity, kafka.MaxPendingRecords).
const usersBatch = 4096

// publishUsers publishes base to each distinct positive mid of mids as a
// KindMids message of its own. Mids of 0 or below name nobody (no user
// stream, never online) and are skipped. On a Queue failure the Result
// counts the messages published before it.
func (p *Pusher) publishUsers(ctx context.Context, base imcloud.Message, mids []int64) (Result, error) {
	routes, offline, err := p.lookupUsers(ctx, mids)
	if err != nil {
		return Result{ID: base.ID}, wrapErr(ErrRouter, err)
	}
	users := distinctUsers(mids)
	res := Result{ID: base.ID, Users: len(users), Keys: len(routes), Offline: offline}
	if len(routes) > 0 {
		nodes := make(map[string]struct{}, 2)
		for _, node := range routes {
			nodes[node] = struct{}{}
		}
		res.Nodes = len(nodes)
	}
	base.Kind = imcloud.KindMids
	ms := make([]imcloud.Message, len(users))
	msgs := make([]*imcloud.Message, len(users))
	for i := range users {
		ms[i] = base
		// Each user's copy its own id: job makes per-node messages of
		// each, and a node drops an id it has seen (ForUser).
		ms[i].ID = base.ID.ForUser(users[i])
		ms[i].Mids = users[i : i+1 : i+1]
		msgs[i] = &ms[i]
	}
	for len(msgs) > 0 {
		n := min(len(msgs), usersBatch)
		if err := p.queue.Publish(ctx, msgs[:n]); err != nil {
			return res, wrapErr(ErrQueue, err)
		}
		res.Messages += n
		msgs = msgs[n:]
	}
	return res, nil
}

// distinctUsers returns the positive mids of mids, each once, in their
// first order; mids itself when it is one positive mid.
func distinctUsers(mids []int64) []int64 {
	if len(mids) == 1 && mids[0] > 0 {
		return mids
	}
	seen := make(map[int64]struct{}, len(mids))
	out := make([]int64, 0, len(mids))
	for _, mid := range mids {
		if _, dup := seen[mid]; dup || mid <= 0 {
			continue
		}
		seen[mid] = struct{}{}
		out = append(out, mid)
	}
	return out
}

// Bounds of Pusher.History's n.
const (
	// DefaultHistoryRead is how many pushes History returns when asked
	// for 0.
	DefaultHistoryRead = 100
	// MaxHistoryRead is the most History returns at once: a stream's
	// whole history at the default bound.
	MaxHistoryRead = imcloud.DefaultHistoryLen
)

// History returns the last n pushes of stream that its history holds,
// oldest first and none expired, with the stream's epoch and the offset
// of its last push (Top, -1 if none): the backlog a late joiner or an
// application renders. A push is there once job appended it, shortly
// after the Queue accepted it. n 0 means DefaultHistoryRead; a negative
// n or one over MaxHistoryRead is ErrInvalidArgument, and so is an
// invalid stream (wrapping imcloud.ErrInvalidStream). A Pusher without
// Config.History answers ErrHistoryOff; a failed read is ErrHistory
// wrapping the store's error. The read runs on the caller's goroutine,
// under ctx, like the online queries.
func (p *Pusher) History(ctx context.Context, stream imcloud.Stream, n int) (imcloud.HistoryRead, error) {
	if n == 0 {
		n = DefaultHistoryRead
	}
	if n < 0 || n > MaxHistoryRead {
		return imcloud.HistoryRead{}, fmt.Errorf("%w: history of %d pushes (1 to %d)", ErrInvalidArgument, n, MaxHistoryRead)
	}
	if err := stream.Validate(); err != nil {
		return imcloud.HistoryRead{}, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	if p.history == nil {
		return imcloud.HistoryRead{}, ErrHistoryOff
	}
	read, err := p.history.Last(ctx, stream, n)
	if err != nil {
		return imcloud.HistoryRead{}, wrapErr(ErrHistory, err)
	}
	return read, nil
}
