package imcloud

import (
	"bytes"
	"testing"
	"time"
)

func benchMessages() []struct {
	name string
	msg  Message
} {
	body := bytes.Repeat([]byte("b"), 128)
	now := time.Unix(1_700_000_000, 0)
	return []struct {
		name string
		msg  Message
	}{
		{"keys=1", Message{ID: NewMessageID(), Kind: KindKeys, Op: 1000, Node: "node-1", Keys: []string{"3f2a9c1e-key"}, Body: body, Accepted: now}},
		{"keys=100", Message{ID: NewMessageID(), Kind: KindKeys, Op: 1000, Node: "node-1", Keys: manyKeys(100), Body: body, Accepted: now}},
		{"room", Message{ID: NewMessageID(), Kind: KindRoom, Op: 1000, Room: "live://1000", Body: body, Accepted: now, Expires: now.Add(time.Minute)}},
		{"broadcast", Message{ID: NewMessageID(), Kind: KindBroadcast, Op: 1000, Speed: 1000, Body: body, Accepted: now}},
	}
}

func BenchmarkMessageAppendBinary(b *testing.B) {
	for _, bm := range benchMessages() {
		b.Run(bm.name, func(b *testing.B) {
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			b.SetBytes(int64(len(bm.msg.AppendBinary(nil))))
			for b.Loop() {
				buf = bm.msg.AppendBinary(buf[:0])
			}
		})
	}
}

func BenchmarkMessageUnmarshalBinary(b *testing.B) {
	for _, bm := range benchMessages() {
		b.Run(bm.name, func(b *testing.B) {
			enc := bm.msg.AppendBinary(nil)
			var m Message
			b.ReportAllocs()
			b.SetBytes(int64(len(enc)))
			for b.Loop() {
				if err := m.UnmarshalBinary(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNewMessageID(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = NewMessageID()
		}
	})
}
