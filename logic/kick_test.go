package logic_test

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// kicks drains the queue's records, each a KindKick of major 3, and
// returns them by partition key with their keys sorted.
func (e *env) kicks(t *testing.T) map[string]imcloud.Message {
	t.Helper()
	out := map[string]imcloud.Message{}
	for _, r := range e.drainRecords(t) {
		assert.Equal(t, imcloud.KindKick, r.msg.Kind)
		assert.Equal(t, byte(3), r.major, "a kick is major 3: an older job or cloud sets it aside")
		assert.Equal(t, logic.PartitionKey(&r.msg), r.key)
		sort.Strings(r.msg.Keys)
		_, dup := out[r.key]
		require.False(t, dup, "one kick per partition key: %s", r.key)
		out[r.key] = r.msg
	}
	return out
}

// TestKickMids: with history off a kick of users is resolved here into
// one KindKick per node, keyed by the node like that node's key pushes,
// carrying the reason.
func TestKickMids(t *testing.T) {
	e := newEnv(t, logic.Config{})
	res, err := e.p.Kick(context.Background(), logic.KickTarget{Mids: []int64{1, 2, 404}}, logic.WithReason("banned"))
	require.NoError(t, err)
	assert.False(t, res.ID.IsZero())
	assert.Equal(t, logic.KickResult{ID: res.ID, Connections: 3, Nodes: 2, Messages: 2}, res)
	got := e.kicks(t)
	require.Len(t, got, 2)
	assert.Equal(t, []string{"k1", "k3"}, got["node-a"].Keys)
	assert.Equal(t, []string{"k2"}, got["node-b"].Keys)
	for node, m := range got {
		assert.Equal(t, node, m.Node)
		assert.Equal(t, res.ID, m.ID)
		assert.Equal(t, "banned", m.Reason)
		assert.Empty(t, m.Mids)
		assert.Empty(t, m.Body)
		assert.True(t, m.Expires.IsZero(), "a kick never goes stale")
	}
	assert.EqualValues(t, 2, e.p.Stats().Messages)
	assert.Zero(t, e.p.Stats().Pushes, "a kick is not a push")
}

// TestKickKeys: a kick of keys targets the keys found, one KindKick per
// node; keys not online are nobody.
func TestKickKeys(t *testing.T) {
	e := newEnv(t, logic.Config{})
	res, err := e.p.Kick(context.Background(), logic.KickTarget{Keys: []string{"k1", "k3", "gone"}})
	require.NoError(t, err)
	assert.Equal(t, logic.KickResult{ID: res.ID, Connections: 2, Nodes: 1, Messages: 1}, res)
	got := e.kicks(t)
	assert.Equal(t, []string{"k1", "k3"}, got["node-a"].Keys)
	assert.Equal(t, "", got["node-a"].Reason, "no reason: the node says kicked")
}

// TestKickNobody: a kick of users or keys not online succeeds and
// publishes nothing (history off).
func TestKickNobody(t *testing.T) {
	e := newEnv(t, logic.Config{})
	for _, target := range []logic.KickTarget{{Mids: []int64{404}}, {Keys: []string{"gone"}}} {
		res, err := e.p.Kick(context.Background(), target)
		require.NoError(t, err)
		assert.Equal(t, logic.KickResult{ID: res.ID}, res)
	}
	assert.Zero(t, e.queue.Len())
}

// TestKickMidsHistoryOn: with history on a kick of users is one KindKick
// per distinct user, offline ones included, keyed by the user's stream
// like the user's pushes (so job meets it in order with them), each with
// an id of its own; the answer counts the connections found.
func TestKickMidsHistoryOn(t *testing.T) {
	e := newEnv(t, logic.Config{History: newHistory(t)})
	ctx := context.Background()
	_, err := e.p.PushMids(ctx, 1000, []int64{1}, []byte("before"))
	require.NoError(t, err)
	res, err := e.p.Kick(ctx, logic.KickTarget{Mids: []int64{1, 2, 1, 404}}, logic.WithReason("bye"))
	require.NoError(t, err)
	assert.Equal(t, logic.KickResult{ID: res.ID, Connections: 3, Nodes: 2, Messages: 3}, res)

	var push published
	var kicks []published
	for _, r := range e.drainRecords(t) {
		if r.msg.Kind == imcloud.KindMids {
			push = r
		} else {
			kicks = append(kicks, r)
		}
	}
	require.Len(t, kicks, 3)
	ids := map[imcloud.MessageID]bool{res.ID: true}
	for _, r := range kicks {
		assert.Equal(t, imcloud.KindKick, r.msg.Kind)
		assert.Equal(t, byte(3), r.major)
		require.Len(t, r.msg.Mids, 1)
		assert.Equal(t, string(imcloud.UserStream(r.msg.Mids[0])), r.key)
		assert.Equal(t, "", r.msg.Node)
		assert.Equal(t, "bye", r.msg.Reason)
		assert.False(t, ids[r.msg.ID], "each user's kick has an id of its own")
		ids[r.msg.ID] = true
		if r.msg.Mids[0] == 1 {
			assert.Equal(t, push.key, r.key, "user 1's kick follows user 1's push in one partition")
		}
	}
}

func TestPartitionKeyKick(t *testing.T) {
	assert.Equal(t, "node-a", logic.PartitionKey(&imcloud.Message{Kind: imcloud.KindKick, Node: "node-a", Keys: []string{"k"}}))
	assert.Equal(t, "u:42", logic.PartitionKey(&imcloud.Message{Kind: imcloud.KindKick, Mids: []int64{42}}))
}

// TestKickRevoke: WithRevoke writes the users' revocation before anything
// is published, kept for Config.RevokeTTL (24 h by default).
func TestKickRevoke(t *testing.T) {
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		want time.Duration
	}{{"default", 0, 24 * time.Hour}, {"configured", time.Hour, time.Hour}} {
		t.Run(tc.name, func(t *testing.T) {
			clk := &fakeClock{now: time.Unix(1700000000, 0)}
			mem := logic.NewMemoryRouter(logic.MemoryRouterConfig{Now: clk.Now})
			ctx := context.Background()
			require.NoError(t, mem.PutSessions(ctx, []imcloud.Session{{Mid: 1, Key: "k1", Node: "node-a", Gen: 1}}, 48*time.Hour))
			revokedFirst := false
			q := funcQueue{func(ctx context.Context, msgs []*imcloud.Message) error {
				got, err := mem.RevokedBefore(ctx, []int64{1, 2})
				revokedFirst = err == nil && len(got) == 2
				return nil
			}}
			e := newEnv(t, logic.Config{Router: mem, Queue: q, RevokeTTL: tc.ttl})
			before := time.Now()
			res, err := e.p.Kick(ctx, logic.KickTarget{Mids: []int64{1, 2}}, logic.WithRevoke())
			require.NoError(t, err)
			assert.Equal(t, 1, res.Messages)
			assert.True(t, revokedFirst, "revoked before the kick was published")
			got, err := mem.RevokedBefore(ctx, []int64{1, 2, 3})
			require.NoError(t, err)
			require.Len(t, got, 2)
			for _, at := range got {
				assert.False(t, at.Before(before.Truncate(time.Millisecond)))
				assert.False(t, at.After(time.Now()))
			}
			clk.Advance(tc.want - time.Second)
			got, _ = mem.RevokedBefore(ctx, []int64{1})
			assert.Len(t, got, 1, "kept for RevokeTTL")
			clk.Advance(2 * time.Second)
			got, _ = mem.RevokedBefore(ctx, []int64{1})
			assert.Empty(t, got, "gone after RevokeTTL")
		})
	}
}

// routerOnly is a Router and nothing more: no revocations.
type routerOnly struct{ logic.Router }

func TestKickRevokeUnsupported(t *testing.T) {
	e := newEnv(t, logic.Config{})
	p, err := logic.New(logic.Config{Router: routerOnly{e.router}, Queue: e.queue})
	require.NoError(t, err)
	defer p.Close()
	_, err = p.Kick(context.Background(), logic.KickTarget{Mids: []int64{1}}, logic.WithRevoke())
	require.ErrorIs(t, err, logic.ErrRevokeUnsupported)
	assert.Zero(t, e.queue.Len(), "nothing kicked")
	res, err := p.Kick(context.Background(), logic.KickTarget{Mids: []int64{1}})
	require.NoError(t, err, "a kick without revoke needs no Revoker")
	assert.Equal(t, 2, res.Messages)
}

// TestKickBadInput: every bad kick is ErrInvalidArgument, with nothing
// published and nothing revoked.
func TestKickBadInput(t *testing.T) {
	e := newEnv(t, logic.Config{})
	many := make([]int64, logic.MaxKickTargets+1)
	manyKeys := make([]string, logic.MaxKickTargets+1)
	for i := range many {
		many[i], manyKeys[i] = int64(i+1), "k1"
	}
	cases := []struct {
		name   string
		target logic.KickTarget
		opts   []logic.KickOption
	}{
		{"nothing", logic.KickTarget{}, nil},
		{"empty lists", logic.KickTarget{Mids: []int64{}, Keys: []string{}}, nil},
		{"both", logic.KickTarget{Mids: []int64{1}, Keys: []string{"k1"}}, nil},
		{"mid 0", logic.KickTarget{Mids: []int64{1, 0}}, []logic.KickOption{logic.WithRevoke()}},
		{"negative mid", logic.KickTarget{Mids: []int64{-1}}, nil},
		{"empty key", logic.KickTarget{Keys: []string{"k1", ""}}, nil},
		{"long key", logic.KickTarget{Keys: []string{strings.Repeat("k", 257)}}, nil},
		{"key with a newline", logic.KickTarget{Keys: []string{"k1\n"}}, nil},
		{"too many mids", logic.KickTarget{Mids: many}, []logic.KickOption{logic.WithRevoke()}},
		{"too many keys", logic.KickTarget{Keys: manyKeys}, nil},
		{"long reason", logic.KickTarget{Mids: []int64{1}}, []logic.KickOption{logic.WithReason(strings.Repeat("r", logic.MaxKickReason+1)), logic.WithRevoke()}},
		{"reason with a control character", logic.KickTarget{Mids: []int64{1}}, []logic.KickOption{logic.WithReason("a\x00b")}},
		{"reason not UTF-8", logic.KickTarget{Mids: []int64{1}}, []logic.KickOption{logic.WithReason("\xff")}},
		{"revoke by keys", logic.KickTarget{Keys: []string{"k1"}}, []logic.KickOption{logic.WithRevoke()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.p.Kick(context.Background(), tc.target, tc.opts...)
			require.ErrorIs(t, err, logic.ErrInvalidArgument)
			assert.Zero(t, e.queue.Len(), "nothing kicked")
			got, err := e.router.RevokedBefore(context.Background(), many)
			require.NoError(t, err)
			assert.Empty(t, got, "nothing revoked")
		})
	}
	_, err := e.p.Kick(context.Background(), logic.KickTarget{Mids: many[:logic.MaxKickTargets]},
		logic.WithReason(strings.Repeat("é", logic.MaxKickReason/2)))
	require.NoError(t, err, "at the bounds")
}

// TestKickRouterRebuilding: while the router rebuilds a kick fails like a
// push, publishing nothing.
func TestKickRouterRebuilding(t *testing.T) {
	e := newEnv(t, logic.Config{})
	e.router.Wipe()
	for _, target := range []logic.KickTarget{{Mids: []int64{1}}, {Keys: []string{"k1"}}} {
		_, err := e.p.Kick(context.Background(), target)
		require.ErrorIs(t, err, logic.ErrRouterRebuilding)
	}
	assert.Zero(t, e.queue.Len())
}

// TestKickFailures: a failed lookup is ErrRouter, a failed publish
// ErrQueue.
func TestKickFailures(t *testing.T) {
	e := newEnv(t, logic.Config{Router: failingRouter{logic.NewMemoryRouter(logic.MemoryRouterConfig{})}})
	_, err := e.p.Kick(context.Background(), logic.KickTarget{Mids: []int64{1}})
	require.ErrorIs(t, err, logic.ErrRouter)
	require.ErrorIs(t, err, errBackend)

	e = newEnv(t, logic.Config{Queue: funcQueue{func(context.Context, []*imcloud.Message) error { return errBackend }}})
	res, err := e.p.Kick(context.Background(), logic.KickTarget{Mids: []int64{1}})
	require.ErrorIs(t, err, logic.ErrQueue)
	assert.Equal(t, 2, res.Connections, "what was targeted")
	assert.Zero(t, res.Messages)
}

// TestKickAdmission: a kick holds its cost against the push budgets while
// it runs (a kick past the budget is ErrOverloaded), and Shutdown waits
// for it and refuses kicks after.
func TestKickAdmission(t *testing.T) {
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	e := newEnv(t, logic.Config{Queue: blockingQueue(started, release), MaxSmallPushCost: 2})
	done := make(chan error, 1)
	go func() {
		_, err := e.p.Kick(context.Background(), logic.KickTarget{Mids: []int64{1, 2}})
		done <- err
	}()
	<-started
	assert.EqualValues(t, 2, e.p.Stats().SmallCost)
	_, err := e.p.Kick(context.Background(), logic.KickTarget{Keys: []string{"k1"}})
	require.ErrorIs(t, err, logic.ErrOverloaded)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, e.p.Shutdown(ctx), context.DeadlineExceeded, "Shutdown waits for the kick")
	close(release)
	require.NoError(t, <-done)
	require.NoError(t, e.p.Shutdown(context.Background()))
	_, err = e.p.Kick(context.Background(), logic.KickTarget{Keys: []string{"k1"}})
	require.ErrorIs(t, err, logic.ErrClosed)
}
