package imcloud

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

// FuzzUnmarshalMessage decodes arbitrary bytes: it must return one of the
// codec's errors or a valid message that re-encodes canonically and decodes
// to an equal message.
func FuzzUnmarshalMessage(f *testing.F) {
	accepted := time.Unix(1_700_000_000, 42)
	seeds := []Message{
		{ID: NewMessageID(), Kind: KindKeys, Op: 1000, Node: "node-1", Keys: []string{"k1", "k2", "k3"}, Body: []byte("hi"), Accepted: accepted},
		{ID: NewMessageID(), Kind: KindRoom, Op: 1001, Room: "live://1000", Body: []byte(`{"text":"hello"}`), Accepted: accepted, Expires: accepted.Add(time.Minute)},
		{ID: NewMessageID(), Kind: KindBroadcast, Op: 1002, Speed: 500, Body: []byte("all"), Accepted: accepted},
		{Kind: KindBroadcast, Op: 1000},
	}
	for i := range seeds {
		f.Add(seeds[i].AppendBinary(nil))
	}
	f.Add(raw(1, 0, field(2, uv(2)), field(11, []byte("future")), field(6, []byte("live://1"))))
	f.Add(raw(2, 0, field(2, uv(3))))
	f.Add(raw(1, 0, field(2, uv(3)), field(7, []byte("a")), field(7, []byte("b"))))
	f.Add([]byte{1, 0, 0x80})
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		var m Message
		if err := m.UnmarshalBinary(data); err != nil {
			if !errors.Is(err, ErrMalformedMessage) && !errors.Is(err, ErrInvalidMessage) && !errors.Is(err, ErrNewerVersion) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("decoded an invalid message: %v", err)
		}
		enc := m.AppendBinary(nil)
		var m2 Message
		if err := m2.UnmarshalBinary(enc); err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", m, m2)
		}
		if enc2 := m2.AppendBinary(nil); !bytes.Equal(enc, enc2) {
			t.Fatal("encoding is not canonical")
		}
	})
}
