package cloud

import (
	"errors"
	"strings"
	"testing"

	"github.com/imcloud/imcloud"
)

// TestBadRoomWrapsErrInvalidRoomKey: an identity refused for its room
// wraps imcloud.ErrInvalidRoomKey (and errInvalidIdentity).
func TestBadRoomWrapsErrInvalidRoomKey(t *testing.T) {
	for _, room := range []string{"1000", "live://1\r\n", "live://" + strings.Repeat("x", maxRoomLen)} {
		err := validIdentity(Identity{Mid: 1, Room: room}, "k")
		if !errors.Is(err, imcloud.ErrInvalidRoomKey) || !errors.Is(err, errInvalidIdentity) {
			t.Errorf("room %q: %v, want imcloud.ErrInvalidRoomKey and errInvalidIdentity", room, err)
		}
	}
	if err := validIdentity(Identity{Mid: 1, Room: "live://1"}, "k"); err != nil {
		t.Errorf("a good room refused: %v", err)
	}
}
