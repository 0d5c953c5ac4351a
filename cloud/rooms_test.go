package cloud_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/protocol"
)

// roomReply is the JSON body of ops 19 and 21, and of a refused
// ChangeRoom's op 13, as docs/protocol.md describes it.
type roomReply struct {
	RoomID string `json:"room_id"`
	OK     bool   `json:"ok"`
	Error  string `json:"error"`
}

// request sends op with body (ver 2) and returns the reply, op+1 with the
// same seq: the next frame that is not a push.
func (c *goimClient) request(op, seq int32, body string) rawFrame {
	c.t.Helper()
	require.NoError(c.t, c.send(2, op, seq, []byte(body)))
	for {
		f, err := c.next(5 * time.Second)
		require.NoError(c.t, err, "waiting for the reply to op %d", op)
		if f.op >= protocol.OpPushMin {
			continue
		}
		require.Equal(c.t, op+1, f.op, "reply op")
		require.Equal(c.t, seq, f.seq, "reply seq")
		return f
	}
}

// roomRequest is request for ops with a JSON reply.
func (c *goimClient) roomRequest(op, seq int32, body string) roomReply {
	c.t.Helper()
	f := c.request(op, seq, body)
	var r roomReply
	require.NoError(c.t, json.Unmarshal(f.body, &r), "reply body %q", f.body)
	return r
}

// pushesUntil returns the bodies of the pushes c receives before the key
// push "end" (sent last by the caller), failing on any other frame.
func (c *goimClient) pushesUntil() []string {
	c.t.Helper()
	var got []string
	for {
		f, err := c.next(5 * time.Second)
		require.NoError(c.t, err)
		require.GreaterOrEqual(c.t, f.op, protocol.OpPushMin, "unexpected op %d %q", f.op, f.body)
		if string(f.body) == "end" {
			return got
		}
		got = append(got, string(f.body))
	}
}

// pushRooms delivers one push per room (its body the room key), then the
// key push "end" to each key.
func pushRooms(t *testing.T, srv *cloud.Server, rooms []string, keys ...string) {
	t.Helper()
	var msgs []*imcloud.Message
	for _, r := range rooms {
		msgs = append(msgs, roomMsg(r, 1000, r))
	}
	deliver(t, srv, msgs...)
	for _, k := range keys {
		m := keysMsg(1000, "end", k)
		m.Node = srv.ID()
		deliver(t, srv, m)
	}
}

func (c *goimClient) online() uint32 {
	c.t.Helper()
	return binary.BigEndian.Uint32(c.request(protocol.OpHeartbeat, 99, "").body)
}

// TestJoinLeave: a ver-2 connection joins and leaves rooms; replies carry
// the documented JSON with the request's seq; each room's pushes reach it
// once, whether it is in the room by auth, by Join or both; a Join or
// Leave naming no room is answered without closing the connection.
func TestJoinLeave(t *testing.T) {
	for _, transport := range []string{"tcp", "ws"} {
		t.Run(transport, func(t *testing.T) {
			n := startNode(t, cloud.Config{})
			addr := n.tcpAddr
			if transport == "ws" {
				addr = n.wsAddr
			}
			c := dialRaw(t, addr, transport == "ws")
			key := c.auth(2, goimAuth(1, "", "live://p", 1000)).Key
			all := []string{"live://p", "live://a", "live://b", "live://c"}

			assert.Equal(t, `{"room_id":"live://a","ok":true}`, string(c.request(protocol.OpJoin, 2, "live://a").body),
				"the bytes of docs/protocol-rooms.md's example")
			assert.Equal(t, roomReply{RoomID: "live://b", OK: true}, c.roomRequest(protocol.OpJoin, 3, `{"room_id":"live://b"}`))
			assert.Equal(t, roomReply{RoomID: "live://a", OK: true}, c.roomRequest(protocol.OpJoin, 4, "live://a"), "joined already")
			assert.Equal(t, roomReply{RoomID: "live://p", OK: true}, c.roomRequest(protocol.OpJoin, 5, "live://p"), "the primary room")
			pushRooms(t, n.srv, all, key)
			assert.Equal(t, []string{"live://p", "live://a", "live://b"}, c.pushesUntil())
			assert.Equal(t, uint32(1), c.online(), "the primary room's count, the connection once")

			assert.Equal(t, roomReply{RoomID: "live://a", OK: true}, c.roomRequest(protocol.OpLeave, 6, "live://a"))
			assert.Equal(t, roomReply{RoomID: "live://zz", OK: true}, c.roomRequest(protocol.OpLeave, 7, `{"room_id":"live://zz"}`), "not in it")
			pushRooms(t, n.srv, all, key)
			assert.Equal(t, []string{"live://p", "live://b"}, c.pushesUntil())

			// Leaving the primary room leaves no primary room.
			assert.Equal(t, roomReply{RoomID: "live://p", OK: true}, c.roomRequest(protocol.OpLeave, 8, "live://p"))
			assert.Equal(t, uint32(0), c.online())
			pushRooms(t, n.srv, all, key)
			assert.Equal(t, []string{"live://b"}, c.pushesUntil())

			long := "live://" + strings.Repeat("x", 300)
			for i, tc := range []struct{ body, room, code string }{
				{"", "", "invalid_room"},
				{"nope", "nope", "invalid_room"},
				{long, long, "invalid_room"},
				{`{"room_id":""}`, "", "invalid_room"},
				{`{"room_id":`, "", "malformed"},
				{`{"room_id":7}`, "", "malformed"},
			} {
				assert.Equal(t, roomReply{RoomID: tc.room, Error: tc.code}, c.roomRequest(protocol.OpJoin, int32(10+i), tc.body), "Join %q", tc.body)
				assert.Equal(t, roomReply{RoomID: tc.room, Error: tc.code}, c.roomRequest(protocol.OpLeave, int32(20+i), tc.body), "Leave %q", tc.body)
			}
			st := n.srv.Stats()
			assert.Equal(t, uint64(4), st.Joins)
			assert.Equal(t, uint64(3), st.Leaves)
			assert.Equal(t, uint64(12), st.RoomRefusals)
			pushRooms(t, n.srv, all, key)
			assert.Equal(t, []string{"live://b"}, c.pushesUntil(), "still served")
		})
	}
}

// TestJoinTenRooms: connections in 10 rooms each get every room's pushes
// once; a room's online count counts each connection once.
func TestJoinTenRooms(t *testing.T) {
	n := startNode(t, cloud.Config{})
	var rooms []string
	for i := range 10 {
		rooms = append(rooms, fmt.Sprintf("live://%d", i))
	}
	var cs []*goimClient
	var keys []string
	for i := range 3 {
		c := dialRaw(t, n.tcpAddr, false)
		keys = append(keys, c.auth(2, goimAuth(int64(i+1), "", rooms[0], 1000)).Key)
		for j, r := range rooms {
			require.True(t, c.roomRequest(protocol.OpJoin, int32(j+2), r).OK)
		}
		cs = append(cs, c)
	}
	pushRooms(t, n.srv, append(rooms, "live://other"), keys...)
	for _, c := range cs {
		assert.Equal(t, rooms, c.pushesUntil())
	}
	assert.Equal(t, uint32(3), cs[0].online())
}

// TestJoinMaxRooms: Join and ChangeRoom are refused past MaxRooms (the
// primary room counts), and the connection stays where it was; a
// ChangeRoom that replaces the primary room is not.
func TestJoinMaxRooms(t *testing.T) {
	n := startNode(t, cloud.Config{MaxRooms: 3})
	c := dialRaw(t, n.tcpAddr, false)
	key := c.auth(2, goimAuth(1, "", "live://p", 1000)).Key
	require.True(t, c.roomRequest(protocol.OpJoin, 2, "live://a").OK)
	require.True(t, c.roomRequest(protocol.OpJoin, 3, "live://b").OK)
	assert.Equal(t, roomReply{RoomID: "live://c", Error: "too_many_rooms"}, c.roomRequest(protocol.OpJoin, 4, "live://c"))
	assert.Equal(t, "live://q", string(c.request(protocol.OpChangeRoom, 5, "live://q").body), "replaces the primary room")
	require.True(t, c.roomRequest(protocol.OpLeave, 6, "live://q").OK)
	require.True(t, c.roomRequest(protocol.OpJoin, 7, "live://c").OK)
	assert.Equal(t, roomReply{RoomID: "live://d", Error: "too_many_rooms"}, c.roomRequest(protocol.OpChangeRoom, 8, "live://d"))
	assert.Equal(t, "live://a", string(c.request(protocol.OpChangeRoom, 9, "live://a").body), "a joined room becomes primary")
	pushRooms(t, n.srv, []string{"live://p", "live://q", "live://a", "live://b", "live://c", "live://d"}, key)
	assert.Equal(t, []string{"live://a", "live://b", "live://c"}, c.pushesUntil())
	assert.Equal(t, uint64(2), n.srv.Stats().RoomRefusals)
}

// TestChangeRoomInvalid: a ChangeRoom to a room that is not type://id is
// refused with op 13's JSON and the connection stays in its room; one
// over 256 bytes still closes it.
func TestChangeRoomInvalid(t *testing.T) {
	n := startNode(t, cloud.Config{})
	for _, ver := range []int16{1, 2} {
		c := dialRaw(t, n.tcpAddr, false)
		key := c.auth(ver, goimAuth(1, "", "live://p", 1000)).Key
		require.NoError(t, c.send(ver, protocol.OpChangeRoom, 2, []byte("room1")))
		f := c.nextOp(protocol.OpChangeRoomReply)
		assert.Equal(t, ver, f.ver)
		assert.Equal(t, `{"room_id":"room1","ok":false,"error":"invalid_room"}`, string(f.body))
		pushRooms(t, n.srv, []string{"live://p"}, key)
		assert.Equal(t, []string{"live://p"}, c.pushesUntil())
		require.NoError(t, c.send(ver, protocol.OpChangeRoom, 3, []byte("live://"+strings.Repeat("x", 300))))
		c.expectClosed(t)
	}
}

// TestJoinVer1Upstream: a goim (ver-1) connection's ops 18 and 20 are
// upstream messages, as any op goim does not know: the same op back with
// an empty body, and the application's hook.
func TestJoinVer1Upstream(t *testing.T) {
	var mu sync.Mutex
	var got []cloud.Upstream
	n := startNode(t, cloud.Config{UpstreamHook: func(_ context.Context, m cloud.Upstream) {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}})
	c := dialRaw(t, n.tcpAddr, false)
	key := c.auth(1, goimAuth(1, "", "live://p", 1000)).Key
	for i, op := range []int32{protocol.OpJoin, protocol.OpLeave} {
		require.NoError(t, c.send(1, op, int32(i+2), []byte("live://a")))
		f, err := c.next(5 * time.Second)
		require.NoError(t, err)
		assert.Equal(t, rawFrame{ver: 1, op: op, seq: int32(i + 2)}, f)
	}
	waitFor(t, "upstream", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 2 })
	assert.Equal(t, protocol.OpJoin, got[0].Op)
	assert.Equal(t, "live://p", got[0].Room)
	pushRooms(t, n.srv, []string{"live://a", "live://p"}, key)
	assert.Equal(t, []string{"live://p"}, c.pushesUntil())
	assert.Zero(t, n.srv.Stats().Joins)
}

// TestRoomAuthorization: under the token authenticator the token's rooms
// decide, for auth room_id, ChangeRoom and Join alike; a refused auth room
// closes the connection (op 6 room_forbidden for ver 2), a refused
// ChangeRoom or Join leaves the connection where it was, and no push of a
// refused room reaches it. Config.RoomAuth decides alone when set.
func TestRoomAuthorization(t *testing.T) {
	n := startNode(t, cloud.Config{Authenticator: cloud.NewTokenAuthenticator(secret)})
	tok := func(mid int64, rooms ...string) string {
		s, err := cloud.NewToken(secret, mid, time.Minute, rooms...)
		require.NoError(t, err)
		return s
	}
	auth := func(room, tok string) string {
		return fmt.Sprintf(`{"room_id":%q,"accepts":[1000],"token":%q}`, room, tok)
	}
	for _, ver := range []int16{1, 2} {
		c := dialRaw(t, n.tcpAddr, false)
		require.NoError(t, c.send(ver, protocol.OpAuth, 1, []byte(auth("live://no", tok(1, "live://ok*")))))
		if ver == 2 {
			f, err := c.next(5 * time.Second)
			require.NoError(t, err)
			assert.Equal(t, protocol.OpDisconnect, f.op)
			assert.JSONEq(t, `{"reason":"room_forbidden","reconnect_ms":0}`, string(f.body))
		}
		c.expectClosed(t)
	}
	st := n.srv.Stats()
	assert.Equal(t, uint64(2), st.Refused["room_forbidden"])
	assert.Equal(t, uint64(2), st.RoomRefusals)
	pushRooms(t, n.srv, []string{"live://no"})
	assert.Equal(t, uint64(1), n.srv.Stats().RoomMisses, "nobody in live://no")

	c := dialRaw(t, n.tcpAddr, false)
	key := c.auth(2, auth("live://ok1", tok(2, "live://ok*", "chat://7"))).Key
	assert.Equal(t, roomReply{RoomID: "live://no", Error: "forbidden"}, c.roomRequest(protocol.OpChangeRoom, 2, "live://no"))
	assert.Equal(t, roomReply{RoomID: "live://no", Error: "forbidden"}, c.roomRequest(protocol.OpJoin, 3, "live://no"))
	assert.True(t, c.roomRequest(protocol.OpJoin, 4, "chat://7").OK)
	assert.Equal(t, "live://ok2", string(c.request(protocol.OpChangeRoom, 5, "live://ok2").body))
	pushRooms(t, n.srv, []string{"live://no", "live://ok1", "live://ok2", "chat://7"}, key)
	assert.Equal(t, []string{"live://ok2", "chat://7"}, c.pushesUntil())
	assert.Equal(t, uint64(4), n.srv.Stats().RoomRefusals)

	// A token without rooms enters none, but connects without one.
	c = dialRaw(t, n.tcpAddr, false)
	c.auth(2, auth("", tok(3)))
	assert.Equal(t, roomReply{RoomID: "live://ok1", Error: "forbidden"}, c.roomRequest(protocol.OpJoin, 2, "live://ok1"))
}

// TestRoomAuthHook: Config.RoomAuth decides alone, for each way in, and
// sees the identity and the op.
func TestRoomAuthHook(t *testing.T) {
	var mu sync.Mutex
	var seen []cloud.RoomRequest
	n := startNode(t, cloud.Config{RoomAuth: func(_ context.Context, req cloud.RoomRequest) error {
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
		if strings.HasPrefix(req.Room, "vip://") && req.Identity.Mid != 7 {
			return cloud.ErrRoomForbidden
		}
		return nil
	}})
	c := dialRaw(t, n.tcpAddr, false)
	require.NoError(t, c.send(2, protocol.OpAuth, 1, []byte(goimAuth(1, "k1", "vip://1"))))
	assert.Equal(t, protocol.OpDisconnect, c.nextOp(protocol.OpDisconnect).op)
	c.expectClosed(t)

	c = dialRaw(t, n.tcpAddr, false)
	c.auth(2, goimAuth(1, "k1", "live://1"))
	assert.Equal(t, "forbidden", c.roomRequest(protocol.OpJoin, 2, "vip://1").Error)
	assert.Equal(t, "forbidden", c.roomRequest(protocol.OpChangeRoom, 3, "vip://1").Error)
	v := dialRaw(t, n.tcpAddr, false)
	v.auth(2, goimAuth(7, "k7", "vip://1"))
	assert.True(t, v.roomRequest(protocol.OpJoin, 2, "vip://2").OK)

	mu.Lock()
	defer mu.Unlock()
	var ops []int32
	for _, r := range seen {
		ops = append(ops, r.Op)
	}
	assert.Equal(t, []int32{protocol.OpAuth, protocol.OpAuth, protocol.OpJoin, protocol.OpChangeRoom, protocol.OpAuth, protocol.OpJoin}, ops)
	last := seen[len(seen)-1]
	assert.Equal(t, int64(7), last.Identity.Mid)
	assert.Equal(t, "k7", last.Identity.Key)
	assert.Equal(t, "vip://2", last.Room)
}

// TestJoinMembershipBeforeReply: the Join reply of a room's first member
// on the node comes after the store has the node in the room, even with a
// slow store; a Join of a room the node has writes nothing; the last
// Leave removes the room.
func TestJoinMembershipBeforeReply(t *testing.T) {
	st := newRoomStore()
	st.setDelay(150 * time.Millisecond)
	n := startNode(t, cloud.Config{Store: st, NodeID: "j1"})
	a := dialRaw(t, n.tcpAddr, false)
	a.auth(2, goimAuth(1, "", ""))
	b := dialRaw(t, n.tcpAddr, false)
	b.auth(2, goimAuth(2, "", ""))
	require.True(t, a.roomRequest(protocol.OpJoin, 2, "live://x").OK)
	assert.True(t, st.hasRoom("j1", "live://x"), "the Join reply came before the room's write")
	require.True(t, b.roomRequest(protocol.OpJoin, 2, "live://x").OK)
	assert.Equal(t, 1, st.writes("live://x"))
	st.setDelay(0)
	require.True(t, a.roomRequest(protocol.OpLeave, 3, "live://x").OK)
	storeRound(t, n)
	assert.True(t, st.hasRoom("j1", "live://x"), "b is still in it")
	require.True(t, b.roomRequest(protocol.OpLeave, 3, "live://x").OK)
	waitFor(t, "live://x removed", func() bool { return !st.hasRoom("j1", "live://x") })
}
