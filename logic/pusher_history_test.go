package logic_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// published is one queue record as a consumer receives it.
type published struct {
	key   string
	major byte
	msg   imcloud.Message
}

// drainRecords returns every record in the queue, committed.
func (e *env) drainRecords(t *testing.T) []published {
	t.Helper()
	var out []published
	for e.queue.Len() > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		rec, err := e.queue.Receive(ctx)
		cancel()
		require.NoError(t, err)
		require.NoError(t, e.queue.Commit(context.Background(), rec.Partition, rec.Offset))
		p := published{key: string(rec.Key), major: rec.Value[0]}
		require.NoError(t, p.msg.UnmarshalBinary(rec.Value))
		out = append(out, p)
	}
	return out
}

// TestPushMidsHistoryOn: with history on, a mid push is one KindMids
// message (major 2) per distinct user, keyed by the user's stream,
// offline users included, and answers the connections online when it
// was accepted; mids of 0 or below name nobody.
func TestPushMidsHistoryOn(t *testing.T) {
	mem := logic.NewMemoryRouter(logic.MemoryRouterConfig{})
	ctx := context.Background()
	require.NoError(t, mem.PutSessions(ctx, []imcloud.Session{{Mid: 2, Key: "k2", Node: "node-a", Gen: 1}}, time.Minute))
	e := newEnv(t, logic.Config{Router: mem, History: newHistory(t), PushExpiry: time.Minute})
	res, err := e.p.PushMids(ctx, 1000, []int64{1, 404, 2, 1, 0, -3}, []byte("hi"))
	require.NoError(t, err)
	assert.False(t, res.ID.IsZero())
	assert.Equal(t, logic.Result{ID: res.ID, Nodes: 1, Keys: 1, Users: 3, Messages: 3, Offline: []int64{1, 404}}, res,
		"the answer counts the connections online at acceptance and lists the users offline; every user is published")

	recs := e.drainRecords(t)
	require.Len(t, recs, 3)
	byKey := map[string]imcloud.Message{}
	for _, r := range recs {
		assert.Equal(t, byte(2), r.major, "a KindMids message is major 2: an old job sets it aside")
		byKey[r.key] = r.msg
	}
	for _, mid := range []int64{1, 2, 404} {
		key := string(imcloud.UserStream(mid))
		m, ok := byKey[key]
		require.True(t, ok, "a message keyed %s (offline users too)", key)
		assert.Equal(t, imcloud.KindMids, m.Kind)
		assert.Equal(t, []int64{mid}, m.Mids)
		assert.Equal(t, res.ID.ForUser(mid), m.ID, "each user's message carries the push's id for that user: a node drops an id it has seen")
		assert.Equal(t, int32(1000), m.Op)
		assert.Equal(t, "hi", string(m.Body))
		assert.False(t, m.Accepted.IsZero())
		assert.WithinDuration(t, time.Now().Add(time.Minute), m.Expires, 5*time.Second)
		assert.Empty(t, m.Stream, "job places the push in its stream, not logic")
		assert.Empty(t, m.Node)
		assert.Empty(t, m.Keys)
	}

	res, err = e.p.PushMids(ctx, 1000, []int64{0, -1}, []byte("x"))
	require.NoError(t, err, "a push to nobody succeeds, as with history off")
	assert.Equal(t, logic.Result{ID: res.ID}, res)
	assert.Zero(t, e.queue.Len())
}

// TestPushHistoryOnOtherTargets: with history on, room, key and broadcast
// pushes are published as with history off.
func TestPushHistoryOnOtherTargets(t *testing.T) {
	e := newEnv(t, logic.Config{History: newHistory(t)})
	ctx := context.Background()
	_, err := e.p.PushRoom(ctx, 1000, "live://1", []byte("r"))
	require.NoError(t, err)
	res, err := e.p.PushKeys(ctx, 1000, []string{"k1", "k3"}, []byte("k"))
	require.NoError(t, err)
	assert.Equal(t, logic.Result{ID: res.ID, Nodes: 1, Keys: 2, Messages: 1}, res)
	_, err = e.p.Broadcast(ctx, 1000, []byte("b"), 0)
	require.NoError(t, err)
	keys := map[imcloud.Kind]string{}
	for _, r := range e.drainRecords(t) {
		assert.Equal(t, byte(1), r.major)
		keys[r.msg.Kind] = r.key
	}
	assert.Equal(t, map[imcloud.Kind]string{imcloud.KindRoom: "live://1", imcloud.KindKeys: "node-a",
		imcloud.KindBroadcast: logic.BroadcastKey}, keys)
}

func TestPartitionKeyMids(t *testing.T) {
	m := &imcloud.Message{Kind: imcloud.KindMids, Mids: []int64{42}}
	assert.Equal(t, "u:42", logic.PartitionKey(m))
	m.Mids = []int64{7, 42}
	assert.Equal(t, "u:7", logic.PartitionKey(m), "keyed by its first user")
}

// TestPushMidsHistoryOnBatches: a push to many users is published in
// batches, each within what one Publish may carry, every user once.
func TestPushMidsHistoryOnBatches(t *testing.T) {
	var (
		mu      sync.Mutex
		batches []int
		users   = map[int64]bool{}
	)
	q := funcQueue{func(_ context.Context, msgs []*imcloud.Message) error {
		mu.Lock()
		defer mu.Unlock()
		batches = append(batches, len(msgs))
		for _, m := range msgs {
			users[m.Mids[0]] = true
		}
		return nil
	}}
	e := newEnv(t, logic.Config{Queue: q, History: newHistory(t)})
	mids := make([]int64, 5000)
	for i := range mids {
		mids[i] = int64(i + 1)
	}
	res, err := e.p.PushMids(context.Background(), 1000, mids, nil)
	require.NoError(t, err)
	assert.Equal(t, 5000, res.Messages)
	assert.Equal(t, []int{4096, 904}, batches)
	assert.Len(t, users, 5000)
}

// TestPushMidsHistoryOnCost: with history on, a mid push copies its body
// into a message per user, and costs that much: 200 users and a 1 KiB
// body cost 400 (history off: 201).
func TestPushMidsHistoryOnCost(t *testing.T) {
	for _, tc := range []struct {
		history bool
		cost    int64
	}{{false, 201}, {true, 400}} {
		t.Run("history="+strconv.FormatBool(tc.history), func(t *testing.T) {
			started := make(chan struct{}, 10)
			release := make(chan struct{})
			cfg := logic.Config{Queue: blockingQueue(started, release), SmallPushCost: 100}
			if tc.history {
				cfg.History = newHistory(t)
			}
			e := newEnv(t, cfg)
			mids := make([]int64, 200)
			for i := range mids {
				mids[i] = int64(i + 1)
			}
			done := make(chan error, 1)
			go func() { _, err := e.p.PushMids(context.Background(), 1000, mids, make([]byte, 1024)); done <- err }()
			<-started
			assert.Equal(t, tc.cost, e.p.Stats().Cost)
			close(release)
			require.NoError(t, <-done)
		})
	}
}

func TestPusherHistoryArguments(t *testing.T) {
	ctx := context.Background()
	off := newEnv(t, logic.Config{})
	_, err := off.p.History(ctx, imcloud.UserStream(1), 10)
	require.ErrorIs(t, err, logic.ErrHistoryOff)
	_, err = off.p.History(ctx, "x:1", 10)
	require.ErrorIs(t, err, logic.ErrInvalidArgument, "bad input is bad input, history on or off")

	on := newEnv(t, logic.Config{History: newHistory(t)})
	for _, s := range []imcloud.Stream{"", "x:1", "u:0", "u:-1", "u:01", "r:", "r:nokey"} {
		_, err := on.p.History(ctx, s, 10)
		require.ErrorIs(t, err, logic.ErrInvalidArgument, "stream %q", s)
		require.ErrorIs(t, err, imcloud.ErrInvalidStream, "stream %q", s)
	}
	for _, n := range []int{-1, logic.MaxHistoryRead + 1} {
		_, err := on.p.History(ctx, imcloud.UserStream(1), n)
		require.ErrorIs(t, err, logic.ErrInvalidArgument, "n %d", n)
	}
	for _, n := range []int{0, 1, logic.MaxHistoryRead} {
		_, err := on.p.History(ctx, imcloud.RoomStream("live://1"), n)
		require.NoError(t, err, "n %d", n)
	}
}

// TestPusherHistory: History answers the last n pushes the store holds,
// oldest first, with the stream's epoch and top.
func TestPusherHistory(t *testing.T) {
	hist := newHistory(t)
	e := newEnv(t, logic.Config{History: hist})
	ctx := context.Background()
	var items []imcloud.HistoryAppend
	for off := int64(10); off < 160; off++ {
		items = append(items, imcloud.HistoryAppend{Stream: imcloud.UserStream(5), Entry: imcloud.HistoryEntry{
			Offset: off, ID: imcloud.NewMessageID(), Op: 1000, Body: []byte(strconv.FormatInt(off, 10)), Accepted: time.Now()}})
	}
	require.NoError(t, hist.Append(ctx, items))

	read, err := e.p.History(ctx, imcloud.UserStream(5), 0)
	require.NoError(t, err)
	assert.Equal(t, items[0].Epoch, read.Epoch)
	assert.Equal(t, int64(159), read.Top)
	require.Len(t, read.Entries, logic.DefaultHistoryRead)
	assert.Equal(t, int64(60), read.Entries[0].Offset, "the last 100, oldest first")
	assert.Equal(t, "159", string(read.Entries[99].Body))

	read, err = e.p.History(ctx, imcloud.UserStream(5), 3)
	require.NoError(t, err)
	require.Len(t, read.Entries, 3)
	assert.Equal(t, int64(157), read.Entries[0].Offset)

	read, err = e.p.History(ctx, imcloud.UserStream(6), 3)
	require.NoError(t, err)
	assert.Empty(t, read.Entries)
	assert.Equal(t, int64(-1), read.Top)
	assert.NotEmpty(t, read.Epoch)
}

// newHistory is a memory history with the default bounds.
func newHistory(*testing.T) *logic.MemoryHistory {
	return logic.NewMemoryHistory(logic.MemoryHistoryConfig{})
}

// TestPushMidsHistoryOnRouterDown: the answer's lookup failing fails the
// push (a rebuilding router answers 503), as with history off: nothing is
// published that the caller was told failed.
func TestPushMidsHistoryOnRouterDown(t *testing.T) {
	e := newEnv(t, logic.Config{Router: failingRouter{logic.NewMemoryRouter(logic.MemoryRouterConfig{})}, History: newHistory(t)})
	_, err := e.p.PushMids(context.Background(), 1000, []int64{1}, []byte("hi"))
	require.ErrorIs(t, err, logic.ErrRouter)
	assert.Zero(t, e.queue.Len())
}
