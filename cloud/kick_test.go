package cloud_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/internal/link"
)

func kickMsg(reason string, keys ...string) *imcloud.Message {
	return &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKick, Node: "n", Keys: keys, Reason: reason}
}

// readUntilEnd reads c until the connection ends: the pushes' bodies and
// the op 6 bodies, in order, and the WebSocket close frame if one came.
func readUntilEnd(t *testing.T, c *goimClient) (frames []string, closed *wsutil.ClosedError) {
	t.Helper()
	for {
		f, err := c.next(5 * time.Second)
		if err != nil {
			var ce wsutil.ClosedError
			if errors.As(err, &ce) {
				closed = &ce
			}
			require.NotContains(t, err.Error(), "timeout", "the kicked connection was not closed")
			return frames, closed
		}
		switch {
		case f.op == 6:
			frames = append(frames, "op6 "+string(f.body))
		case f.op >= 1000:
			frames = append(frames, string(f.body))
		}
	}
}

// TestKickFromTheQueue: a kick delivered with pushes around it leaves the
// pushes before it written first, then op 6 with its reason (ver 2 only;
// on WebSocket a close 1001), then the close; the pushes after it, and
// room pushes to the connection's room, never reach it.
func TestKickFromTheQueue(t *testing.T) {
	n := startNode(t, cloud.Config{})
	for _, transport := range []string{"tcp", "ws"} {
		for _, ver := range []int16{1, 2} {
			t.Run(fmt.Sprint(transport, "/ver", ver), func(t *testing.T) {
				isWS := transport == "ws"
				addr := n.tcpAddr
				if isWS {
					addr = n.wsAddr
				}
				c := dialRaw(t, addr, isWS)
				key := fmt.Sprint("kick-", transport, ver)
				c.auth(ver, goimAuth(9, key, "live://kick", 1000))
				before := n.srv.Stats()

				var msgs []*imcloud.Message
				var want []string
				for i := 0; i < 100; i++ {
					msgs = append(msgs, keysMsg(1000, fmt.Sprint("before-", i), key))
					want = append(want, fmt.Sprint("before-", i))
				}
				msgs = append(msgs, kickMsg("banned", key, "not-here"),
					keysMsg(1000, "after", key), roomMsg("live://kick", 1000, "room after"))
				deliver(t, n.srv, msgs...)
				if ver == 2 {
					want = append(want, `op6 {"reason":"banned","reconnect_ms":0,"kick":true}`)
				}
				got, closed := readUntilEnd(t, c)
				require.Equal(t, want, got)
				if isWS && ver == 2 {
					require.NotNil(t, closed)
					assert.Equal(t, ws.StatusGoingAway, closed.Code)
					assert.Equal(t, "banned", closed.Reason)
				}
				s := n.srv.Stats()
				assert.Equal(t, before.Kicked+1, s.Kicked, "one connection kicked, the unknown key ignored")
				assert.Equal(t, before.RoomMisses+1, s.RoomMisses, "the room had no member after the kick")
				waitFor(t, "session gone", func() bool { return n.srv.Stats().Sessions == 0 })
			})
		}
	}
}

// TestKickDefaultReasonAndDedup: a kick without a reason says "kicked";
// a kick redelivered (its id seen) is dropped as a duplicate; a kick by
// mids that reaches a node is invalid and closes nothing; a kick of keys
// the node does not hold does nothing.
func TestKickDefaultReasonAndDedup(t *testing.T) {
	n := startNode(t, cloud.Config{})
	a := dialRaw(t, n.tcpAddr, false)
	a.auth(2, goimAuth(1, "a", ""))
	b := dialRaw(t, n.tcpAddr, false)
	b.auth(2, goimAuth(2, "b", ""))

	deliver(t, n.srv, kickMsg("", "nobody"), &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKick, Mids: []int64{1, 2}})
	s := n.srv.Stats()
	assert.Zero(t, s.Kicked)
	assert.Equal(t, uint64(1), s.Invalid, "a kick by mids is job's to resolve")
	assert.Equal(t, int64(2), s.Sessions)

	ka := kickMsg("", "a")
	kb := *ka
	kb.Keys = []string{"b"}
	deliver(t, n.srv, ka, &kb)
	assert.Equal(t, []string{`op6 {"reason":"kicked","reconnect_ms":0,"kick":true}`}, first(readUntilEnd(t, a)))
	s = n.srv.Stats()
	assert.Equal(t, uint64(1), s.Kicked)
	assert.Equal(t, uint64(1), s.Duplicates)
	waitFor(t, "a's session gone, b's still there", func() bool { return n.srv.Stats().Sessions == 1 })
	deliver(t, n.srv, kickMsg("", "b"))
	assert.Equal(t, []string{`op6 {"reason":"kicked","reconnect_ms":0,"kick":true}`}, first(readUntilEnd(t, b)))
}

func first[A, B any](a A, _ B) A { return a }

// TestKickLibraryCallsKeepQueuedPushes: Server.Kick and KickMid take the
// same path: what was queued for the connection is written before op 6.
func TestKickLibraryCallsKeepQueuedPushes(t *testing.T) {
	n := startNode(t, cloud.Config{})
	a := dialRaw(t, n.wsAddr, true)
	a.auth(2, goimAuth(3, "lib-a", "", 1000))
	b := dialRaw(t, n.tcpAddr, false)
	b.auth(2, goimAuth(4, "lib-b", "", 1000))
	var pa, pb []*imcloud.Message
	var want []string
	for i := 0; i < 50; i++ {
		pa = append(pa, keysMsg(1000, fmt.Sprint(i), "lib-a"))
		pb = append(pb, keysMsg(1000, fmt.Sprint(i), "lib-b"))
		want = append(want, fmt.Sprint(i))
	}
	deliver(t, n.srv, pa...)
	n.srv.Kick("lib-a", "bye")
	deliver(t, n.srv, pb...)
	n.srv.KickMid(4, "")
	got, closed := readUntilEnd(t, a)
	assert.Equal(t, append(want, `op6 {"reason":"bye","reconnect_ms":0,"kick":true}`), got)
	require.NotNil(t, closed)
	got, _ = readUntilEnd(t, b)
	assert.Equal(t, append(want, `op6 {"reason":"kicked","reconnect_ms":0,"kick":true}`), got)
	assert.Equal(t, uint64(2), n.srv.Stats().Kicked)
}

// TestKickedClientThatDoesNotRead: a kicked client that reads nothing is
// closed anyway, and its session leaves the store even though it kept
// sending frames (a Sub puts the session again) until the close.
func TestKickedClientThatDoesNotRead(t *testing.T) {
	store := newFakeStore()
	n := startNode(t, cloud.Config{Store: store, QueueLength: 1 << 16, InboundRate: -1})
	c := dialRaw(t, n.tcpAddr, false)
	c.auth(2, goimAuth(5, "stuck", "", 1000))
	waitFor(t, "session stored", func() bool { _, ok := store.session("stuck"); return ok })

	big := string(make([]byte, 64<<10))
	for i := 0; i < 256; i++ { // 16 MiB: more than the socket buffers take
		deliver(t, n.srv, keysMsg(1000, big, "stuck"))
	}
	stop := make(chan struct{})
	var subs atomic.Int64
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if c.send(1, 14, 1, []byte("1001")) != nil {
				return
			}
			subs.Add(1)
			time.Sleep(5 * time.Millisecond) // pacing, not synchronization
		}
	}()
	waitFor(t, "Subs flowing", func() bool { return subs.Load() >= 3 })
	deliver(t, n.srv, kickMsg("stuck", "stuck"))
	waitFor(t, "closed although it read nothing", func() bool { return n.srv.Stats().Conns == 0 })
	close(stop)
	<-sent
	waitFor(t, "session removed", func() bool { _, ok := store.session("stuck"); return !ok })
	storeRound(t, n) // a put after the removal is written by now
	_, ok := store.session("stuck")
	assert.False(t, ok, "the session is not put back")
}

// TestKickOfANewerVersionOverTheLink: a node meeting a message of a newer
// major version than it reads (a kick from a newer release: simulated
// with MessageMajor+1) refuses the whole delivery with the decoding error,
// which job recognises (it then skips that message): nothing of it is
// delivered, as a push or otherwise; a kick this node reads goes through.
func TestKickOfANewerVersionOverTheLink(t *testing.T) {
	n := startNode(t, cloud.Config{})
	c := dialRaw(t, n.tcpAddr, false)
	c.auth(2, goimAuth(6, "v", "", 1000))
	lc := dialLink(t, n.linkAddr)
	_, err := lc.connect("s3cret", link.Version)
	require.NoError(t, err)

	newer := kickMsg("future", "v").AppendBinary(nil)
	require.EqualValues(t, imcloud.MessageMajor, newer[0])
	newer[0] = imcloud.MessageMajor + 1
	var body []byte
	body = binary.AppendUvarint(body, 2)
	push := keysMsg(1000, "with it", "v").AppendBinary(nil)
	for _, enc := range [][]byte{push, newer} {
		body = binary.AppendUvarint(body, uint64(len(enc)))
		body = append(body, enc...)
	}
	lc.raw(t, 1, body)
	seq, reason := lc.ack(t)
	require.Equal(t, int32(1), seq)
	require.Contains(t, reason, imcloud.ErrNewerVersion.Error())
	s := n.srv.Stats()
	require.Zero(t, s.Kicked)
	require.Equal(t, int64(1), s.Sessions)

	lc.deliver(t, 2, keysMsg(1000, "then", "v"), kickMsg("now", "v"))
	seq, reason = lc.ack(t)
	require.Equal(t, int32(2), seq)
	require.Empty(t, reason)
	got, _ := readUntilEnd(t, c)
	require.Equal(t, []string{"then", `op6 {"reason":"now","reconnect_ms":0,"kick":true}`}, got, "nothing of the refused delivery")
}
