package client_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
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

func roomPush(t *testing.T, n *testNode, room, body string) {
	t.Helper()
	push(t, n.srv, &imcloud.Message{Kind: imcloud.KindRoom, Room: room, Op: 1000, Body: []byte(body)})
}

func recvRecovery(t *testing.T, c *client.Client) client.Recovery {
	t.Helper()
	return receive(t, c.Recoveries(), "recovery")
}

// TestClientJoinLeave: a joined room's pushes reach the client besides its
// primary room's; joining again changes nothing; after Leave the room's
// pushes no longer arrive; leaving twice is accepted; leaving the primary
// room leaves the connection without one.
func TestClientJoinLeave(t *testing.T) {
	for _, network := range []string{"tcp", "ws"} {
		t.Run(network, func(t *testing.T) {
			n := startNode(t, cloud.Config{})
			ctx := context.Background()
			c := dialAs(t, n, 7, []string{"live://*"}, client.Config{Network: network, Room: "live://a", Extensions: true})

			r, err := c.Join(ctx, "live://b")
			require.NoError(t, err)
			assert.Equal(t, client.JoinResult{Room: "live://b"}, r)
			assert.Equal(t, []string{"live://b"}, c.Rooms())
			roomPush(t, n, "live://b", "to b")
			assert.Equal(t, "to b", string(recv(t, c).Body))
			roomPush(t, n, "live://a", "to a")
			assert.Equal(t, "to a", string(recv(t, c).Body))

			_, err = c.Join(ctx, "live://b")
			require.NoError(t, err)
			_, err = c.Join(ctx, "live://a") // the primary room
			require.NoError(t, err)
			assert.Equal(t, []string{"live://b"}, c.Rooms())
			roomPush(t, n, "live://b", "once")
			roomPush(t, n, "live://a", "once too")
			assert.Equal(t, "once", string(recv(t, c).Body))
			assert.Equal(t, "once too", string(recv(t, c).Body), "a room joined twice delivers once")

			require.NoError(t, c.Leave(ctx, "live://b"))
			assert.Empty(t, c.Rooms())
			require.NoError(t, c.Leave(ctx, "live://b"))
			roomPush(t, n, "live://b", "left")
			roomPush(t, n, "live://a", "still in a")
			assert.Equal(t, "still in a", string(recv(t, c).Body))

			require.NoError(t, c.Leave(ctx, "live://a"))
			roomPush(t, n, "live://a", "left a")
			push(t, n.srv, &imcloud.Message{Kind: imcloud.KindKeys, Node: "x", Keys: []string{c.Auth().Key}, Op: 1000, Body: []byte("key")})
			assert.Equal(t, "key", string(recv(t, c).Body))
		})
	}
}

// TestClientRoomRefusals: a Join or ChangeRoom the node refuses is a
// *RoomError wrapping ErrRoomRefused with the node's code, and leaves the
// connection where it was; a client without extensions cannot Join.
func TestClientRoomRefusals(t *testing.T) {
	n := startNode(t, cloud.Config{MaxRooms: 2})
	ctx := context.Background()
	c := dialAs(t, n, 7, []string{"live://*"}, client.Config{Room: "live://a", Extensions: true})

	refused := func(err error, op int32, room, code string) {
		t.Helper()
		require.ErrorIs(t, err, client.ErrRoomRefused)
		var re *client.RoomError
		require.True(t, errors.As(err, &re))
		assert.Equal(t, client.RoomError{Op: op, Room: room, Code: code}, *re)
	}
	_, err := c.Join(ctx, "chat://1")
	refused(err, protocol.OpJoin, "chat://1", "forbidden")
	_, err = c.Join(ctx, "no-type")
	refused(err, protocol.OpJoin, "no-type", "invalid_room")
	_, err = c.Join(ctx, "live://b")
	require.NoError(t, err)
	_, err = c.Join(ctx, "live://c")
	refused(err, protocol.OpJoin, "live://c", "too_many_rooms")
	refused(c.ChangeRoom(ctx, "chat://1"), protocol.OpChangeRoom, "chat://1", "forbidden")
	assert.Equal(t, []string{"live://b"}, c.Rooms())

	roomPush(t, n, "chat://1", "never")
	roomPush(t, n, "live://c", "never")
	roomPush(t, n, "live://a", "still in a")
	assert.Equal(t, "still in a", string(recv(t, c).Body))

	goim := dialAs(t, n, 8, []string{"live://*"}, client.Config{Room: "live://a"})
	_, err = goim.Join(ctx, "live://b")
	require.ErrorIs(t, err, client.ErrNeedsExtensions)
	require.ErrorIs(t, goim.Leave(ctx, "live://b"), client.ErrNeedsExtensions)
}

// TestClientRejoin: after a reconnect the client is in the rooms it had
// joined again; one the node now refuses is dropped from Rooms().
func TestClientRejoin(t *testing.T) {
	var forbidC atomic.Bool
	n := startNode(t, cloud.Config{RoomAuth: func(_ context.Context, req cloud.RoomRequest) error {
		if forbidC.Load() && req.Room == "live://c" {
			return cloud.ErrRoomForbidden
		}
		return nil
	}})
	ctx := context.Background()
	c := dialAs(t, n, 7, nil, client.Config{Room: "live://a", Extensions: true,
		Reconnect: true, BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	for _, room := range []string{"live://b", "live://c"} {
		_, err := c.Join(ctx, room)
		require.NoError(t, err)
	}

	forbidC.Store(true)
	n.srv.Kick(c.Auth().Key, "maintenance")
	<-c.Disconnects()
	require.Eventually(t, func() bool { return c.Connected() && slices.Equal(c.Rooms(), []string{"live://b"}) },
		5*time.Second, 5*time.Millisecond, "rooms after the rejoin: %q", c.Rooms())
	roomPush(t, n, "live://c", "refused at the rejoin")
	roomPush(t, n, "live://b", "rejoined")
	assert.Equal(t, "rejoined", string(recv(t, c).Body))
	roomPush(t, n, "live://a", "primary")
	assert.Equal(t, "primary", string(recv(t, c).Body))
}

// TestClientJoinRecover: with Recover, a Join carries the position held
// for the room's stream, the node replays what was missed and reports it;
// the rejoin after a reconnect does the same; Leave forgets the position.
func TestClientJoinRecover(t *testing.T) {
	h := logic.NewMemoryHistory(logic.MemoryHistoryConfig{})
	n := startNode(t, cloud.Config{History: h})
	s := imcloud.RoomStream("live://b")
	var epoch string
	appendPush := func(off int64, body string) {
		m := appendHistory(t, h, &imcloud.Message{Kind: imcloud.KindRoom, Room: "live://b", Op: 1000, Body: []byte(body), Stream: s, Offset: off})
		epoch = m.Epoch
	}
	appendPush(3, "seen")
	appendPush(5, "missed 1")
	appendPush(8, "missed 2")
	ctx := context.Background()
	c := dialAs(t, n, 77, []string{"live://*"}, client.Config{Room: "live://a", Recover: true,
		Reconnect: true, BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		Positions: map[string]client.Position{string(s): {Epoch: epoch, Offset: 3}}})
	recvRecovery(t, c) // the auth's

	r, err := c.Join(ctx, "live://b")
	require.NoError(t, err)
	assert.Equal(t, client.JoinResult{Room: "live://b", Position: &client.Position{Epoch: epoch, Offset: 3}}, r)
	for i, want := range []string{"missed 1", "missed 2"} {
		p := recv(t, c)
		assert.Equal(t, want, string(p.Body))
		assert.Equal(t, string(s), p.Stream)
		assert.Equal(t, []int64{5, 8}[i], p.Offset)
	}
	rec := recvRecovery(t, c)
	assert.True(t, rec.Recovered())
	assert.Equal(t, 2, rec.Replayed())
	assert.Equal(t, client.Position{Epoch: epoch, Offset: 8}, c.Positions()[string(s)])

	// Missed (in the history, never delivered live): the rejoin's Join
	// after a reconnect replays it.
	appendPush(9, "missed while away")
	n.srv.Kick(c.Auth().Key, "maintenance")
	p := recv(t, c)
	assert.Equal(t, "missed while away", string(p.Body))
	assert.Equal(t, int64(9), p.Offset)
	assert.Equal(t, []string{"live://b"}, c.Rooms())

	require.NoError(t, c.Leave(ctx, "live://b"))
	_, held := c.Positions()[string(s)]
	assert.False(t, held, "Leave forgets the room's position")
}
