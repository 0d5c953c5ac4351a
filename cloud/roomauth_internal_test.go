package cloud

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/imcloud/imcloud/protocol"
)

func TestIdentityMayEnter(t *testing.T) {
	t.Parallel()
	restricted := func(rooms ...string) Identity { return Identity{Mid: 1, Rooms: rooms, RestrictRooms: true} }
	for _, tc := range []struct {
		name string
		id   Identity
		room string
		want bool
	}{
		{"exact", restricted("live://1"), "live://1", true},
		{"exact is not a prefix", restricted("live://1"), "live://10", false},
		{"exact of another room", restricted("live://10"), "live://1", false},
		{"prefix", restricted("live://*"), "live://7", true},
		{"prefix matches the bare prefix", restricted("live://*"), "live://", true},
		{"prefix of another type", restricted("live://*"), "chat://7", false},
		{"shorter prefix of another type", restricted("live:/*"), "chat://7", false},
		{"shorter prefix of its type", restricted("live:/*"), "live://7", true},
		{"lone star", restricted("*"), "anything://at-all", true},
		{"star in the middle is literal", restricted("live*//1"), "live://1", false},
		{"star in the middle matches itself", restricted("live*//1"), "live*//1", true},
		{"star in the middle with a trailing star", restricted("li*e://*"), "live://1", false},
		{"empty pattern", restricted(""), "live://1", false},
		{"one of several", restricted("chat://2", "live://*"), "live://9", true},
		{"none of several", restricted("chat://2", "live://9"), "live://8", false},
		{"no claim", restricted(), "live://1", false},
		{"no claim leaves", restricted(), "", true},
		{"empty room always", restricted("live://1"), "", true},
		{"dev mode", Identity{Mid: 1}, "live://1", true},
		{"dev mode ignores Rooms", Identity{Mid: 1, Rooms: []string{"chat://1"}}, "live://1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, tc.id.MayEnter(tc.room), "patterns %q room %q", tc.id.Rooms, tc.room)
		})
	}
}

func TestServerMayEnter(t *testing.T) {
	t.Parallel()
	id := Identity{Mid: 1, Rooms: []string{"live://*"}, RestrictRooms: true}

	s := &Server{}
	require.NoError(t, s.mayEnter(context.Background(), id, "live://1", protocol.OpJoin))
	err := s.mayEnter(context.Background(), id, "chat://1", protocol.OpJoin)
	require.ErrorIs(t, err, ErrRoomForbidden)
	assert.Contains(t, err.Error(), `"chat://1"`)

	// RoomAuth decides alone: it may refuse what MayEnter allows, and
	// allow what MayEnter refuses; it sees the request as asked.
	hookErr := errors.New("app says no")
	var got []RoomRequest
	s.cfg.RoomAuth = func(_ context.Context, req RoomRequest) error {
		got = append(got, req)
		if req.Room == "live://1" {
			return hookErr
		}
		return nil
	}
	require.ErrorIs(t, s.mayEnter(context.Background(), id, "live://1", protocol.OpAuth), hookErr)
	require.NoError(t, s.mayEnter(context.Background(), id, "chat://1", protocol.OpChangeRoom))
	assert.Equal(t, []RoomRequest{
		{Identity: id, Room: "live://1", Op: protocol.OpAuth},
		{Identity: id, Room: "chat://1", Op: protocol.OpChangeRoom},
	}, got)
}
