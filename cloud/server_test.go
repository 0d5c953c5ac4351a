package cloud_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
)

func TestNewRequiresAuthenticator(t *testing.T) {
	_, err := cloud.New(cloud.Config{})
	require.ErrorIs(t, err, cloud.ErrNoAuthenticator)
}

// TestGoimClient drives the node with a hand-written goim client over TCP
// and WebSocket: auth with goim's JSON, heartbeat, key, room and broadcast
// pushes, room change, sub/unsub, upstream.
func TestGoimClient(t *testing.T) {
	for _, transport := range []string{"tcp", "ws"} {
		t.Run(transport, func(t *testing.T) {
			var upstream atomic.Value
			n := startNode(t, cloud.Config{UpstreamHook: func(_ context.Context, m cloud.Upstream) {
				upstream.Store(string(m.Body))
			}})
			isWS := transport == "ws"
			addr := n.tcpAddr
			if isWS {
				addr = n.wsAddr
			}
			c := dialRaw(t, addr, isWS)
			r := c.auth(1, goimAuth(42, "", "live://1000", 1000, 1001))
			assert.Equal(t, int64(42), r.Mid)
			assert.NotEmpty(t, r.Key, "server assigns a key")
			assert.Equal(t, "live://1000", r.RoomID)
			assert.Equal(t, 30, r.Heartbeat)

			// Heartbeat: op 3 with the room's online count (just us).
			require.NoError(t, c.send(1, 2, 7, nil))
			hb := c.nextOp(3)
			assert.Equal(t, int32(7), hb.seq)
			require.Len(t, hb.body, 4)
			assert.Equal(t, uint32(1), binary.BigEndian.Uint32(hb.body))

			// Key push (accepted op), key push of an op not accepted, room push.
			deliver(t, n.srv, keysMsg(1000, "k1", r.Key), keysMsg(1005, "filtered", r.Key), roomMsg("live://1000", 1005, "r1"))
			f := c.nextOp(1000)
			assert.Equal(t, "k1", string(f.body))
			assert.Equal(t, int16(1), f.ver)
			f, err := c.next(5 * time.Second)
			require.NoError(t, err)
			assert.Equal(t, int32(1005), f.op, "room pushes are not filtered")
			assert.Equal(t, "r1", string(f.body))

			// Broadcast reaches accepting connections.
			deliver(t, n.srv, &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: 1001, Body: []byte("b1")})
			assert.Equal(t, "b1", string(c.nextOp(1001).body))

			// Change room: reply echoes, pushes follow the new room.
			require.NoError(t, c.send(1, 12, 8, []byte("live://2000")))
			cr := c.nextOp(13)
			assert.Equal(t, "live://2000", string(cr.body))
			deliver(t, n.srv, roomMsg("live://1000", 1000, "old"), roomMsg("live://2000", 1000, "new"))
			assert.Equal(t, "new", string(c.nextOp(1000).body))

			// Sub/unsub change the key-push filter.
			require.NoError(t, c.send(1, 14, 9, []byte("1007")))
			assert.Equal(t, "1007", string(c.nextOp(15).body))
			require.NoError(t, c.send(1, 16, 10, []byte("1000")))
			assert.Equal(t, "1000", string(c.nextOp(17).body))
			deliver(t, n.srv, keysMsg(1000, "no", r.Key), keysMsg(1007, "yes", r.Key))
			f, err = c.next(5 * time.Second)
			require.NoError(t, err)
			assert.Equal(t, int32(1007), f.op)
			assert.Equal(t, "yes", string(f.body))

			// Upstream: same op back, seq echoed, empty body, hook called.
			require.NoError(t, c.send(1, 4, 11, []byte("hello")))
			up := c.nextOp(4)
			assert.Equal(t, int32(11), up.seq)
			assert.Empty(t, up.body)
			waitFor(t, "upstream hook", func() bool { v, _ := upstream.Load().(string); return v == "hello" })

			st := n.srv.Stats()
			assert.Equal(t, int64(1), st.Sessions)
			assert.Equal(t, uint64(1), st.AuthOK)
		})
	}
}

// TestOp9OnlyPushes checks goim's JavaScript client rule: inside op 9 there
// are only pushes, never replies or op 6, and op 9 bodies stay under the
// cap; replies travel alone.
func TestOp9OnlyPushes(t *testing.T) {
	n := startNode(t, cloud.Config{MaxBatchBody: 256})
	c := dialRaw(t, n.wsAddr, true)
	r := c.auth(1, goimAuth(1, "", "live://9", 1000))
	// Queue many pushes and replies interleaved, fast.
	body := strings.Repeat("x", 40)
	for i := 0; i < 50; i++ {
		deliver(t, n.srv, roomMsg("live://9", 1000, body), keysMsg(1000, body, r.Key))
		if i%10 == 0 {
			require.NoError(t, c.send(1, 2, int32(100+i), nil))
		}
	}
	// A job batch (op 9 message) is flattened, not nested.
	batch := append(encodeRaw(1, 1001, 0, []byte("a")), encodeRaw(1, 1002, 0, []byte("b"))...)
	deliver(t, n.srv, &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Room: "live://9", Op: 9, Body: batch})
	pushes, replies := 0, 0
	sawA, sawB := false, false
	for pushes < 102 || replies < 5 {
		fs, err := c.readMsg(5 * time.Second)
		require.NoError(t, err, "pushes %d replies %d stats %+v", pushes, replies, n.srv.Stats())
		require.Len(t, fs, 1, "one goim frame per WebSocket message")
		f := fs[0]
		if f.op != 9 {
			assert.Equal(t, int32(3), f.op, "only replies travel outside op 9 here")
			replies++
			continue
		}
		assert.LessOrEqual(t, len(f.body), 256+16+40, "op 9 body cap")
		inner, err := decodeRaw(f.body)
		require.NoError(t, err)
		for _, in := range inner {
			require.GreaterOrEqual(t, in.op, int32(1000), "only pushes inside op 9, got op %d", in.op)
			switch string(in.body) {
			case "a":
				sawA = true
			case "b":
				sawB = true
			}
		}
		pushes += len(inner)
	}
	assert.True(t, sawA && sawB)
	// A malformed or nested batch from the job is refused and counted; so
	// is one carrying a reply (a reserved op).
	nested := encodeRaw(1, 9, 0, encodeRaw(1, 1000, 0, nil))
	deliver(t, n.srv, &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Room: "live://9", Op: 9, Body: nested})
	assert.Equal(t, uint64(1), n.srv.Stats().Invalid)
	reply := encodeRaw(1, 3, 0, nil)
	deliver(t, n.srv, &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Room: "live://9", Op: 9, Body: reply})
	assert.Equal(t, uint64(1), n.srv.Stats().Reserved)
}

// TestOp6OnlyOptedIn: kick sends op 6 to an opted-in client, never to a
// goim client.
func TestOp6OnlyOptedIn(t *testing.T) {
	n := startNode(t, cloud.Config{})
	for _, transport := range []string{"tcp", "ws"} {
		isWS := transport == "ws"
		addr := n.tcpAddr
		if isWS {
			addr = n.wsAddr
		}
		goim := dialRaw(t, addr, isWS)
		rg := goim.auth(1, goimAuth(5, "", ""))
		ext := dialRaw(t, addr, isWS)
		re := ext.auth(2, goimAuth(5, "", ""))
		n.srv.Kick(rg.Key, "bye")
		n.srv.Kick(re.Key, "bye")
		f := ext.nextOp(6)
		assert.Contains(t, string(f.body), `"reason":"bye"`)
		if isWS {
			// A proper WebSocket close (1001 going away), not a dropped socket.
			_, err := ext.next(5 * time.Second)
			var closed wsutil.ClosedError
			require.ErrorAs(t, err, &closed)
			assert.Equal(t, ws.StatusGoingAway, closed.Code)
			assert.Equal(t, "bye", closed.Reason)
		} else {
			ext.expectClosed(t)
		}
		for {
			f, err := goim.next(5 * time.Second)
			if err != nil {
				break
			}
			assert.NotEqual(t, int32(6), f.op, "goim client must not see op 6")
		}
	}
	waitFor(t, "sessions gone", func() bool { return n.srv.Stats().Sessions == 0 })
	assert.Equal(t, uint64(4), n.srv.Stats().Kicked)
}

func TestKickMidAndReplace(t *testing.T) {
	n := startNode(t, cloud.Config{})
	a := dialRaw(t, n.tcpAddr, false)
	a.auth(2, goimAuth(7, "dev-1", ""))
	b := dialRaw(t, n.tcpAddr, false)
	b.auth(2, goimAuth(7, "dev-2", ""))
	// Same key again replaces dev-1 (op 6 "replaced" to the old one).
	a2 := dialRaw(t, n.tcpAddr, false)
	a2.auth(2, goimAuth(7, "dev-1", ""))
	assert.Contains(t, string(a.nextOp(6).body), "replaced")
	a.expectClosed(t)
	deliver(t, n.srv, keysMsg(1000, "to-new", "dev-1"))
	// accepts empty: key pushes do not reach it (goim rule).
	require.NoError(t, a2.send(2, 14, 1, []byte("1000")))
	a2.nextOp(15)
	deliver(t, n.srv, keysMsg(1000, "to-new", "dev-1"))
	assert.Equal(t, "to-new", string(a2.nextOp(1000).body))

	n.srv.KickMid(7, "account closed")
	assert.Contains(t, string(a2.nextOp(6).body), "account closed")
	assert.Contains(t, string(b.nextOp(6).body), "account closed")
	waitFor(t, "no sessions", func() bool { return n.srv.Stats().Sessions == 0 })
}

// TestDedup: a redelivered message id reaches clients once.
func TestDedup(t *testing.T) {
	n := startNode(t, cloud.Config{})
	c := dialRaw(t, n.tcpAddr, false)
	c.auth(1, goimAuth(1, "", "live://d"))
	m := roomMsg("live://d", 1000, "once")
	deliver(t, n.srv, m)
	deliver(t, n.srv, m)
	deliver(t, n.srv, roomMsg("live://d", 1000, "next"))
	assert.Equal(t, "once", string(c.nextOp(1000).body))
	assert.Equal(t, "next", string(c.nextOp(1000).body))
	assert.Equal(t, uint64(1), n.srv.Stats().Duplicates)
	// Expired and invalid messages are counted, not delivered.
	deliver(t, n.srv, &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindRoom, Room: "live://d", Op: 1000, Expires: time.Now().Add(-time.Second)},
		&imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindKeys})
	st := n.srv.Stats()
	assert.Equal(t, uint64(1), st.Expired)
	assert.Equal(t, uint64(1), st.Invalid)
}

// TestPacedBroadcast: a broadcast with a speed is accepted at once and
// reaches everyone.
func TestPacedBroadcast(t *testing.T) {
	n := startNode(t, cloud.Config{})
	var cs []*goimClient
	for i := 0; i < 20; i++ {
		c := dialRaw(t, n.tcpAddr, false)
		c.auth(1, goimAuth(int64(i+1), "", "", 1000))
		cs = append(cs, c)
	}
	start := time.Now()
	deliver(t, n.srv, &imcloud.Message{ID: imcloud.NewMessageID(), Kind: imcloud.KindBroadcast, Op: 1000, Body: []byte("slow"), Speed: 100})
	assert.Less(t, time.Since(start), 100*time.Millisecond, "accepted, not delivered, before returning")
	for _, c := range cs {
		assert.Equal(t, "slow", string(c.nextOp(1000).body))
	}
	// 20 connections at 100/s take about 100 ms (slices of 10 per 100 ms).
	assert.GreaterOrEqual(t, time.Since(start), 90*time.Millisecond)
}

// TestHTTPHandler mounts the server in a mux and checks the Origin list,
// query, cookies seen by the authenticator, and drain of hijacked conns.
func TestHTTPHandler(t *testing.T) {
	var seen atomic.Value
	srv, err := cloud.New(cloud.Config{
		AllowedOrigins: []string{"https://good.example"},
		Authenticator: cloud.AuthFunc(func(_ context.Context, req *cloud.AuthRequest) (cloud.Identity, error) {
			ck, _ := req.Cookie("session")
			v := ""
			if ck != nil {
				v = ck.Value
			}
			seen.Store(req.Query.Get("platform") + "|" + v)
			return cloud.Identity{Mid: 9}, nil
		}),
	})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/ws", srv)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	addr := strings.TrimPrefix(hs.URL, "http://")

	// Bad origin refused.
	req, _ := http.NewRequest("GET", hs.URL+"/ws", nil)
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)

	c := dialWSHeader(t, "ws://"+addr+"/ws?platform=web", http.Header{"Cookie": {"session=abc"}, "Origin": {"https://good.example"}})
	r := c.auth(1, goimAuth(1, "", ""))
	assert.Equal(t, int64(9), r.Mid)
	assert.Equal(t, "web|abc", seen.Load())

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
	c.expectClosed(t)
	assert.Equal(t, int64(0), srv.Stats().Conns)
}

func TestLinkServer(t *testing.T) {
	n := startNode(t, cloud.Config{})
	c := dialRaw(t, n.tcpAddr, false)
	r := c.auth(1, goimAuth(1, "", "live://l", 1000))

	t.Run("wrong secret", func(t *testing.T) {
		lc := dialLink(t, n.linkAddr)
		ack := lc.hello(t, 1, "nope")
		assert.Contains(t, ack.Error, "secret")
		lc.expectEOF(t)
	})
	t.Run("wrong version", func(t *testing.T) {
		lc := dialLink(t, n.linkAddr)
		ack := lc.hello(t, 99, "s3cret")
		assert.Contains(t, ack.Error, "version")
		lc.expectEOF(t)
	})
	t.Run("pipelined delivers", func(t *testing.T) {
		lc := dialLink(t, n.linkAddr)
		ack := lc.hello(t, 1, "s3cret")
		require.Empty(t, ack.Error)
		assert.Equal(t, n.srv.ID(), ack.Node)
		for i := int32(1); i <= 20; i++ {
			lc.deliver(t, i, roomMsg("live://l", 1000, "p"), keysMsg(1000, "k", r.Key))
		}
		got := map[int32]bool{}
		for len(got) < 20 {
			seq, body := lc.ack(t)
			assert.Empty(t, body)
			got[seq] = true
		}
		for i := 0; i < 40; i++ {
			c.nextOp(1000)
		}
		// A malformed deliver body is acknowledged with a reason.
		lc.raw(t, 77, []byte{0xff})
		seq, body := lc.ack(t)
		assert.Equal(t, int32(77), seq)
		assert.NotEmpty(t, body)
	})
	assert.Equal(t, uint64(2), n.srv.Stats().LinkRefused)
}

func TestServeAfterShutdown(t *testing.T) {
	srv, err := cloud.New(cloud.Config{Authenticator: cloud.DevAuthenticator()})
	require.NoError(t, err)
	require.NoError(t, srv.Shutdown(context.Background()))
	require.NoError(t, srv.Shutdown(context.Background()), "idempotent")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.ErrorIs(t, srv.ServeTCP(ln), cloud.ErrServerClosed)
	require.ErrorIs(t, srv.Deliver(context.Background(), []*imcloud.Message{roomMsg("a://b", 1000, "")}), cloud.ErrServerClosed)
}

// TestRoomRunSharesOneWrite: room pushes that arrive together (job merges
// the ones that waited) reach each receiver packed, one WebSocket message
// of op 9 for the lot, in order; TCP clients read the same frames back to
// back; each push is counted once per receiver.
func TestRoomRunSharesOneWrite(t *testing.T) {
	n := startNode(t, cloud.Config{})
	wsc := dialRaw(t, n.wsAddr, true)
	wsc.auth(1, goimAuth(1, "", "live://run"))
	tcp := dialRaw(t, n.tcpAddr, false)
	tcp.auth(1, goimAuth(2, "", "live://run"))
	other := dialRaw(t, n.tcpAddr, false)
	other.auth(1, goimAuth(3, "", "live://elsewhere"))
	before := n.srv.Stats().Delivered

	deliver(t, n.srv,
		roomMsg("live://run", 1000, "a"), roomMsg("live://run", 1001, "b"),
		roomMsg("live://elsewhere", 1000, "x"), roomMsg("live://run", 1002, "c"))

	// WebSocket: "a" and "b" travel in one op 9 message (with "c" too
	// when its write had not started yet), in order.
	fs, err := wsc.readMsg(5 * time.Second)
	require.NoError(t, err)
	require.Len(t, fs, 1)
	require.Equal(t, int32(9), fs[0].op)
	inner, err := decodeRaw(fs[0].body)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(inner), 2, "the run shares one message")
	got := []string{}
	for _, f := range inner {
		got = append(got, string(f.body))
	}
	if len(got) < 3 {
		got = append(got, string(wsc.nextOp(1002).body))
	}
	assert.Equal(t, []string{"a", "b", "c"}, got)
	assert.Equal(t, int32(1001), inner[1].op)

	for _, want := range []string{"a", "b", "c"} {
		f, err := tcp.next(5 * time.Second)
		require.NoError(t, err)
		assert.Equal(t, want, string(f.body))
	}
	assert.Equal(t, "x", string(other.nextOp(1000).body))
	assert.Equal(t, before+7, n.srv.Stats().Delivered, "3 pushes x 2 receivers + 1")
}
