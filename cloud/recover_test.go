package cloud_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/logic"
	"github.com/imcloud/imcloud/protocol"
)

// journal plays job for the recovery tests: each push is appended to the
// history at the next offset of one queue partition (streams share it, so
// a stream's offsets grow with gaps), then delivered with its Stream,
// Epoch and Offset to the nodes given.
type journal struct {
	t    *testing.T
	h    *logic.MemoryHistory
	mu   sync.Mutex
	next int64
}

func newJournal(t *testing.T, cfg logic.MemoryHistoryConfig) *journal {
	return &journal{t: t, h: logic.NewMemoryHistory(cfg)}
}

// appendPush appends m (its Stream set) with a new id and sets its Epoch
// and Offset.
func (j *journal) appendPush(m *imcloud.Message) { j.appendAs(m, imcloud.NewMessageID()) }

// appendAs is appendPush with the message id given.
func (j *journal) appendAs(m *imcloud.Message, id imcloud.MessageID) {
	j.t.Helper()
	j.mu.Lock()
	defer j.mu.Unlock()
	m.ID = id
	if m.Accepted.IsZero() {
		m.Accepted = time.Now()
	}
	items := []imcloud.HistoryAppend{{Stream: m.Stream, Entry: imcloud.HistoryEntry{
		Offset: j.next, ID: m.ID, Op: m.Op, Body: m.Body, Accepted: m.Accepted, Expires: m.Expires}}}
	require.NoError(j.t, j.h.Append(context.Background(), items))
	m.Epoch, m.Offset = items[0].Epoch, j.next
	j.next++
}

// user appends a push to mid's stream and delivers it to key on each node.
func (j *journal) user(mid int64, key, body string, nodes ...*cloud.Server) *imcloud.Message {
	j.t.Helper()
	m := &imcloud.Message{Kind: imcloud.KindKeys, Keys: []string{key}, Op: 1000, Body: []byte(body), Stream: imcloud.UserStream(mid)}
	j.appendPush(m)
	for _, n := range nodes {
		mm := *m
		mm.Node = n.ID()
		require.NoError(j.t, n.Deliver(context.Background(), []*imcloud.Message{&mm}))
	}
	return m
}

// room appends a push to room's stream and delivers it to each node.
func (j *journal) room(room, body string, nodes ...*cloud.Server) *imcloud.Message {
	j.t.Helper()
	m := &imcloud.Message{Kind: imcloud.KindRoom, Room: room, Op: 1001, Body: []byte(body), Stream: imcloud.RoomStream(room)}
	j.appendPush(m)
	for _, n := range nodes {
		require.NoError(j.t, n.Deliver(context.Background(), []*imcloud.Message{m}))
	}
	return m
}

// readHook wraps a History: before and after each read it runs the hooks
// (a push delivered while the replay reads), and it counts reads by
// stream.
type readHook struct {
	cloud.History
	mu            sync.Mutex
	reads         map[imcloud.Stream]int
	before, after func(imcloud.Stream)
}

func (h *readHook) Read(ctx context.Context, s imcloud.Stream, since imcloud.Position, limit int) (imcloud.HistoryRead, error) {
	h.mu.Lock()
	if h.reads == nil {
		h.reads = map[imcloud.Stream]int{}
	}
	h.reads[s]++
	before, after := h.before, h.after
	h.mu.Unlock()
	if before != nil {
		before(s)
	}
	r, err := h.History.Read(ctx, s, since, limit)
	if after != nil {
		after(s)
	}
	return r, err
}

func (h *readHook) count(s imcloud.Stream) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reads[s]
}

func dialRecover(t *testing.T, network, addr string, mid int64, key, room string, positions map[string]client.Position) *client.Client {
	t.Helper()
	c, err := client.Dial(context.Background(), client.Config{Network: network, Addr: addr, Mid: mid, Key: key, Room: room,
		Recover: true, Positions: positions, Reconnect: true, BackoffMin: 100 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func nextRecovery(t *testing.T, c *client.Client) client.Recovery {
	t.Helper()
	select {
	case r := <-c.Recoveries():
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no recovery")
	}
	return client.Recovery{}
}

// expectPushes reads len(want) pushes and checks their bodies, streams
// and offsets, in order.
func expectPushes(t *testing.T, c *client.Client, want ...*imcloud.Message) {
	t.Helper()
	for i, m := range want {
		p := recvPush(t, c)
		require.Equal(t, string(m.Body), string(p.Body), "push %d of %d", i+1, len(want))
		assert.Equal(t, string(m.Stream), p.Stream)
		assert.Equal(t, m.Epoch, p.Epoch)
		assert.Equal(t, m.Offset, p.Offset)
		assert.Equal(t, m.Op, p.Op)
	}
}

// expectNoPush checks that nothing more arrives for a moment.
func expectNoPush(t *testing.T, c *client.Client) {
	t.Helper()
	select {
	case p := <-c.Messages():
		t.Fatalf("unexpected push %q (stream %s offset %d)", p.Body, p.Stream, p.Offset)
	case <-time.After(100 * time.Millisecond):
	}
}

func streamOf(r client.Recovery, s imcloud.Stream) protocol.RecoveryStream {
	for _, rs := range r.Streams {
		if rs.Stream == string(s) {
			return rs
		}
	}
	return protocol.RecoveryStream{}
}

// TestRecoverAcrossNodes: a recover client misses user and room pushes
// while away, reconnects to another node sharing the history and gets
// every missed push once, in order, then op 25 (recovered), then live
// pushes with no gap. The same client object reconnecting by itself
// (kicked, Reconnect) does the same.
func TestRecoverAcrossNodes(t *testing.T) {
	for _, network := range []string{"tcp", "ws"} {
		t.Run(network, func(t *testing.T) {
			j := newJournal(t, logic.MemoryHistoryConfig{})
			a := startNode(t, cloud.Config{History: j.h})
			b := startNode(t, cloud.Config{History: j.h})
			addr := func(n *node) string {
				if network == "ws" {
					return n.wsAddr
				}
				return n.tcpAddr
			}
			const mid, key, room = 42, "dev1", "live://1"
			c := dialRecover(t, network, addr(a), mid, key, room, nil)
			first := nextRecovery(t, c)
			require.Len(t, first.Streams, 2)
			assert.True(t, first.Recovered(), "first connect: nothing asked, recovered")
			assert.Zero(t, first.Replayed())

			seen := []*imcloud.Message{j.user(mid, key, "u1", a.srv), j.room(room, "r1", a.srv), j.user(mid, key, "u2", a.srv)}
			expectPushes(t, c, seen...)
			pos := c.Positions()
			assert.Equal(t, client.Position{Epoch: seen[2].Epoch, Offset: seen[2].Offset}, pos[string(imcloud.UserStream(mid))])
			require.NoError(t, c.Close())

			var missed []*imcloud.Message
			for i := range 5 {
				missed = append(missed, j.user(mid, key, fmt.Sprint("missed u", i), a.srv, b.srv))
				missed = append(missed, j.room(room, fmt.Sprint("missed r", i), a.srv, b.srv))
			}
			c2 := dialRecover(t, network, addr(b), mid, key, room, pos)
			// Replayed stream by stream: the user's first, then the room's.
			var wantOrder []*imcloud.Message
			for _, s := range []imcloud.Stream{imcloud.UserStream(mid), imcloud.RoomStream(room)} {
				for _, m := range missed {
					if m.Stream == s {
						wantOrder = append(wantOrder, m)
					}
				}
			}
			expectPushes(t, c2, wantOrder...)
			r := nextRecovery(t, c2)
			assert.True(t, r.Recovered())
			assert.Equal(t, 10, r.Replayed())
			u := streamOf(r, imcloud.UserStream(mid))
			assert.Equal(t, missed[8].Offset, u.Offset, "op 25 tells the last replayed position")
			live := []*imcloud.Message{j.user(mid, key, "live u", b.srv), j.room(room, "live r", b.srv)}
			expectPushes(t, c2, live...)
			expectNoPush(t, c2)
			st := b.srv.Stats()
			assert.EqualValues(t, 10, st.Replayed)
			assert.EqualValues(t, 2, st.Recoveries["recovered"])

			// The client reconnecting by itself: kicked, it comes back
			// with its positions.
			// (Replayed while the client waits out its backoff; were it
			// back already, live: either way once, in order.)
			b.srv.Kick(c2.Auth().Key, "test")
			select {
			case <-c2.Disconnects():
			case <-time.After(5 * time.Second):
				t.Fatal("no op 6")
			}
			gap := []*imcloud.Message{j.user(mid, key, "gap u", b.srv), j.room(room, "gap r", b.srv)}
			expectPushes(t, c2, gap...)
			r = nextRecovery(t, c2)
			assert.True(t, r.Recovered())
			expectNoPush(t, c2)
		})
	}
}

// TestRecoverLiveReplayRace: pushes delivered while the replay reads are
// buffered live and also in the read: each arrives once, in order, and
// the push appended after the read follows op 25.
func TestRecoverLiveReplayRace(t *testing.T) {
	j := newJournal(t, logic.MemoryHistoryConfig{})
	hook := &readHook{History: j.h}
	n := startNode(t, cloud.Config{History: hook})
	const mid, key, room = 7, "race", "live://race"
	c := dialRecover(t, "tcp", n.tcpAddr, mid, key, room, nil)
	nextRecovery(t, c)
	m0 := j.user(mid, key, "seen", n.srv)
	expectPushes(t, c, m0)
	pos := c.Positions()
	require.NoError(t, c.Close())
	waitFor(t, "the session to end", func() bool { return n.srv.Stats().Sessions == 0 })

	missed := j.user(mid, key, "missed", n.srv)
	var mu sync.Mutex // the hooks run on the connection's handshake
	var during, after []*imcloud.Message
	hook.mu.Lock()
	hook.before = func(s imcloud.Stream) {
		mu.Lock()
		defer mu.Unlock()
		if s == imcloud.UserStream(mid) && len(during) == 0 {
			during = append(during, j.user(mid, key, "during 1", n.srv), j.user(mid, key, "during 2", n.srv), j.room(room, "room during", n.srv))
		}
	}
	hook.after = func(s imcloud.Stream) {
		mu.Lock()
		defer mu.Unlock()
		if s == imcloud.RoomStream(room) && len(after) == 0 {
			after = append(after, j.user(mid, key, "after", n.srv))
		}
	}
	hook.mu.Unlock()
	c2 := dialRecover(t, "tcp", n.tcpAddr, mid, key, room, pos)
	waitFor(t, "the reads", func() bool { mu.Lock(); defer mu.Unlock(); return len(after) > 0 })
	mu.Lock()
	defer mu.Unlock()
	// The room push delivered during the user stream's read is in the
	// room stream's read: replayed, and its live copy dropped.
	expectPushes(t, c2, missed, during[0], during[1], during[2])
	r := nextRecovery(t, c2)
	assert.True(t, r.Recovered())
	assert.Equal(t, 4, r.Replayed())
	expectPushes(t, c2, after...)
	expectNoPush(t, c2)
}

// TestRecoverFirstConnect: with no positions nothing is replayed; op 25
// tells the streams' tops.
func TestRecoverFirstConnect(t *testing.T) {
	j := newJournal(t, logic.MemoryHistoryConfig{})
	n := startNode(t, cloud.Config{History: j.h})
	old := j.user(5, "k5", "before", n.srv)
	c := dialRecover(t, "tcp", n.tcpAddr, 5, "k5", "", nil)
	r := nextRecovery(t, c)
	require.Len(t, r.Streams, 1, "no room: the user stream only")
	u := r.Streams[0]
	assert.Equal(t, protocol.RecoveryStream{Stream: "u:5", Epoch: old.Epoch, Offset: old.Offset, Recovered: true}, u)
	live := j.user(5, "k5", "live", n.srv)
	expectPushes(t, c, live)
}

// TestRecoverTrimmedAndExpired: away longer than the history holds:
// recovered false (trimmed) and what it still holds arrives; a push
// expired meanwhile is not replayed and not missing.
func TestRecoverTrimmedAndExpired(t *testing.T) {
	j, n, pos := userGoneOffline(t, logic.MemoryHistoryConfig{MaxLen: 3})
	var missed []*imcloud.Message
	for i := range 5 {
		missed = append(missed, j.user(9, "k9", fmt.Sprint("m", i), n.srv))
	}
	c2 := dialRecover(t, "tcp", n.tcpAddr, 9, "k9", "", pos)
	expectPushes(t, c2, missed[2:]...)
	r := nextRecovery(t, c2)
	assert.Equal(t, protocol.RecoveryStream{Stream: "u:9", Epoch: missed[4].Epoch, Offset: missed[4].Offset, Reason: imcloud.ReasonTrimmed, Replayed: 3}, r.Streams[0])
	pos = c2.Positions()
	require.NoError(t, c2.Close())

	short := &imcloud.Message{Kind: imcloud.KindKeys, Keys: []string{"k9"}, Op: 1000, Body: []byte("expires"), Stream: imcloud.UserStream(9), Expires: time.Now().Add(50 * time.Millisecond)}
	j.appendPush(short)
	kept := j.user(9, "k9", "kept", n.srv)
	time.Sleep(100 * time.Millisecond)
	c3 := dialRecover(t, "tcp", n.tcpAddr, 9, "k9", "", pos)
	expectPushes(t, c3, kept)
	r = nextRecovery(t, c3)
	assert.True(t, r.Recovered(), "an expired push is not missing")
	assert.Equal(t, 1, r.Replayed())
}

// TestRecoverBadPositions: an unknown epoch, an offset from the future,
// a stream not followed: not recovered with the reason, never read,
// nothing replayed; malformed positions and 17 of them refuse the auth.
func TestRecoverBadPositions(t *testing.T) {
	j := newJournal(t, logic.MemoryHistoryConfig{})
	hook := &readHook{History: j.h}
	n := startNode(t, cloud.Config{History: hook})
	other := j.user(8, "k8", "not yours", n.srv)
	top := j.user(3, "k3", "top", n.srv)
	j.room("live://3", "room", n.srv)

	// A raw client: the Go client sends only the positions of the
	// streams it follows.
	rc := dialRaw(t, n.tcpAddr, false)
	rc.auth(2, mustJSON(t, map[string]any{"mid": 3, "key": "k3", "room_id": "live://3", "recover": true, "positions": map[string]client.Position{
		"u:3":        {Epoch: top.Epoch, Offset: top.Offset + 100},
		"r:live://3": {Epoch: "not-an-epoch", Offset: 0},
		"u:8":        {Epoch: other.Epoch, Offset: -1},
	}}))
	f := rc.nextOp(protocol.OpRecovery)
	assert.Equal(t, protocol.VerExtensions, f.ver)
	var r client.Recovery
	require.NoError(t, json.Unmarshal(f.body, &r))
	require.Len(t, r.Streams, 3)
	assert.Equal(t, imcloud.ReasonUnknownPosition, streamOf(r, "u:3").Reason)
	assert.Equal(t, top.Offset, streamOf(r, "u:3").Offset, "the client is told the stream's top")
	assert.Equal(t, imcloud.ReasonEpochChanged, streamOf(r, "r:live://3").Reason)
	assert.NotEqual(t, "not-an-epoch", streamOf(r, "r:live://3").Epoch)
	assert.Equal(t, imcloud.ReasonNotFollowed, streamOf(r, "u:8").Reason)
	assert.Zero(t, r.Replayed())
	assert.Zero(t, hook.count("u:8"), "a stream not followed is never read")
	assert.EqualValues(t, 1, n.srv.Stats().Recoveries[imcloud.ReasonNotFollowed])

	many := map[string]any{}
	for i := range 17 {
		many[fmt.Sprintf("u:%d", i+1)] = map[string]any{"epoch": "e", "offset": 1}
	}
	for name, positions := range map[string]any{
		"wrong types":  map[string]any{"u:3": map[string]any{"epoch": 1, "offset": "x"}},
		"not a map":    []int{1, 2},
		"17 positions": many,
	} {
		t.Run(name, func(t *testing.T) {
			rc := dialRaw(t, n.tcpAddr, false)
			body := fmt.Sprintf(`{"mid":3,"key":"bad","recover":true,"positions":%s}`, mustJSON(t, positions))
			require.NoError(t, rc.send(2, protocol.OpAuth, 1, []byte(body)))
			f := rc.nextOp(protocol.OpDisconnect)
			assert.Contains(t, string(f.body), `"auth"`)
			rc.expectClosed(t)
		})
	}
	t.Run("ignored without ver 2", func(t *testing.T) {
		rc := dialRaw(t, n.tcpAddr, false)
		body := fmt.Sprintf(`{"mid":3,"key":"v1","accepts":[1000],"recover":true,"positions":%s}`, mustJSON(t, many))
		rc.auth(1, body)
		j.user(3, "v1", "plain", n.srv)
		f, err := rc.next(5 * time.Second)
		require.NoError(t, err)
		assert.Equal(t, rawFrame{ver: 1, op: 1000, body: []byte("plain")}, f, "no op 25, no op 24: goim's frames")
	})
}

// TestRecoverChangeRoom: ChangeRoom with a position replays the new
// room's missed pushes after the reply, then op 25; a bare room key
// still works (op 25 with the stream's top).
func TestRecoverChangeRoom(t *testing.T) {
	j := newJournal(t, logic.MemoryHistoryConfig{})
	n := startNode(t, cloud.Config{History: j.h})
	ctx := context.Background()
	c := dialRecover(t, "ws", n.wsAddr, 11, "k11", "live://a", nil)
	nextRecovery(t, c)
	require.NoError(t, c.ChangeRoom(ctx, "live://b"))
	rb := nextRecovery(t, c)
	require.Len(t, rb.Streams, 1)
	assert.True(t, rb.Streams[0].Recovered)
	expectPushes(t, c, j.room("live://b", "b1", n.srv))

	require.NoError(t, c.ChangeRoom(ctx, "live://a"))
	nextRecovery(t, c)
	missed := []*imcloud.Message{j.room("live://b", "b2", n.srv), j.room("live://b", "b3", n.srv)}
	require.NoError(t, c.ChangeRoom(ctx, "live://b"))
	expectPushes(t, c, missed...)
	r := nextRecovery(t, c)
	assert.Equal(t, protocol.RecoveryStream{Stream: "r:live://b", Epoch: missed[1].Epoch, Offset: missed[1].Offset, Recovered: true, Replayed: 2}, r.Streams[0])
	expectPushes(t, c, j.room("live://b", "b4", n.srv))
	expectNoPush(t, c)
}

// TestRecoverOthersSeePlainFrames: pushes that carry a stream reach goim
// v1 clients and ver-2 clients without recover as the plain frames they
// always got, on TCP and WebSocket, room runs included.
func TestRecoverOthersSeePlainFrames(t *testing.T) {
	j := newJournal(t, logic.MemoryHistoryConfig{})
	n := startNode(t, cloud.Config{History: j.h})
	for _, isWS := range []bool{false, true} {
		for _, ver := range []int16{1, 2} {
			addr := n.tcpAddr
			if isWS {
				addr = n.wsAddr
			}
			key := fmt.Sprintf("plain-%v-%d", isWS, ver)
			rc := dialRaw(t, addr, isWS)
			rc.auth(ver, goimAuth(21, key, "live://p", 1000))
			j.user(21, key, "user push", n.srv)
			m1 := &imcloud.Message{Kind: imcloud.KindRoom, Room: "live://p", Op: 1001, Body: []byte("run 1"), Stream: imcloud.RoomStream("live://p")}
			m2 := &imcloud.Message{Kind: imcloud.KindRoom, Room: "live://p", Op: 1002, Body: []byte("run 2"), Stream: imcloud.RoomStream("live://p")}
			j.appendPush(m1)
			j.appendPush(m2)
			deliver(t, n.srv, m1, m2)
			for _, want := range []rawFrame{{ver: 1, op: 1000, body: []byte("user push")}, {ver: 1, op: 1001, body: []byte("run 1")}, {ver: 1, op: 1002, body: []byte("run 2")}} {
				f, err := rc.next(5 * time.Second)
				require.NoError(t, err)
				assert.Equal(t, want, f, "ws %v ver %d", isWS, ver)
			}
			_ = rc.nc.Close()
		}
	}
}

// TestRecoverWithoutHistory: a node without a history store tells a
// recover client every stream is unavailable, and still sends op 24.
func TestRecoverWithoutHistory(t *testing.T) {
	j := newJournal(t, logic.MemoryHistoryConfig{})
	n := startNode(t, cloud.Config{})
	c := dialRecover(t, "tcp", n.tcpAddr, 4, "k4", "", map[string]client.Position{"u:4": {Epoch: "e", Offset: 3}})
	r := nextRecovery(t, c)
	assert.Equal(t, []protocol.RecoveryStream{{Stream: "u:4", Epoch: "e", Offset: 3, Reason: imcloud.ReasonUnavailable}}, r.Streams)
	expectPushes(t, c, j.user(4, "k4", "live", n.srv))
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// TestRecoverRawBatch: an op 9 push of a stream reaches a recover client
// as one op 24 carrying the batch; the client surfaces each inner push
// with the stream's position, live and replayed.
func TestRecoverRawBatch(t *testing.T) {
	j := newJournal(t, logic.MemoryHistoryConfig{})
	n := startNode(t, cloud.Config{History: j.h})
	const room = "live://raw"
	batch := func(a, b string) *imcloud.Message {
		body := append(encodeRaw(1, 1000, 0, []byte(a)), encodeRaw(1, 1001, 0, []byte(b))...)
		m := &imcloud.Message{Kind: imcloud.KindRoom, Room: room, Op: protocol.OpRaw, Body: body, Stream: imcloud.RoomStream(room)}
		j.appendPush(m)
		return m
	}
	check := func(c *client.Client, m *imcloud.Message, bodies ...string) {
		t.Helper()
		for _, b := range bodies {
			p := recvPush(t, c)
			assert.Equal(t, b, string(p.Body))
			assert.Equal(t, m.Offset, p.Offset)
			assert.Equal(t, string(m.Stream), p.Stream)
		}
	}
	c := dialRecover(t, "ws", n.wsAddr, 30, "raw", room, nil)
	nextRecovery(t, c)
	live := batch("a", "b")
	deliver(t, n.srv, live)
	check(c, live, "a", "b")
	pos := c.Positions()
	require.NoError(t, c.Close())
	missed := batch("c", "d")
	c2 := dialRecover(t, "tcp", n.tcpAddr, 30, "raw", room, pos)
	check(c2, missed, "c", "d")
	assert.Equal(t, 1, nextRecovery(t, c2).Replayed())
}

// TestRecoverFirstConnectRace: at a first connect nothing is replayed,
// and a push delivered while the connection registered still arrives,
// after op 25, though op 25's top includes it.
func TestRecoverFirstConnectRace(t *testing.T) {
	j := newJournal(t, logic.MemoryHistoryConfig{})
	hook := &readHook{History: j.h}
	n := startNode(t, cloud.Config{History: hook})
	var mu sync.Mutex
	var racing *imcloud.Message
	hook.mu.Lock()
	hook.before = func(imcloud.Stream) {
		mu.Lock()
		defer mu.Unlock()
		if racing == nil {
			racing = j.user(12, "k12", "racing", n.srv)
		}
	}
	hook.mu.Unlock()
	c := dialRecover(t, "tcp", n.tcpAddr, 12, "k12", "", nil)
	r := nextRecovery(t, c)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, protocol.RecoveryStream{Stream: "u:12", Epoch: racing.Epoch, Offset: racing.Offset, Recovered: true}, r.Streams[0])
	expectPushes(t, c, racing)
	assert.Equal(t, client.Position{Epoch: racing.Epoch, Offset: racing.Offset}, c.Positions()["u:12"])
	expectNoPush(t, c)
}

// TestRecoverChangeRoomRaw: a recover connection's bare room key works
// (op 13, then op 25 with the stream's top); a body that starts like JSON
// and is not the documented object closes the connection.
func TestRecoverChangeRoomRaw(t *testing.T) {
	j := newJournal(t, logic.MemoryHistoryConfig{})
	n := startNode(t, cloud.Config{History: j.h})
	top := j.room("live://z", "before", n.srv)
	rc := dialRaw(t, n.wsAddr, true)
	rc.auth(2, `{"mid":13,"key":"k13","recover":true}`)
	rc.nextOp(protocol.OpRecovery)
	require.NoError(t, rc.send(2, protocol.OpChangeRoom, 5, []byte("live://z")))
	f := rc.nextOp(protocol.OpChangeRoomReply)
	assert.Equal(t, rawFrame{ver: 2, op: protocol.OpChangeRoomReply, seq: 5, body: []byte("live://z")}, f)
	f, err := rc.next(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, protocol.OpRecovery, f.op, "op 25 right after the reply")
	var r client.Recovery
	require.NoError(t, json.Unmarshal(f.body, &r))
	assert.Equal(t, []protocol.RecoveryStream{{Stream: "r:live://z", Epoch: top.Epoch, Offset: top.Offset, Recovered: true}}, r.Streams)

	require.NoError(t, rc.send(2, protocol.OpChangeRoom, 6, []byte(`{"room_id":`)))
	rc.expectClosed(t)
}

// TestRecoverRetriedPushOnce: a push retried with its idempotency key
// reaches the history twice (two queue records, two offsets, one id); a
// replay gives it once, as the nodes' dedup does live.
func TestRecoverRetriedPushOnce(t *testing.T) {
	j, n, pos := userGoneOffline(t, logic.MemoryHistoryConfig{})

	retried := j.user(9, "k9", "retried") // the user is offline: history only
	again := *retried
	j.appendAs(&again, retried.ID) // the retry: a second record, the same id
	after := j.user(9, "k9", "after")

	c2 := dialRecover(t, "tcp", n.tcpAddr, 9, "k9", "", pos)
	expectPushes(t, c2, retried, after)
	r := nextRecovery(t, c2)
	assert.True(t, r.Recovered())
	assert.Equal(t, 2, r.Replayed())
}

// TestRecoverLateLiveCopy: a push appended before the replay read but
// delivered live only after the connection resumed (job resolving the
// user late) is not given twice; the next push goes through.
func TestRecoverLateLiveCopy(t *testing.T) {
	j, n, pos := userGoneOffline(t, logic.MemoryHistoryConfig{})

	late := j.user(9, "k9", "late") // in the history; its live copy comes later
	c2 := dialRecover(t, "tcp", n.tcpAddr, 9, "k9", "", pos)
	expectPushes(t, c2, late)
	require.True(t, nextRecovery(t, c2).Recovered())

	mm := *late
	mm.Node = n.srv.ID()
	require.NoError(t, n.srv.Deliver(context.Background(), []*imcloud.Message{&mm}))
	next := j.user(9, "k9", "next", n.srv)
	expectPushes(t, c2, next)
	expectNoPush(t, c2)
}

// userGoneOffline starts a node over a memory history (cfg) with user 9 (key
// k9) connected as a recover client that saw one push and left; it
// returns the positions the client held.
func userGoneOffline(t *testing.T, cfg logic.MemoryHistoryConfig) (*journal, *node, map[string]client.Position) {
	t.Helper()
	j := newJournal(t, cfg)
	n := startNode(t, cloud.Config{History: j.h})
	c := dialRecover(t, "tcp", n.tcpAddr, 9, "k9", "", nil)
	nextRecovery(t, c)
	expectPushes(t, c, j.user(9, "k9", "seen", n.srv))
	pos := c.Positions()
	require.NoError(t, c.Close())
	return j, n, pos
}
