package main

import (
	"testing"
	"time"

	"github.com/imcloud/imcloud/protocol"
)

// A drain's op 6 gives the slot its reconnect hint and is never counted
// as a push; a push is recorded once per tag, at its first arrival.
func TestScaleSlotRecordsPushesAndHint(t *testing.T) {
	sched := time.Now().Add(-30 * time.Millisecond)
	var b []byte
	b = protocol.AppendFrame(b, &protocol.Frame{Ver: protocol.VerExtensions, Op: protocol.OpDisconnect,
		Body: []byte(`{"reason":"draining","reconnect_ms":4200}`)})
	b = protocol.AppendFrame(b, &protocol.Frame{Ver: protocol.VerGoim, Op: 1000, Body: appendBody(nil, 2, sched, 64)})
	b = protocol.AppendFrame(b, &protocol.Frame{Ver: protocol.VerGoim, Op: 1000, Body: appendBody(nil, 2, sched, 64)})
	now := time.Now().UnixNano()
	bad := 0
	used, ds, err := consume(b, rxTime{read: now, kernel: now - int64(time.Millisecond)}, nil, &bad)
	if err != nil || used != len(b) || bad != 0 {
		t.Fatalf("consume: used %d of %d, bad %d, %v", used, len(b), bad, err)
	}
	s := &scaleSlot{}
	s.record(ds)
	if h := time.Duration(s.hint.Load()); h != 4200*time.Millisecond {
		t.Fatalf("hint %v, want 4.2s", h)
	}
	got := time.Duration(s.got[2].Load())
	if got < 28*time.Millisecond || got > time.Second {
		t.Fatalf("tag 2 arrived %v after its send, want about 29 ms", got)
	}
	if s.got[1].Load() != 0 {
		t.Fatal("tag 1 recorded without a push")
	}
	sh := &shard{}
	sh.add(ds, 0)
	if sh.recv[0] != 0 || sh.recv[2] != 2 {
		t.Fatalf("shard counted %d untagged and %d of tag 2, want 0 and 2 (op 6 is no push)", sh.recv[0], sh.recv[2])
	}
}

func TestDisconnectHint(t *testing.T) {
	for body, want := range map[string]time.Duration{
		`{"reason":"draining","reconnect_ms":1500}`: 1500 * time.Millisecond,
		`{"reason":"kicked","reconnect_ms":0}`:      0,
		`{"reconnect_ms":-5}`:                       0,
		`not json`:                                  0,
	} {
		if got := disconnectHint([]byte(body)); got != want {
			t.Errorf("disconnectHint(%s) = %v, want %v", body, got, want)
		}
	}
}
