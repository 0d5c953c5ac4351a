package imcloud

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Raw encoding helpers, written from the layout in message_codec.go rather
// than through the codec, so the tests pin the wire format.

func field(tag uint64, val []byte) []byte {
	b := binary.AppendUvarint(nil, tag)
	b = binary.AppendUvarint(b, uint64(len(val)))
	return append(b, val...)
}

func uv(v uint64) []byte { return binary.AppendUvarint(nil, v) }
func sv(v int64) []byte  { return binary.AppendVarint(nil, v) }

func raw(major, minor byte, fields ...[]byte) []byte {
	b := []byte{major, minor}
	for _, f := range fields {
		b = append(b, f...)
	}
	return b
}

// overlong is a varint of 11 bytes: more than any uint64 takes.
var overlong = []byte{0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}

// sameMessage compares two messages, times by instant.
func sameMessage(t *testing.T, want, got *Message) {
	t.Helper()
	assert.Equal(t, want.ID, got.ID, "ID")
	assert.Equal(t, want.Kind, got.Kind, "Kind")
	assert.Equal(t, want.Op, got.Op, "Op")
	assert.Equal(t, want.Node, got.Node, "Node")
	assert.Equal(t, len(want.Keys), len(got.Keys), "len(Keys)")
	if len(want.Keys) > 0 {
		assert.Equal(t, want.Keys, got.Keys, "Keys")
	}
	assert.Equal(t, want.Room, got.Room, "Room")
	assert.True(t, bytes.Equal(want.Body, got.Body), "Body")
	assert.Equal(t, want.Speed, got.Speed, "Speed")
	assert.True(t, want.Accepted.Equal(got.Accepted), "Accepted %v != %v", want.Accepted, got.Accepted)
	assert.True(t, want.Expires.Equal(got.Expires), "Expires %v != %v", want.Expires, got.Expires)
}

func manyKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%06d", i)
	}
	return keys
}

func TestMessageRoundTrip(t *testing.T) {
	t.Parallel()
	accepted := time.Unix(1_700_000_000, 123_456_789)
	tests := []struct {
		name string
		msg  Message
	}{
		{"keys one", Message{ID: NewMessageID(), Kind: KindKeys, Op: 1000, Node: "node-1", Keys: []string{"k1"}, Body: []byte("hi"), Accepted: accepted}},
		{"keys many", Message{ID: NewMessageID(), Kind: KindKeys, Op: 1001, Node: "node-2", Keys: manyKeys(2000), Body: []byte("hi"), Accepted: accepted}},
		{"keys with empty and repeated keys", Message{Kind: KindKeys, Op: 1000, Node: "n", Keys: []string{"", "a", "a", ""}}},
		{"room", Message{ID: NewMessageID(), Kind: KindRoom, Op: 1002, Room: "live://1000", Body: []byte(`{"text":"hello"}`), Accepted: accepted}},
		{"room unicode", Message{Kind: KindRoom, Op: 1000, Room: "直播://房间", Body: []byte("体")}},
		{"broadcast", Message{ID: NewMessageID(), Kind: KindBroadcast, Op: 1000, Body: []byte("all")}},
		{"broadcast with speed", Message{ID: NewMessageID(), Kind: KindBroadcast, Op: 1000, Speed: 5000, Body: []byte("all"), Accepted: accepted}},
		{"broadcast max speed", Message{Kind: KindBroadcast, Op: 1000, Speed: math.MaxInt32}},
		{"expiry set", Message{ID: NewMessageID(), Kind: KindRoom, Op: 1000, Room: "live://1", Accepted: accepted, Expires: accepted.Add(30 * time.Second)}},
		{"expiry before 1970", Message{Kind: KindRoom, Op: 1000, Room: "live://1", Accepted: time.Unix(-100, 5), Expires: time.Unix(-1, 0)}},
		{"expiry at the epoch", Message{Kind: KindRoom, Op: 1000, Room: "live://1", Expires: time.Unix(0, 0)}},
		{"zero ID", Message{Kind: KindKeys, Op: 1000, Node: "n", Keys: []string{"k"}, Body: []byte("b")}},
		{"empty body", Message{ID: NewMessageID(), Kind: KindRoom, Op: 1000, Room: "live://1"}},
		{"large body", Message{Kind: KindBroadcast, Op: 1000, Body: bytes.Repeat([]byte{0xfe}, 1<<20)}},
		{"op zero", Message{Kind: KindBroadcast}},
		{"op negative", Message{Kind: KindBroadcast, Op: math.MinInt32}},
		{"op max", Message{Kind: KindBroadcast, Op: math.MaxInt32}},
		{"node on a room message", Message{Kind: KindRoom, Op: 1000, Room: "live://1", Node: "n", Keys: []string{"k"}}},
		{"local time", Message{Kind: KindBroadcast, Op: 1000, Accepted: time.Now(), Expires: time.Now().Add(time.Hour)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := tt.msg.MarshalBinary()
			require.NoError(t, err)
			require.Equal(t, enc, tt.msg.AppendBinary(nil), "MarshalBinary and AppendBinary disagree")
			require.Equal(t, byte(1), enc[0], "a message is written with the lowest major that carries it")
			require.Equal(t, byte(MessageMinor), enc[1])

			var got Message
			require.NoError(t, got.UnmarshalBinary(enc))
			sameMessage(t, &tt.msg, &got)
			if len(tt.msg.Body) == 0 {
				require.Nil(t, got.Body)
			}
			if tt.msg.Accepted.IsZero() {
				require.True(t, got.Accepted.IsZero())
			}
			if tt.msg.Expires.IsZero() {
				require.True(t, got.Expires.IsZero())
			}
			// Re-encoding the decoded message gives the same bytes.
			require.Equal(t, enc, got.AppendBinary(nil))
		})
	}
}

func TestMessageEncodingOmitsUnsetFields(t *testing.T) {
	t.Parallel()
	// A broadcast with nothing set: versions, kind and op only.
	m := Message{Kind: KindBroadcast, Op: 1000}
	want := raw(1, MessageMinor, field(2, uv(3)), field(3, sv(1000)))
	require.Equal(t, want, m.AppendBinary(nil))

	// Every field, in tag order.
	id := MessageID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	m = Message{ID: id, Kind: KindKeys, Op: -5, Node: "n", Keys: []string{"a", "b"}, Room: "r://1",
		Body: []byte("x"), Speed: 7, Accepted: time.Unix(0, 10), Expires: time.Unix(0, -10)}
	want = raw(1, MessageMinor,
		field(1, id[:]), field(2, uv(1)), field(3, sv(-5)), field(4, []byte("n")),
		field(5, []byte("a")), field(5, []byte("b")), field(6, []byte("r://1")), field(7, []byte("x")),
		field(8, sv(7)), field(9, sv(10)), field(10, sv(-10)))
	require.Equal(t, want, m.AppendBinary(nil))
}

func TestMessageAppendBinaryKeepsPrefix(t *testing.T) {
	t.Parallel()
	m := Message{Kind: KindRoom, Op: 1000, Room: "live://1", Body: []byte("b")}
	buf := make([]byte, 0, 256)
	buf = append(buf, "prefix"...)
	out := m.AppendBinary(buf)
	require.Equal(t, "prefix", string(out[:6]))
	require.Equal(t, m.AppendBinary(nil), out[6:])
	require.Same(t, &buf[:1][0], &out[0], "appended in place when capacity allows")
}

func TestMessageUnmarshalCopiesAndResets(t *testing.T) {
	t.Parallel()
	src := Message{ID: NewMessageID(), Kind: KindKeys, Op: 1000, Node: "node", Keys: []string{"key"}, Body: []byte("body")}
	enc := src.AppendBinary(nil)

	got := Message{Room: "stale://room", Speed: 9, Expires: time.Now(), Keys: []string{"stale"}}
	require.NoError(t, got.UnmarshalBinary(enc))
	sameMessage(t, &src, &got)

	// The decoded message does not alias the input.
	for i := range enc {
		enc[i] = 0xff
	}
	require.Equal(t, "node", got.Node)
	require.Equal(t, []string{"key"}, got.Keys)
	require.Equal(t, []byte("body"), got.Body)
}

// TestMessageForwardCompatible: fields from a newer minor version are
// skipped wherever they appear.
func TestMessageForwardCompatible(t *testing.T) {
	t.Parallel()
	kind := field(2, uv(uint64(KindRoom)))
	op := field(3, sv(1000))
	room := field(6, []byte("live://1"))
	body := field(7, []byte("hello"))
	want := Message{Kind: KindRoom, Op: 1000, Room: "live://1", Body: []byte("hello")}
	tests := []struct {
		name string
		in   []byte
	}{
		{"known fields only", raw(1, 0, kind, op, room, body)},
		{"unknown tag in the middle", raw(1, 0, kind, op, field(41, []byte("new field")), room, body)},
		{"unknown tag first", raw(1, 0, field(99, []byte{1, 2, 3}), kind, op, room, body)},
		{"unknown tag last", raw(1, 0, kind, op, room, body, field(42, nil))},
		{"unknown tag multi-byte", raw(1, 0, kind, field(1<<40, bytes.Repeat([]byte("z"), 300)), op, room, body)},
		{"unknown tag 0", raw(1, 0, field(0, []byte{7}), kind, op, room, body)},
		{"fields out of order", raw(1, 0, body, room, op, kind)},
		{"newer minor version", raw(1, 200, kind, op, field(43, uv(5)), room, body)},
		{"several unknown", raw(1, 3, field(20, nil), kind, field(21, []byte("a")), op, field(22, overlong), room, body)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Message
			require.NoError(t, got.UnmarshalBinary(tt.in))
			sameMessage(t, &want, &got)
		})
	}
}

func TestMessageNewerVersion(t *testing.T) {
	t.Parallel()
	valid := (&Message{Kind: KindBroadcast, Op: 1000}).AppendBinary(nil)
	for _, in := range [][]byte{
		append([]byte{MessageMajor + 1, 0}, valid[2:]...),
		{MessageMajor + 1, 0},
		{MessageMajor + 1, 7, 0xff, 0xff, 0xff}, // garbage after a newer version is not ours to judge
		{255, 255},
	} {
		var m Message
		err := m.UnmarshalBinary(in)
		require.ErrorIs(t, err, ErrNewerVersion, "% x", in)
		require.False(t, errors.Is(err, ErrMalformedMessage))
		require.False(t, errors.Is(err, ErrInvalidMessage))
	}
}

func TestMessageDecodeErrors(t *testing.T) {
	t.Parallel()
	kind := field(2, uv(uint64(KindBroadcast)))
	op := field(3, sv(1000))
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"nil", nil, ErrMalformedMessage},
		{"one byte", []byte{1}, ErrMalformedMessage},
		{"major 0", raw(0, 0, kind, op), ErrMalformedMessage},
		{"garbage", []byte("hello, world"), ErrNewerVersion}, // 'h' reads as major 104
		{"garbage with major 1", append([]byte{1, 0}, "\xff\xff\xff\xff"...), ErrMalformedMessage},
		{"tag truncated", raw(1, 0, kind, op, []byte{0x80}), ErrMalformedMessage},
		{"tag overlong", raw(1, 0, kind, op, overlong), ErrMalformedMessage},
		{"length missing", raw(1, 0, kind, op, []byte{7}), ErrMalformedMessage},
		{"length truncated", raw(1, 0, kind, op, []byte{7, 0x80}), ErrMalformedMessage},
		{"length overlong", raw(1, 0, kind, op, append([]byte{7}, overlong...)), ErrMalformedMessage},
		{"length past the end", raw(1, 0, kind, op, []byte{7, 5, 'a', 'b'}), ErrMalformedMessage},
		{"length huge", raw(1, 0, kind, op, append([]byte{7}, uv(math.MaxUint64)...)), ErrMalformedMessage},
		{"length max int64", raw(1, 0, kind, op, append([]byte{7}, uv(math.MaxInt64)...)), ErrMalformedMessage},
		{"unknown field past the end", raw(1, 0, kind, op, []byte{50, 3, 'a'}), ErrMalformedMessage},
		{"id too short", raw(1, 0, field(1, make([]byte, 15)), kind, op), ErrMalformedMessage},
		{"id too long", raw(1, 0, field(1, make([]byte, 17)), kind, op), ErrMalformedMessage},
		{"kind empty value", raw(1, 0, field(2, nil), op), ErrMalformedMessage},
		{"kind trailing byte", raw(1, 0, field(2, []byte{3, 0}), op), ErrMalformedMessage},
		{"kind overlong varint", raw(1, 0, field(2, overlong), op), ErrMalformedMessage},
		{"kind 256", raw(1, 0, field(2, uv(256)), op), ErrInvalidMessage},
		{"kind max uint64", raw(1, 0, field(2, uv(math.MaxUint64)), op), ErrInvalidMessage},
		{"kind 0", raw(1, 0, field(2, uv(0)), op), ErrInvalidMessage},
		{"kind 4", raw(1, 0, field(2, uv(4)), op), ErrInvalidMessage},
		{"kind missing", raw(1, 0, op), ErrInvalidMessage},
		{"no fields", raw(1, 0), ErrInvalidMessage},
		{"op over int32", raw(1, 0, kind, field(3, sv(math.MaxInt32+1))), ErrMalformedMessage},
		{"op under int32", raw(1, 0, kind, field(3, sv(math.MinInt32-1))), ErrMalformedMessage},
		{"op max int64", raw(1, 0, kind, field(3, sv(math.MaxInt64))), ErrMalformedMessage},
		{"op empty", raw(1, 0, kind, field(3, nil)), ErrMalformedMessage},
		{"op trailing byte", raw(1, 0, kind, field(3, append(sv(5), 0))), ErrMalformedMessage},
		{"speed over int32", raw(1, 0, kind, op, field(8, sv(1<<32))), ErrMalformedMessage},
		{"speed negative", raw(1, 0, kind, op, field(8, sv(-1))), ErrInvalidMessage},
		{"accepted overlong", raw(1, 0, kind, op, field(9, overlong)), ErrMalformedMessage},
		{"accepted empty", raw(1, 0, kind, op, field(9, nil)), ErrMalformedMessage},
		{"expires truncated varint", raw(1, 0, kind, op, field(10, []byte{0x80})), ErrMalformedMessage},
		{"duplicate body", raw(1, 0, kind, op, field(7, []byte("a")), field(7, []byte("b"))), ErrMalformedMessage},
		{"duplicate empty body", raw(1, 0, kind, op, field(7, nil), field(7, nil)), ErrMalformedMessage},
		{"keys without node", raw(1, 0, field(2, uv(1)), op, field(5, []byte("k"))), ErrInvalidMessage},
		{"keys without keys", raw(1, 0, field(2, uv(1)), op, field(4, []byte("n"))), ErrInvalidMessage},
		{"room without room", raw(1, 0, field(2, uv(2)), op), ErrInvalidMessage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m Message
			err := m.UnmarshalBinary(tt.in)
			require.ErrorIs(t, err, tt.want)
			for _, other := range []error{ErrMalformedMessage, ErrInvalidMessage, ErrNewerVersion} {
				if other != tt.want {
					require.False(t, errors.Is(err, other), "%v is also %v", err, other)
				}
			}
			require.True(t, strings.HasPrefix(err.Error(), "imcloud: "), err.Error())
		})
	}
}

// TestMessageDecodeEveryTruncation cuts a full encoding at every length:
// each cut is an error or a valid message, never a panic.
func TestMessageDecodeEveryTruncation(t *testing.T) {
	t.Parallel()
	m := Message{ID: NewMessageID(), Kind: KindKeys, Op: 1000, Node: "node", Keys: []string{"a", "b"},
		Body: []byte("body"), Speed: 3, Accepted: time.Unix(5, 6), Expires: time.Unix(7, 8)}
	enc := m.AppendBinary(nil)
	for i := 0; i < len(enc); i++ {
		var got Message
		err := got.UnmarshalBinary(enc[:i])
		if err != nil {
			require.True(t, errors.Is(err, ErrMalformedMessage) || errors.Is(err, ErrInvalidMessage), "cut at %d: %v", i, err)
		}
	}
}

func TestMessageStreamsAndMids(t *testing.T) {
	t.Parallel()
	// A mids message is major 2: a reader of major 1 sets it aside.
	m := Message{ID: NewMessageID(), Kind: KindMids, Op: 1000, Mids: []int64{42, 7}, Body: []byte("hi")}
	enc := m.AppendBinary(nil)
	require.Equal(t, byte(2), enc[0])
	var got Message
	require.NoError(t, got.UnmarshalBinary(enc))
	require.Equal(t, m.Mids, got.Mids)
	require.Equal(t, KindMids, got.Kind)

	// A delivery with its place in a stream stays major 1 (old nodes skip
	// the new tags and deliver it as before).
	d := Message{ID: NewMessageID(), Kind: KindKeys, Op: 1000, Node: "n", Keys: []string{"k"},
		Stream: UserStream(42), Epoch: "e1", Offset: 1234}
	enc = d.AppendBinary(nil)
	require.Equal(t, byte(1), enc[0])
	require.NoError(t, got.UnmarshalBinary(enc))
	require.Equal(t, d.Stream, got.Stream)
	require.Equal(t, "e1", got.Epoch)
	require.EqualValues(t, 1234, got.Offset)

	for name, bad := range map[string]Message{
		"mids without mids": {Kind: KindMids, Op: 1000},
		"bad stream":        {Kind: KindRoom, Room: "live://1", Stream: "x:1"},
		"negative offset":   {Kind: KindRoom, Room: "live://1", Stream: RoomStream("live://1"), Offset: -1},
	} {
		require.ErrorIs(t, got.UnmarshalBinary(bad.AppendBinary(nil)), ErrInvalidMessage, name)
	}
}

func TestStreamNames(t *testing.T) {
	t.Parallel()
	require.Equal(t, Stream("u:42"), UserStream(42))
	require.Equal(t, Stream("r:live://1000"), RoomStream("live://1000"))
	mid, ok := UserStream(42).Mid()
	require.True(t, ok)
	require.EqualValues(t, 42, mid)
	room, ok := RoomStream("live://1").Room()
	require.True(t, ok)
	require.Equal(t, "live://1", room)
	for _, good := range []Stream{"u:1", "r:a://b", "r:live://"} {
		require.NoError(t, good.Validate(), good)
	}
	for _, bad := range []Stream{"", "u:", "u:0", "u:-1", "u:007", "u:1x", "r:", "r:nokey", "x:1",
		Stream("r:a://" + strings.Repeat("b", 300))} {
		require.ErrorIs(t, bad.Validate(), ErrInvalidStream, bad)
	}
}

// A kick travels with major version 3 and keeps its reason; a reader of
// major 2 (a job or cloud from before kicks) refuses it as newer.
func TestKickMessage(t *testing.T) {
	t.Parallel()
	for _, in := range []Message{
		{ID: NewMessageID(), Kind: KindKick, Mids: []int64{42}, Reason: "banned"},
		{ID: NewMessageID(), Kind: KindKick, Node: "n1", Keys: []string{"a", "b"}},
	} {
		b, err := in.MarshalBinary()
		require.NoError(t, err)
		require.Equal(t, byte(3), b[0])
		var out Message
		require.NoError(t, out.UnmarshalBinary(b))
		require.Equal(t, in.Reason, out.Reason)
		require.Equal(t, in.Mids, out.Mids)
		require.Equal(t, in.Keys, out.Keys)
	}
	require.ErrorIs(t, (&Message{Kind: KindKick, Node: "n1"}).Validate(), ErrInvalidMessage)
	require.ErrorIs(t, (&Message{Kind: KindKick, Keys: []string{"a"}}).Validate(), ErrInvalidMessage)
}
