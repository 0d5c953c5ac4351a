package logic

import (
	"fmt"

	"github.com/imcloud/imcloud"
)

// TargetKind says whom a push is for.
type TargetKind uint8

// The kinds of Target. The zero TargetKind is no target: a push to it
// fails with ErrInvalidArgument.
const (
	// TargetKeys is the connections named by Target.Keys.
	TargetKeys TargetKind = iota + 1
	// TargetMids is every online connection of the users Target.Mids.
	TargetMids
	// TargetRoom is every connection in the room Target.Room.
	TargetRoom
	// TargetAll is every connection that accepts the push's op: a
	// broadcast, paced by WithSpeed.
	TargetAll
)

// String returns the kind's name: "keys", "mids", "room" or "all".
func (k TargetKind) String() string {
	switch k {
	case TargetKeys:
		return "keys"
	case TargetMids:
		return "mids"
	case TargetRoom:
		return "room"
	case TargetAll:
		return "all"
	}
	return fmt.Sprintf("TargetKind(%d)", uint8(k))
}

// Target is whom a push is for: its Kind and the one field that kind
// reads. Build it with ToKeys, ToMids, ToRoom or ToAll; a Target built by
// hand is checked the same way (Pusher.Push answers ErrInvalidArgument for
// a missing kind, an empty list, an empty key, a room that is not
// "type://id", or a field the kind does not read). A push reads the
// slices on a pool worker until its work ends, which for a synchronous
// push may be after its caller stopped waiting (ctx ended): do not modify
// them before. Nothing retains them after.
type Target struct {
	Kind TargetKind
	// Keys are the connection keys of a TargetKeys push.
	Keys []string
	// Mids are the user ids of a TargetMids push.
	Mids []int64
	// Room is the room key ("type://id") of a TargetRoom push.
	Room string
}

// ToKeys targets the connections named by keys.
func ToKeys(keys ...string) Target { return Target{Kind: TargetKeys, Keys: keys} }

// ToMids targets every online connection of the users mids.
func ToMids(mids ...int64) Target { return Target{Kind: TargetMids, Mids: mids} }

// ToRoom targets every connection in room ("type://id").
func ToRoom(room string) Target { return Target{Kind: TargetRoom, Room: room} }

// ToAll targets every connection that accepts the push's op (a
// broadcast).
func ToAll() Target { return Target{Kind: TargetAll} }

// validate checks t as the doc of Target says.
func (t Target) validate() error {
	if t.Kind < TargetKeys || t.Kind > TargetAll {
		return fmt.Errorf("%w: no target kind (use ToKeys, ToMids, ToRoom or ToAll)", ErrInvalidArgument)
	}
	extra := func(field string) error {
		return fmt.Errorf("%w: target %s carries %s", ErrInvalidArgument, t.Kind, field)
	}
	if t.Kind != TargetKeys && t.Keys != nil {
		return extra("keys")
	}
	if t.Kind != TargetMids && t.Mids != nil {
		return extra("mids")
	}
	if t.Kind != TargetRoom && t.Room != "" {
		return extra("a room")
	}
	switch t.Kind {
	case TargetKeys:
		if len(t.Keys) == 0 {
			return fmt.Errorf("%w: no keys", ErrInvalidArgument)
		}
		for _, k := range t.Keys {
			if k == "" {
				return fmt.Errorf("%w: empty key", ErrInvalidArgument)
			}
		}
	case TargetMids:
		if len(t.Mids) == 0 {
			return fmt.Errorf("%w: no mids", ErrInvalidArgument)
		}
	case TargetRoom:
		typ, id, err := imcloud.ParseRoomKey(t.Room)
		if err != nil || typ == "" || id == "" {
			return fmt.Errorf("%w: %w: %q is not \"type://id\"", ErrInvalidArgument, imcloud.ErrInvalidRoomKey, t.Room)
		}
	}
	return nil
}

// messageKind is the queue message kind that carries a push to t: key and
// mid pushes both travel as key messages once resolved to nodes.
func (t Target) messageKind() imcloud.Kind {
	switch t.Kind {
	case TargetRoom:
		return imcloud.KindRoom
	case TargetAll:
		return imcloud.KindBroadcast
	}
	return imcloud.KindKeys
}
