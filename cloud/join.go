package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/protocol"
)

// Join, Leave and ChangeRoom (docs/protocol.md, section 4, and
// docs/protocol-rooms.md).
//
// Join (op 18) puts a ver-2 connection in one more room and Leave (op 20)
// takes it out of one; ChangeRoom (op 12, goim's) replaces its primary
// room. Entering a room (auth room_id, ChangeRoom, Join) is authorized
// (Server.mayEnter) and bounded by MaxRooms; a refused ChangeRoom or Join
// leaves the connection where it was and is answered, with a JSON body
// naming why. Leave is never refused. The reply to an entry is queued (or,
// on a recover connection, the paused queue resumed) only once the store
// has the node in the room when the connection is the room's first member
// here (membership.go): a push accepted after the client saw its reply
// finds the node. On a recover connection the reply is followed by the
// replay of the room's stream from the position the client sent and op
// 25, before the room's live pushes.

// roomBody is the JSON form of a Join, Leave or (recover connections)
// ChangeRoom body; the bare room key is the other form.
type roomBody struct {
	RoomID   string            `json:"room_id"`
	Position *imcloud.Position `json:"position"`
}

// errRoomBody: a room body that starts like JSON but is not the
// documented object.
var errRoomBody = errors.New("cloud: malformed room body")

// parseRoomBody reads a Join, Leave or recover connection's ChangeRoom
// body: JSON with the room and an optional position, or goim's bare room
// key.
func parseRoomBody(body []byte) (room string, pos *imcloud.Position, err error) {
	if len(body) == 0 || body[0] != '{' {
		return string(body), nil, nil
	}
	var b roomBody
	if err := json.Unmarshal(body, &b); err != nil {
		return "", nil, fmt.Errorf("%w: %v", errRoomBody, err)
	}
	return b.RoomID, b.Position, nil
}

// roomReply is the JSON body of op 19, op 21 and a refused ChangeRoom's
// op 13.
type roomReply struct {
	RoomID string `json:"room_id"`
	OK     bool   `json:"ok"`
	Error  string `json:"error,omitempty"`
}

// The error codes of a refused Join or ChangeRoom, and of a Leave that
// names no room.
const (
	codeForbidden = "forbidden"      // authorization (Config.RoomAuth, Identity.MayEnter)
	codeTooMany   = "too_many_rooms" // Config.MaxRooms
	codeInvalid   = "invalid_room"   // empty, not type://id, over 256 bytes
	codeMalformed = "malformed"      // a body starting with '{' that is not the object
)

// replyRoom queues op's JSON reply to f: ok when code is "", refused
// (and counted) otherwise.
func (c *conn) replyRoom(f *protocol.Frame, op int32, room, code string) {
	if code != "" {
		c.srv.stats.roomRefusals.Add(1)
	}
	b, _ := json.Marshal(roomReply{RoomID: room, OK: code == "", Error: code})
	c.reply(f, op, b)
}

// identity is what the connection's room checks see of who it is: its
// mid, key, platform, primary room and accepts now, and the rooms its
// authenticator let it enter.
func (c *conn) identity() Identity {
	id := Identity{Mid: c.mid, Key: c.key, Room: c.b.roomOf(c), Platform: c.platform,
		Rooms: c.allowed, RestrictRooms: c.restrict, BindKey: c.bindKey}
	if p := c.accepts.Load(); p != nil {
		id.Accepts = *p
	}
	return id
}

// mayEnter reports whether c may enter room by op. Without
// Config.RoomAuth it checks the connection's room patterns in place,
// without building an Identity and a context.
func (c *conn) mayEnter(room string, op int32) bool {
	s := c.srv
	if s.cfg.RoomAuth == nil {
		if !mayEnterRooms(c.restrict, c.allowed, room) {
			s.cfg.Logger.Debug("cloud: room refused", "key", c.key, "room", room, "op", op)
			return false
		}
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.HandshakeTimeout)
	defer cancel()
	err := s.mayEnter(ctx, c.identity(), room, op)
	if err != nil {
		s.cfg.Logger.Debug("cloud: room refused", "key", c.key, "room", room, "op", op, "err", err)
	}
	return err == nil
}

// roomBodyCode parses a Join or Leave body: the room, its position, and
// the error code when it names no room.
func roomBodyCode(body []byte) (room string, pos *imcloud.Position, code string) {
	room, pos, err := parseRoomBody(body)
	switch {
	case err != nil:
		return "", nil, codeMalformed
	case room == "" || validRoom(room) != nil:
		return room, nil, codeInvalid
	}
	return room, pos, ""
}

// joinOrLeave serves op 18 and op 20: Join and Leave on a ver-2
// connection, upstream messages on a goim one (goim's: any op it does
// not know).
func (c *conn) joinOrLeave(f *protocol.Frame) {
	switch {
	case !c.ext:
		c.upstream(f)
	case f.Op == protocol.OpJoin:
		c.join(f)
	default:
		c.leave(f)
	}
}

// join serves op 18.
func (c *conn) join(f *protocol.Frame) {
	s := c.srv
	room, pos, code := roomBodyCode(f.Body)
	in := false
	if code == "" {
		in, code = c.entryCode(room, protocol.OpJoin)
	}
	if code != "" {
		c.replyRoom(f, protocol.OpJoinReply, room, code)
		return
	}
	s.stats.joins.Add(1)
	switch {
	case in:
		// Nothing changes, nothing is replayed.
		c.replyRoom(f, protocol.OpJoinReply, room, "")
	case !c.rec:
		// Only this goroutine adds to c's rooms: the checks above hold.
		res, entered := c.b.join(c, room, s.cfg.MaxRooms)
		c.roomChanged(res, imcloud.EventRoomJoin, room, false)
		s.sess.awaitPut(entered)
		c.replyRoom(f, protocol.OpJoinReply, room, "")
	default:
		c.out.pause() // the reply and the replay go out together, at resume
		c.replyRoom(f, protocol.OpJoinReply, room, "")
		c.out.mark()
		res, entered := c.b.join(c, room, s.cfg.MaxRooms)
		c.roomChanged(res, imcloud.EventRoomJoin, room, false)
		s.sess.awaitPut(entered)
		c.recoverRoom(room, pos)
		c.resume()
	}
}

// leave serves op 20.
func (c *conn) leave(f *protocol.Frame) {
	s := c.srv
	room, _, code := roomBodyCode(f.Body)
	if code != "" {
		c.replyRoom(f, protocol.OpLeaveReply, room, code)
		return
	}
	res, primary := c.b.leave(c, room)
	if primary {
		c.putSession()
	}
	c.roomChanged(res, imcloud.EventRoomLeave, room, primary)
	s.stats.leaves.Add(1)
	c.replyRoom(f, protocol.OpLeaveReply, room, "")
}

// changeRoom serves op 12: goim's bare room key ("" leaves the primary
// room), or on a recover connection JSON with a position. A room key over
// 256 bytes, or a malformed JSON body, closes the connection (goim-era
// behaviour); a room that is not type://id, is forbidden or would exceed
// MaxRooms is refused with op 13's JSON body.
func (c *conn) changeRoom(f *protocol.Frame) {
	s := c.srv
	room, pos := string(f.Body), (*imcloud.Position)(nil)
	var err error
	if c.rec {
		room, pos, err = parseRoomBody(f.Body)
	}
	if err != nil || len(room) > maxRoomLen {
		s.stats.protocolErrors.Add(1)
		c.endAs(imcloud.ReasonProtocolError, "")
		c.kill()
		return
	}
	if code := c.mayChangeRoom(room); code != "" {
		c.replyRoom(f, protocol.OpChangeRoomReply, room, code)
		return
	}
	if c.rec {
		c.out.pause() // the reply and the replay go out together, at resume
		c.reply(f, protocol.OpChangeRoomReply, f.Body)
		c.out.mark()
	}
	old := c.b.roomOf(c)
	res, entered := c.b.changeRoom(c, room, s.cfg.MaxRooms)
	c.primaryChanged(res, old, room)
	if put := c.putSession(); entered != nil {
		// The session put goes in the room's round or a later one.
		s.sess.awaitPut(put)
	}
	if !c.rec {
		c.reply(f, protocol.OpChangeRoomReply, f.Body)
		return
	}
	if room != "" {
		c.recoverRoom(room, pos)
	}
	c.resume()
}

// mayChangeRoom checks a ChangeRoom to room: "" when it may go ahead, the
// refusal's code otherwise.
func (c *conn) mayChangeRoom(room string) string {
	switch {
	case room == "":
		return "" // leaving
	case validRoom(room) != nil:
		return codeInvalid
	}
	_, code := c.entryCode(room, protocol.OpChangeRoom)
	return code
}

// entryCode checks c entering room by op (Join, ChangeRoom): in reports
// that c is in it already (entering changes nothing, no check needed),
// code why it may not enter ("" it may). A ChangeRoom replaces the primary
// room: it does not count towards MaxRooms.
func (c *conn) entryCode(room string, op int32) (in bool, code string) {
	in, n, primary := c.b.roomsOf(c, room)
	if op == protocol.OpChangeRoom && primary != "" {
		n--
	}
	switch {
	case in:
		return true, ""
	case n >= c.srv.cfg.MaxRooms:
		return false, codeTooMany
	case !c.mayEnter(room, op):
		return false, codeForbidden
	}
	return false, ""
}

// recoverRoom replays room's stream into c's paused queue at its mark,
// from pos (nil: none, nothing replayed) and queues op 25 for it.
func (c *conn) recoverRoom(room string, pos *imcloud.Position) {
	st := imcloud.RoomStream(room)
	positions := map[string]imcloud.Position{}
	if pos != nil {
		positions[string(st)] = *pos
	}
	c.recoverAt(0, []imcloud.Stream{st}, positions) // at the mark
}
