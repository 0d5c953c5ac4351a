package cloud

import (
	"context"
	"fmt"
	"strings"
)

// MayEnter reports whether the identity may enter room by its room
// patterns. An identity without RestrictRooms may enter any room. A
// restricted one may enter a room that one of Rooms names: a pattern equal
// to the room, a pattern ending in "*" whose prefix (the pattern without
// the "*") begins the room, or a lone "*". A "*" anywhere but at the end is
// an ordinary character. The empty room (no room: leaving one) is always
// allowed.
func (id *Identity) MayEnter(room string) bool {
	return mayEnterRooms(id.RestrictRooms, id.Rooms, room)
}

// mayEnterRooms is MayEnter's rule over the identity's two fields.
func mayEnterRooms(restrict bool, patterns []string, room string) bool {
	if room == "" || !restrict {
		return true
	}
	for _, p := range patterns {
		if p == room {
			return true
		}
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(room, prefix) {
			return true
		}
	}
	return false
}

// mayEnter decides whether the connection of id may enter room by op
// (protocol.OpAuth, OpChangeRoom or OpJoin): Config.RoomAuth when set,
// Identity.MayEnter otherwise. A refusal by MayEnter wraps
// ErrRoomForbidden; RoomAuth's error is returned as it is.
func (s *Server) mayEnter(ctx context.Context, id Identity, room string, op int32) error {
	if s.cfg.RoomAuth != nil {
		return s.cfg.RoomAuth(ctx, RoomRequest{Identity: id, Room: room, Op: op})
	}
	if !id.MayEnter(room) {
		return fmt.Errorf("%w: %q", ErrRoomForbidden, room)
	}
	return nil
}
