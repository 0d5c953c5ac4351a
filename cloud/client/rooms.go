package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/imcloud/imcloud/protocol"
)

// Rooms (docs/protocol-rooms.md). Besides its primary room (Config.Room,
// ChangeRoom) a connection of a client with Config.Extensions may be in
// the rooms it joined (op 18 Join, op 20 Leave), up to the node's
// MaxRooms all together. The client keeps the set of rooms it joined and,
// with Config.Reconnect, joins them again on every new connection: right
// after the AuthReply, one Join at a time, in the order they were first
// joined, before any Join or Leave the application asks for meanwhile. A
// room the node refuses then (its authorization or MaxRooms changed) is
// dropped from the set (Rooms() no longer has it); a connection that
// drops during the rejoin leaves the set as it was, for the next one.
// Pushes to a joined room between the drop and the rejoin are missed,
// unless the client recovers: with Config.Recover each Join carries the
// position held for the room's stream ("r:<room>"), so the node replays
// them, and Leave forgets that position.
//
// The primary room is not in the set: a Join of the primary room changes
// nothing, a ChangeRoom to a joined room makes it the primary room, and a
// Leave of the primary room leaves the connection without one (also after
// a reconnect).

// ErrRoomRefused is wrapped by the *RoomError of a refused Join, Leave or
// ChangeRoom: the node left the connection where it was.
var ErrRoomRefused = errors.New("client: room refused")

// ErrNeedsExtensions: Join and Leave need a client with Config.Extensions
// (or Recover); a goim node takes ops 18 and 20 for upstream messages.
var ErrNeedsExtensions = errors.New("client: Join and Leave need Config.Extensions")

// ErrRoomsUnsupported: the node answered a Join or Leave with another op
// than its reply, as a node older than rooms does (it takes ops 18 and 20
// for upstream messages and echoes them).
var ErrRoomsUnsupported = errors.New("client: the node does not support Join and Leave")

// RoomError is a refused Join, Leave or ChangeRoom. It wraps
// ErrRoomRefused.
type RoomError struct {
	// Op is the request refused: protocol.OpJoin, OpLeave or OpChangeRoom.
	Op int32
	// Room is the room asked for.
	Room string
	// Code is the node's reason: "forbidden" (authorization),
	// "too_many_rooms" (the node's MaxRooms), "invalid_room" (not
	// type://id, over 256 bytes or empty) or "malformed".
	Code string
}

func (e *RoomError) Error() string {
	return fmt.Sprintf("client: %s %q refused: %s", opName(e.Op), e.Room, e.Code)
}

// Unwrap returns ErrRoomRefused.
func (e *RoomError) Unwrap() error { return ErrRoomRefused }

func opName(op int32) string {
	switch op {
	case protocol.OpJoin:
		return "join"
	case protocol.OpLeave:
		return "leave"
	case protocol.OpChangeRoom:
		return "change room"
	}
	return fmt.Sprintf("op %d", op)
}

// JoinResult is an accepted Join.
type JoinResult struct {
	// Room is the room the connection is now in (the reply's room_id).
	Room string
	// Position is the position the Join carried (Config.Recover, and a
	// position held for "r:<Room>"), nil if none. The node replays the
	// room's pushes after it, then reports on Recoveries() (op 25 for
	// the room's stream), before the room's live pushes.
	Position *Position
}

// roomReply is the JSON of op 19 and op 21, and of a refused ChangeRoom's
// op 13 (a ChangeRoom that succeeded echoes its request's body instead).
type roomReply struct {
	RoomID string `json:"room_id"`
	OK     *bool  `json:"ok"`
	Error  string `json:"error"`
}

// Join enters room besides the primary room and waits for the node's
// reply: after it every push to room reaches the client. A room the
// client is in already is accepted again with nothing changed. A refusal
// is a *RoomError. The room is joined again after a reconnect (see above).
func (c *Client) Join(ctx context.Context, room string) (JoinResult, error) {
	if c.ver() != protocol.VerExtensions {
		return JoinResult{}, ErrNeedsExtensions
	}
	c.roomOps.Lock()
	defer c.roomOps.Unlock()
	return c.join(ctx, room)
}

// join sends op 18 and takes its reply. Called under c.roomOps.
func (c *Client) join(ctx context.Context, room string) (JoinResult, error) {
	body, pos := c.joinBody(room)
	f, err := c.request(ctx, protocol.OpJoin, body)
	if err != nil {
		return JoinResult{}, err
	}
	r, err := parseRoomReply(protocol.OpJoin, room, &f)
	if err != nil {
		return JoinResult{}, err
	}
	c.mu.Lock()
	if room != c.room && !slices.Contains(c.joined, room) {
		c.joined = append(c.joined, room)
	}
	c.mu.Unlock()
	if r.RoomID == "" {
		r.RoomID = room
	}
	return JoinResult{Room: r.RoomID, Position: pos}, nil
}

// Leave leaves room, joined or primary, and waits for the node's reply;
// leaving a room the client is not in is accepted. With Config.Recover
// the position held for the room's stream is forgotten.
func (c *Client) Leave(ctx context.Context, room string) error {
	if c.ver() != protocol.VerExtensions {
		return ErrNeedsExtensions
	}
	c.roomOps.Lock()
	defer c.roomOps.Unlock()
	f, err := c.request(ctx, protocol.OpLeave, []byte(room))
	if err != nil {
		return err
	}
	if _, err := parseRoomReply(protocol.OpLeave, room, &f); err != nil {
		return err
	}
	c.mu.Lock()
	c.joined = slices.DeleteFunc(c.joined, func(r string) bool { return r == room })
	if c.room == room {
		c.room = ""
	}
	delete(c.positions, "r:"+room)
	c.mu.Unlock()
	return nil
}

// Rooms returns the rooms the client joined (Join) and is in, in the
// order it joined them; the primary room is not among them.
func (c *Client) Rooms() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.joined...)
}

// joinBody is the Join body: the bare room key, or with Config.Recover
// and a position held for the room's stream the JSON that carries it
// (any node that knows Join reads both).
func (c *Client) joinBody(room string) ([]byte, *Position) {
	if !c.cfg.Recover {
		return []byte(room), nil
	}
	c.mu.Lock()
	p, ok := c.positions["r:"+room]
	c.mu.Unlock()
	if !ok {
		return []byte(room), nil
	}
	b, _ := json.Marshal(struct {
		RoomID   string    `json:"room_id"`
		Position *Position `json:"position"`
	}{room, &p})
	return b, &p
}

// parseRoomReply reads the reply f to op (Join or Leave): a refusal is a
// *RoomError, another op ErrRoomsUnsupported, a body that is not the
// reply's JSON an error.
func parseRoomReply(op int32, room string, f *protocol.Frame) (roomReply, error) {
	var r roomReply
	if f.Op != op+1 { // op 19 answers op 18, op 21 op 20
		return r, fmt.Errorf("%w: %s answered with op %d", ErrRoomsUnsupported, opName(op), f.Op)
	}
	if err := json.Unmarshal(f.Body, &r); err != nil || r.OK == nil {
		return r, fmt.Errorf("client: %s %q: malformed reply %q", opName(op), room, f.Body)
	}
	if !*r.OK {
		return r, &RoomError{Op: op, Room: room, Code: r.Error}
	}
	return r, nil
}

// changeRoomRefusal returns the *RoomError of a refused ChangeRoom (op 13
// with the JSON {"ok":false,...}), nil for a success (an echo of the
// request's body: a room key, or a recover connection's JSON without
// "ok").
func changeRoomRefusal(room string, body []byte) error {
	if len(body) == 0 || body[0] != '{' {
		return nil
	}
	var r roomReply
	if json.Unmarshal(body, &r) != nil || r.OK == nil || *r.OK {
		return nil
	}
	return &RoomError{Op: protocol.OpChangeRoom, Room: room, Code: r.Error}
}

// rejoin joins again, on the new connection s, the rooms joined before it
// (see above). It runs beside serve, which reads the replies.
func (c *Client) rejoin(s *session) {
	defer c.wg.Done()
	c.roomOps.Lock()
	defer c.roomOps.Unlock()
	for _, room := range c.Rooms() {
		c.mu.Lock()
		stale := c.cur != s
		c.mu.Unlock()
		if stale {
			return // a newer connection rejoins
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.DialTimeout)
		_, err := c.join(ctx, room)
		cancel()
		var refused *RoomError
		switch {
		case errors.As(err, &refused):
			c.mu.Lock()
			c.joined = slices.DeleteFunc(c.joined, func(r string) bool { return r == room })
			c.mu.Unlock()
		case err != nil:
			return // the connection went; the next one rejoins
		}
	}
}
