package cloud

import (
	"errors"
	"fmt"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/internal/text"
)

// errInvalidIdentity wraps every reason validIdentity refuses.
var errInvalidIdentity = errors.New("cloud: invalid identity")

// validIdentity checks what any authenticator returned, DevAuthenticator
// included, before the connection is registered under it: a mid above 0,
// a key (as bound) and a platform of printable text within their length
// caps, and a room that is empty or a well-formed room key
// (imcloud.ParseRoomKey) within maxRoomLen. Keys, rooms and platforms end
// up in the store, in logs and in the push API's answers, so control
// characters (CR/LF) never get that far.
func validIdentity(id Identity, key string) error {
	switch {
	case id.Mid <= 0:
		return fmt.Errorf("%w: mid %d is not above 0", errInvalidIdentity, id.Mid)
	case !printable(key):
		return fmt.Errorf("%w: key %q has control characters or is not UTF-8", errInvalidIdentity, key)
	case len(id.Platform) > maxPlatformLen || !printable(id.Platform):
		return fmt.Errorf("%w: platform %q", errInvalidIdentity, id.Platform)
	}
	if err := validRoom(id.Room); err != nil {
		return fmt.Errorf("%w: %w", errInvalidIdentity, err)
	}
	return nil
}

// validRoom checks that room is empty (no room) or a well-formed room key
// within maxRoomLen; its error wraps imcloud.ErrInvalidRoomKey.
func validRoom(room string) error {
	if room == "" {
		return nil
	}
	if len(room) > maxRoomLen || !printable(room) {
		return fmt.Errorf("%w: %q is longer than %d bytes or not printable", imcloud.ErrInvalidRoomKey, room, maxRoomLen)
	}
	_, _, err := imcloud.ParseRoomKey(room)
	return err
}

// printable is text.Printable, the check logic applies to a kick's keys.
func printable(s string) bool { return text.Printable(s) }
