package client_test

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/cloud/client"
	"github.com/imcloud/imcloud/protocol"
)

var secret = []byte("client-test-secret")

type testNode struct {
	srv     *cloud.Server
	tcpAddr string
	wsAddr  string
}

func startNode(t *testing.T, cfg cloud.Config) *testNode {
	t.Helper()
	if cfg.Authenticator == nil {
		cfg.Authenticator = cloud.NewTokenAuthenticator(secret)
	}
	srv, err := cloud.New(cfg)
	require.NoError(t, err)
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	wl, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.ServeTCP(tl) }()
	go func() { _ = srv.ServeWS(wl) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return &testNode{srv: srv, tcpAddr: tl.Addr().String(), wsAddr: wl.Addr().String()}
}

func push(t *testing.T, srv *cloud.Server, m *imcloud.Message) {
	t.Helper()
	m.ID = imcloud.NewMessageID()
	require.NoError(t, srv.Deliver(context.Background(), []*imcloud.Message{m}))
}

// addr is the node's address for network ("tcp" or "ws").
func (n *testNode) addr(network string) string {
	if network == "ws" {
		return n.wsAddr
	}
	return n.tcpAddr
}

// receive waits for the next value on ch (at most 5 s).
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		require.True(t, ok, "%s channel closed", what)
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s", what)
	}
	var zero T
	return zero
}

// dialAs dials n as user mid with a token that may enter rooms (cfg's
// Token set from them); the client is closed at the test's end.
func dialAs(t *testing.T, n *testNode, mid int64, rooms []string, cfg client.Config) *client.Client {
	t.Helper()
	tok, err := cloud.NewToken(secret, mid, time.Minute, rooms...)
	require.NoError(t, err)
	cfg.Token = tok
	if cfg.Addr == "" {
		cfg.Addr = n.addr(cfg.Network)
	}
	c, err := client.Dial(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func recv(t *testing.T, c *client.Client) client.Push {
	t.Helper()
	return receive(t, c.Messages(), "push")
}

func TestClient(t *testing.T) {
	for _, network := range []string{"tcp", "ws"} {
		t.Run(network, func(t *testing.T) {
			n := startNode(t, cloud.Config{})
			ctx := context.Background()
			c := dialAs(t, n, 77, []string{"live://*"}, client.Config{Network: network, Room: "live://c", Accepts: []int32{1000}, Extensions: true})
			a := c.Auth()
			assert.Equal(t, int64(77), a.Mid)
			assert.Equal(t, "live://c", a.RoomID)
			assert.Equal(t, 30, a.Heartbeat)

			online, err := c.Heartbeat(ctx)
			require.NoError(t, err)
			assert.Equal(t, int32(1), online)
			assert.Equal(t, int32(1), c.Online())

			push(t, n.srv, &imcloud.Message{Kind: imcloud.KindKeys, Node: "x", Keys: []string{a.Key}, Op: 1000, Body: []byte("hi")})
			p := recv(t, c)
			assert.Equal(t, int32(1000), p.Op)
			assert.Equal(t, "hi", string(p.Body))
			assert.False(t, p.Received.IsZero())

			require.NoError(t, c.ChangeRoom(ctx, "live://d"))
			push(t, n.srv, &imcloud.Message{Kind: imcloud.KindRoom, Room: "live://d", Op: 1003, Body: []byte("room")})
			assert.Equal(t, "room", string(recv(t, c).Body))

			require.NoError(t, c.Sub(ctx, 1009))
			require.NoError(t, c.Unsub(ctx, 1000))
			push(t, n.srv, &imcloud.Message{Kind: imcloud.KindBroadcast, Op: 1000, Body: []byte("no")})
			push(t, n.srv, &imcloud.Message{Kind: imcloud.KindBroadcast, Op: 1009, Body: []byte("yes")})
			assert.Equal(t, "yes", string(recv(t, c).Body))

			require.NoError(t, c.Send(ctx, []byte("up")))

			// Kick with reason: op 6 event, and no reconnect without Reconnect.
			n.srv.Kick(a.Key, "bye")
			select {
			case d := <-c.Disconnects():
				assert.Equal(t, "bye", d.Reason)
			case <-time.After(5 * time.Second):
				t.Fatal("no op 6")
			}
			select {
			case <-c.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("client did not stop")
			}
			assert.ErrorIs(t, c.Send(ctx, nil), client.ErrClosed)
		})
	}
}

func TestClientRefused(t *testing.T) {
	n := startNode(t, cloud.Config{})
	_, err := client.Dial(context.Background(), client.Config{Addr: n.tcpAddr, Token: "bad"})
	require.ErrorIs(t, err, client.ErrAuthRefused)
}

// TestClientReconnect: after a drain-like kick with a reconnect hint the
// client comes back with the same key and room.
func TestClientReconnect(t *testing.T) {
	n := startNode(t, cloud.Config{})
	tok, err := cloud.NewToken(secret, 5, time.Minute, "live://*")
	require.NoError(t, err)
	c, err := client.Dial(context.Background(), client.Config{
		Addr: n.tcpAddr, Token: tok, Room: "live://r", Extensions: true,
		Reconnect: true, BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
	})
	require.NoError(t, err)
	defer c.Close()
	key := c.Auth().Key
	require.NoError(t, c.ChangeRoom(context.Background(), "live://r2"))
	n.srv.Kick(key, "maintenance")
	<-c.Disconnects()
	deadline := time.Now().Add(5 * time.Second)
	for n.srv.Stats().AuthOK < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.Equal(t, uint64(2), n.srv.Stats().AuthOK)
	// The server counts the auth before its reply reaches the client:
	// wait for the client to have read the new AuthReply.
	for (!c.Connected() || c.Auth().RoomID != "live://r2") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	assert.Equal(t, key, c.Auth().Key)
	assert.Equal(t, "live://r2", c.Auth().RoomID)
	push(t, n.srv, &imcloud.Message{Kind: imcloud.KindRoom, Room: "live://r2", Op: 1000, Body: []byte("back")})
	assert.Equal(t, "back", string(recv(t, c).Body))
	require.NoError(t, c.Close())
	_, ok := <-c.Messages()
	assert.False(t, ok)
}

// TestClientDefaultAccepts: a client that leaves Accepts nil takes key,
// mid and broadcast pushes of the ops the README pushes (1000-1002); an
// empty non-nil Accepts takes none of them.
func TestClientDefaultAccepts(t *testing.T) {
	assert.Equal(t, []int32{1000, 1001, 1002}, client.DefaultAccepts())
	n := startNode(t, cloud.Config{Authenticator: cloud.DevAuthenticator()})
	ctx := context.Background()
	def, err := client.Dial(ctx, client.Config{Addr: n.tcpAddr, Mid: 1, Room: "live://a"})
	require.NoError(t, err)
	defer def.Close()
	none, err := client.Dial(ctx, client.Config{Addr: n.tcpAddr, Mid: 2, Room: "live://a", Accepts: []int32{}})
	require.NoError(t, err)
	defer none.Close()

	for _, op := range []int32{1000, 1001, 1002} {
		push(t, n.srv, &imcloud.Message{Kind: imcloud.KindKeys, Node: "x", Keys: []string{def.Auth().Key, none.Auth().Key}, Op: op, Body: []byte("key")})
		p := recv(t, def)
		assert.Equal(t, op, p.Op)
	}
	push(t, n.srv, &imcloud.Message{Kind: imcloud.KindBroadcast, Op: 1003, Body: []byte("not accepted")})
	push(t, n.srv, &imcloud.Message{Kind: imcloud.KindBroadcast, Op: 1000, Body: []byte("to all")})
	assert.Equal(t, "to all", string(recv(t, def).Body))
	// Pushes to one connection arrive in order: a room push reaches the
	// filtering client after everything that was filtered out.
	push(t, n.srv, &imcloud.Message{Kind: imcloud.KindRoom, Room: "live://a", Op: 1000, Body: []byte("room")})
	assert.Equal(t, "room", string(recv(t, none).Body), "the empty accepts list filtered nothing else out")
	assert.Equal(t, "room", string(recv(t, def).Body))
}

// rawNode is a node that answers each frame with reply's frames (auth
// included), to play nodes older than this client. It returns the address.
func rawNode(t *testing.T, reply func(f *protocol.Frame) []protocol.Frame) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		r := bufio.NewReader(nc)
		var f protocol.Frame
		for {
			if err := protocol.ReadFrame(r, &f, 1<<16); err != nil {
				return
			}
			for _, out := range reply(&f) {
				_, _ = nc.Write(protocol.AppendFrame(nil, &out))
			}
		}
	}()
	return ln.Addr().String()
}

// olderAuthReply is an older node's answer to an auth: op 8, no op 25.
func olderAuthReply(f *protocol.Frame) protocol.Frame {
	return protocol.Frame{Ver: f.Ver, Op: protocol.OpAuthReply, Seq: f.Seq,
		Body: []byte(`{"mid":1,"key":"k","room_id":"live://1","heartbeat":30}`)}
}

// TestClientChangeRoomToANodeWithoutRecovery: a Recover client sends the
// ChangeRoom JSON only to a node that answered op 25; to one that did not
// (an older node, which would take the JSON for a room key) it sends the
// bare room key, as goim's clients do.
func TestClientChangeRoomToANodeWithoutRecovery(t *testing.T) {
	bodies := make(chan string, 1)
	addr := rawNode(t, func(f *protocol.Frame) []protocol.Frame {
		switch f.Op {
		case protocol.OpAuth:
			return []protocol.Frame{olderAuthReply(f)}
		case protocol.OpChangeRoom:
			bodies <- string(f.Body)
			return []protocol.Frame{{Ver: f.Ver, Op: protocol.OpChangeRoomReply, Seq: f.Seq}}
		}
		return nil
	})
	c, err := client.Dial(context.Background(), client.Config{Addr: addr, Mid: 1, Room: "live://1", Recover: true,
		Positions: map[string]client.Position{"r:live://2": {Epoch: "e", Offset: 7}}})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.ChangeRoom(context.Background(), "live://2"))
	select {
	case b := <-bodies:
		require.Equal(t, "live://2", b)
	case <-time.After(5 * time.Second):
		t.Fatal("no ChangeRoom")
	}
}

// TestClientJoinOnAnOlderNode: a node older than rooms takes op 18 for an
// upstream message and echoes it; Join reports ErrRoomsUnsupported and
// the client is not in the room.
func TestClientJoinOnAnOlderNode(t *testing.T) {
	addr := rawNode(t, func(f *protocol.Frame) []protocol.Frame {
		if f.Op == protocol.OpAuth {
			return []protocol.Frame{olderAuthReply(f)}
		}
		return []protocol.Frame{{Ver: f.Ver, Op: f.Op, Seq: f.Seq}} // goim's upstream echo
	})
	c, err := client.Dial(context.Background(), client.Config{Addr: addr, Mid: 1, Room: "live://1", Extensions: true})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Join(context.Background(), "live://2")
	require.ErrorIs(t, err, client.ErrRoomsUnsupported)
	require.ErrorIs(t, c.Leave(context.Background(), "live://2"), client.ErrRoomsUnsupported)
	assert.Empty(t, c.Rooms())
}
