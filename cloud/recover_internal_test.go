package cloud

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/protocol"
)

func pushAtFrame(t *testing.T, op int32, offset int64, s imcloud.Stream, epoch, body string) []byte {
	t.Helper()
	b, ok := appendPushAtFrame(nil, op, offset, s, epoch, []byte(body))
	require.True(t, ok)
	return b
}

func plainFrame(op int32, body string) []byte {
	return protocol.AppendFrame(nil, &protocol.Frame{Ver: protocol.VerGoim, Op: op, Body: []byte(body)})
}

// TestOutqSplice: the replay goes in at the mark, after what was queued
// before it; live items after the mark pass through keep (dropped,
// rewritten or kept); the byte count follows.
func TestOutqSplice(t *testing.T) {
	q, shard := newTestQueue(true)
	q.pause()
	q.push(outItem{b: make([]byte, 10), kind: itemFrame}, 64, false, nil) // the AuthReply
	q.push(item(5), 64, false, nil)                                       // live: kept
	q.push(item(7), 64, false, nil)                                       // live: dropped
	q.push(item(9), 64, false, nil)                                       // live: rewritten to 3 bytes
	require.EqualValues(t, 31, q.bytes)

	ins := []outItem{item(20), {b: make([]byte, 4), kind: itemFrame}}
	ok := q.splice(1, ins, func(it outItem) (outItem, bool) {
		switch len(it.b) {
		case 7:
			return it, false
		case 9:
			return outItem{b: make([]byte, 3)}, true
		}
		return it, true
	})
	require.True(t, ok)
	var lens []int
	for _, it := range q.items {
		lens = append(lens, len(it.b))
	}
	assert.Equal(t, []int{10, 20, 4, 5, 3}, lens)
	assert.EqualValues(t, 42, q.bytes)
	assert.EqualValues(t, 42, shard.Load())
	assert.Equal(t, qReady, q.resume())

	dead, _ := newTestQueue(true)
	dead.kill()
	assert.False(t, dead.splice(0, ins, nil), "a dead queue takes nothing")
	assert.Empty(t, dead.items)
}

// TestOutqMarkFollowsDropOldest: with DropOldest, a push on a full
// paused queue drops the oldest push; one before the mark moves the mark
// with it, so a splice still inserts right after what was queued before
// the mark.
func TestOutqMarkFollowsDropOldest(t *testing.T) {
	q, _ := newTestQueue(true)
	q.pause()
	before1, before2, live1, live2 := item(1), item(2), item(3), item(4)
	q.push(before1, 3, true, nil)
	q.push(before2, 3, true, nil)
	q.mark()
	q.push(live1, 3, true, nil)
	res, _ := q.push(live2, 3, true, nil) // full: before1 goes
	require.Equal(t, pushDropped, res)
	replay := item(9)
	require.True(t, q.splice(0, []outItem{replay}, nil))
	var lens []int
	for _, it := range q.items {
		lens = append(lens, len(it.b))
	}
	assert.Equal(t, []int{2, 9, 3, 4}, lens, "the replay right after what the mark followed")
}

// TestOutqPauseUnderOwner: a queue paused while a writer owns it has the
// claim released at the next take, keeping its items; resume claims it
// again. A closing queue is still written.
func TestOutqPauseUnderOwner(t *testing.T) {
	q, _ := newTestQueue(true)
	_, start := q.push(item(10), 8, false, nil)
	require.Equal(t, qReady, start)
	q.mark()
	assert.Equal(t, 1, q.markAt)
	var spare []outItem
	_, ok, closeNow := q.take(&spare, maxWriteBytes)
	assert.False(t, ok, "paused: the owner takes nothing")
	assert.False(t, closeNow)
	assert.Equal(t, qIdle, q.state, "the claim is released")
	assert.Len(t, q.items, 1, "the items wait")
	assert.Equal(t, qReady, q.resume())
	batch, ok, _ := q.take(&spare, maxWriteBytes)
	require.True(t, ok)
	assert.Len(t, batch, 1)

	c, _ := newTestQueue(true)
	c.pause()
	c.close(false, nil, item(3))
	_, ok, _ = c.take(&spare, maxWriteBytes)
	assert.True(t, ok, "a closing queue flushes its last frames even paused")
}

// TestDropReplayed: live op 24 frames of a replayed stream at or below the
// reported position go, in items holding one frame or a room run of
// several; other streams, other epochs, later offsets and plain frames
// stay, in order.
func TestDropReplayed(t *testing.T) {
	u, r := imcloud.UserStream(42), imcloud.RoomStream("live://1")
	drop := map[string]imcloud.Position{string(u): {Epoch: "e1", Offset: 10}, string(r): {Epoch: "e2", Offset: 5}}

	at10 := pushAtFrame(t, 1000, 10, u, "e1", "old")
	at11 := pushAtFrame(t, 1000, 11, u, "e1", "new")
	otherEpoch := pushAtFrame(t, 1000, 3, u, "e9", "other epoch")
	room4 := pushAtFrame(t, 1001, 4, r, "e2", "room old")
	room6 := pushAtFrame(t, 1001, 6, r, "e2", "room new")
	other := pushAtFrame(t, 1000, 1, imcloud.UserStream(7), "e1", "not replayed")
	plain := plainFrame(1000, "plain")

	it, ok := dropReplayed(outItem{b: at10}, drop)
	assert.False(t, ok, "a single replayed frame: the item goes")
	it, ok = dropReplayed(outItem{b: at11}, drop)
	assert.True(t, ok)
	assert.Equal(t, at11, it.b)

	run := cat(room4, plain, room6, at10, otherEpoch, other, at11)
	it, ok = dropReplayed(outItem{b: run, at: 7}, drop)
	require.True(t, ok)
	assert.Equal(t, cat(plain, room6, otherEpoch, other, at11), it.b)
	assert.EqualValues(t, 7, it.at)

	it, ok = dropReplayed(outItem{b: cat(room4, at10)}, drop)
	assert.False(t, ok, "a run of replayed frames only: the item goes")
	it, ok = dropReplayed(outItem{b: plain}, drop)
	assert.True(t, ok)
	assert.Equal(t, plain, it.b)
	it, ok = dropReplayed(outItem{b: at10}, nil)
	assert.True(t, ok, "nothing to drop: kept")
	assert.Equal(t, at10, it.b)
}

// TestRoomRunRecFrames: a room run's op 24 variant is built only when
// asked for: none while no push carries a stream, plain frames for the
// pushes without one, op 24 frames for the others; and built once.
func TestRoomRunRecFrames(t *testing.T) {
	s, err := New(Config{Authenticator: DevAuthenticator()})
	require.NoError(t, err)
	room := imcloud.RoomStream("live://1")
	msg := func(body string, offset int64, stream imcloud.Stream) *imcloud.Message {
		return &imcloud.Message{Kind: imcloud.KindRoom, Room: "live://1", Op: 1000, Body: []byte(body),
			Stream: stream, Epoch: "e", Offset: offset}
	}
	p1, p2, p3 := plainFrame(1000, "a"), plainFrame(1000, "b"), plainFrame(1000, "c")
	a2 := pushAtFrame(t, 1000, 2, room, "e", "b")
	a3 := pushAtFrame(t, 1000, 3, room, "e", "c")

	var r roomRun
	r.add(s, msg("a", 0, ""), outItem{b: p1})
	assert.Nil(t, r.rv, "no variant while no push carries a stream")
	r.add(s, msg("b", 2, room), outItem{b: p2})
	r.add(s, msg("c", 3, room), outItem{b: p3})
	assert.Equal(t, cat(p1, p2, p3), r.frames)
	require.NotNil(t, r.rv)
	assert.Nil(t, r.rv.b, "nothing built before a recover connection asks")
	it, ok := r.rv.item()
	require.True(t, ok)
	assert.Equal(t, cat(p1, a2, a3), it.b)
	again, _ := r.rv.item()
	assert.Same(t, &it.b[0], &again.b[0], "built once")
	assert.Equal(t, plainFrame(1000, "a"), p1, "the first push's frame is not written over")

	var none *recVariant
	_, ok = none.item()
	assert.False(t, ok, "a push without a stream has no variant")
	long := imcloud.RoomStream("live://" + strings.Repeat("x", 300))
	_, ok = oneVariant(msg("d", 4, long), plainFrame(1000, "d"), 0).item()
	assert.False(t, ok, "a stream op 24 cannot name: the plain frame serves")
}

// historyFunc adapts a function to History.
type historyFunc func(imcloud.Stream, imcloud.Position, int) (imcloud.HistoryRead, error)

func (f historyFunc) Read(_ context.Context, s imcloud.Stream, since imcloud.Position, limit int) (imcloud.HistoryRead, error) {
	return f(s, since, limit)
}

// TestReadStreamDistrustsTheStore: entries a store returns expired, at or
// below the position, or out of order are not replayed; an expired last
// entry still moves the reported position; a read that is incomplete for
// another reason than trimming replays nothing.
func TestReadStreamDistrustsTheStore(t *testing.T) {
	past, future := time.Now().Add(-time.Second), time.Now().Add(time.Hour)
	read := imcloud.HistoryRead{Epoch: "e", Top: 9, Complete: true, Entries: []imcloud.HistoryEntry{
		{Offset: 3, Body: []byte("at the position")},
		{Offset: 5, Body: []byte("kept"), Expires: future},
		{Offset: 4, Body: []byte("out of order")},
		{Offset: 7, Body: []byte("kept too")},
		{Offset: 9, Body: []byte("expired"), Expires: past},
	}}
	var limit int
	s, err := New(Config{Authenticator: DevAuthenticator(), History: historyFunc(func(_ imcloud.Stream, _ imcloud.Position, l int) (imcloud.HistoryRead, error) {
		limit = l
		return read, nil
	})})
	require.NoError(t, err)
	c := &conn{srv: s}
	rs, entries := c.readStream("u:1", imcloud.Position{Epoch: "e", Offset: 3}, true)
	require.Len(t, entries, 2)
	assert.Equal(t, "kept", string(entries[0].Body))
	assert.Equal(t, "kept too", string(entries[1].Body))
	assert.Equal(t, protocol.RecoveryStream{Stream: "u:1", Epoch: "e", Offset: 9, Recovered: true, Replayed: 2}, rs)
	assert.Equal(t, imcloud.DefaultHistoryLen, limit)

	read.Complete, read.Reason = false, imcloud.ReasonUnknownPosition
	rs, entries = c.readStream("u:1", imcloud.Position{Epoch: "e", Offset: 3}, true)
	assert.Empty(t, entries)
	assert.Equal(t, protocol.RecoveryStream{Stream: "u:1", Epoch: "e", Offset: 9, Reason: imcloud.ReasonUnknownPosition}, rs)
}
