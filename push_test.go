package imcloud

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRoomKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ, id, key string
	}{
		{"live", "1000", "live://1000"},
		{"", "", "://"},
		{"live", "", "live://"},
		{"", "1000", "://1000"},
		{"chat", "a://b", "chat://a://b"}, // the first "://" separates
		{"直播", "房间1", "直播://房间1"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			require.Equal(t, tt.key, RoomKey(tt.typ, tt.id))
			typ, id, err := ParseRoomKey(tt.key)
			require.NoError(t, err)
			require.Equal(t, tt.typ, typ)
			require.Equal(t, tt.id, id)
		})
	}
}

func TestParseRoomKeyInvalid(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"", "live", "live1000", "live:/1000", "live:1000", "live//1000", ":/", "live:/"} {
		t.Run(key, func(t *testing.T) {
			typ, id, err := ParseRoomKey(key)
			require.ErrorIs(t, err, ErrInvalidRoomKey)
			require.Empty(t, typ)
			require.Empty(t, id)
		})
	}
}

func TestKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind  Kind
		name  string
		valid bool
	}{
		{0, "kind(0)", false},
		{KindKeys, "keys", true},
		{KindRoom, "room", true},
		{KindBroadcast, "broadcast", true},
		{KindMids, "mids", true},
		{KindKick, "kick", true},
		{6, "kind(6)", false},
		{255, "kind(255)", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.name, tt.kind.String())
		assert.Equal(t, tt.valid, tt.kind.Valid(), tt.name)
	}
}

func TestMessageIDString(t *testing.T) {
	t.Parallel()
	var id MessageID
	require.True(t, id.IsZero())
	require.Equal(t, "00000000000000000000000000000000", id.String())
	id[0], id[15] = 0xab, 0x01
	require.False(t, id.IsZero())
	require.Equal(t, "ab000000000000000000000000000001", id.String())
}

func TestNewMessageIDUnique(t *testing.T) {
	t.Parallel()
	const goroutines, each = 8, 5000
	results := make([][]MessageID, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			ids := make([]MessageID, each)
			for i := range ids {
				ids[i] = NewMessageID()
			}
			results[g] = ids
		})
	}
	wg.Wait()
	seen := make(map[MessageID]struct{}, goroutines*each)
	for _, ids := range results {
		for _, id := range ids {
			require.False(t, id.IsZero())
			_, dup := seen[id]
			require.False(t, dup, "duplicate id %s", id)
			seen[id] = struct{}{}
		}
	}
	require.Len(t, seen, goroutines*each)
}

func TestMessageExpired(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name    string
		expires time.Time
		want    bool
	}{
		{"no expiry", time.Time{}, false},
		{"in the future", now.Add(time.Nanosecond), false},
		{"exactly now", now, true},
		{"in the past", now.Add(-time.Hour), true},
	}
	for _, tt := range tests {
		m := Message{Expires: tt.expires}
		assert.Equal(t, tt.want, m.Expired(now), tt.name)
	}
}

func TestMessageValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  Message
		ok   bool
	}{
		{"keys", Message{Kind: KindKeys, Node: "n1", Keys: []string{"k"}}, true},
		{"keys with an empty key", Message{Kind: KindKeys, Node: "n1", Keys: []string{""}}, true},
		{"keys without node", Message{Kind: KindKeys, Keys: []string{"k"}}, false},
		{"keys without keys", Message{Kind: KindKeys, Node: "n1"}, false},
		{"room", Message{Kind: KindRoom, Room: "live://1"}, true},
		{"room without room", Message{Kind: KindRoom}, false},
		{"broadcast", Message{Kind: KindBroadcast}, true},
		{"broadcast with speed", Message{Kind: KindBroadcast, Speed: 100}, true},
		{"broadcast negative speed", Message{Kind: KindBroadcast, Speed: -1}, false},
		{"zero kind", Message{Node: "n1", Keys: []string{"k"}}, false},
		{"unknown kind", Message{Kind: 9, Room: "live://1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.msg.Validate()
			if tt.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrInvalidMessage)
			}
		})
	}
}

func TestMessageIDForKey(t *testing.T) {
	a, err := MessageIDForKey("order-42")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := MessageIDForKey("order-42")
	c, _ := MessageIDForKey("order-43")
	if a != b || a == c || a.IsZero() {
		t.Fatalf("ids %s %s %s: want the same key to give the same id, another key another", a, b, c)
	}
	// An id's own String form is that id: a client can retry with the
	// id a push answered.
	back, err := MessageIDForKey(a.String())
	if err != nil || back != a {
		t.Fatalf("MessageIDForKey(%s) = %s, %v", a, back, err)
	}
	if p, err := ParseMessageID(a.String()); err != nil || p != a {
		t.Fatalf("ParseMessageID(%s) = %s, %v", a, p, err)
	}
	for _, bad := range []string{"", "has space", "tab\t", "crlf\r\n", "é", strings.Repeat("k", MaxIdempotencyKey+1)} {
		if _, err := MessageIDForKey(bad); !errors.Is(err, ErrInvalidMessageID) {
			t.Errorf("MessageIDForKey(%q) = %v, want ErrInvalidMessageID", bad, err)
		}
	}
	for _, bad := range []string{"", "zz", strings.Repeat("0", 32), strings.Repeat("g", 32)} {
		if _, err := ParseMessageID(bad); !errors.Is(err, ErrInvalidMessageID) {
			t.Errorf("ParseMessageID(%q) = %v, want ErrInvalidMessageID", bad, err)
		}
	}
}

// The copies of one push for different users have different ids, and none
// equals a copy of a nearby push of the same process (the counter XOR a
// small mid would: 100^1 == 103^2).
func TestMessageIDForUser(t *testing.T) {
	t.Parallel()
	seen := map[MessageID]bool{}
	for range 200 {
		id := NewMessageID()
		require.False(t, seen[id])
		seen[id] = true
		for mid := int64(1); mid <= 50; mid++ {
			u := id.ForUser(mid)
			require.False(t, seen[u], "collision at mid %d", mid)
			seen[u] = true
			require.Equal(t, u, id.ForUser(mid), "not deterministic")
		}
	}
}
