package protocol

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"
)

// TestPushAtBytes pins the op 24 body of docs/protocol-recovery.md's example: op
// 1000 at offset 120 of stream "u:42", epoch "a1b2", body "hi".
func TestPushAtBytes(t *testing.T) {
	b, err := AppendPushAt(nil, 1000, 120, "u:42", "a1b2", []byte("hi"))
	if err != nil {
		t.Fatal(err)
	}
	want := "000003e8" + "0000000000000078" + "04" + hex.EncodeToString([]byte("u:42")) + "04" + hex.EncodeToString([]byte("a1b2")) + "6869"
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("body %s, want %s", got, want)
	}
	if n := PushAtLen("u:42", "a1b2", 2); n != len(b) {
		t.Fatalf("PushAtLen %d, body %d bytes", n, len(b))
	}
	p, err := ParsePushAt(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Op != 1000 || p.Offset != 120 || string(p.Stream) != "u:42" || string(p.Epoch) != "a1b2" || string(p.Body) != "hi" {
		t.Fatalf("parsed %+v", p)
	}
}

func TestPushAtEmptyAndLimits(t *testing.T) {
	b, err := AppendPushAt(nil, 9, -1, "", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePushAt(b)
	if err != nil || p.Op != 9 || p.Offset != -1 || len(p.Stream)+len(p.Epoch)+len(p.Body) != 0 {
		t.Fatalf("parsed %+v, %v", p, err)
	}
	long := string(bytes.Repeat([]byte("x"), MaxPushAtName+1))
	if out, err := AppendPushAt([]byte("keep"), 1000, 1, long, "e", nil); !errors.Is(err, ErrPushAt) || string(out) != "keep" {
		t.Fatalf("stream over the limit: %q, %v", out, err)
	}
	if _, err := AppendPushAt(nil, 1000, 1, "u:1", long, nil); !errors.Is(err, ErrPushAt) {
		t.Fatalf("epoch over the limit: %v", err)
	}
	max := string(bytes.Repeat([]byte("x"), MaxPushAtName))
	b, err = AppendPushAt(nil, 1000, 1, max, max, []byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := ParsePushAt(b); err != nil || string(p.Stream) != max || string(p.Epoch) != max || string(p.Body) != "b" {
		t.Fatalf("longest names: %v", err)
	}
}

// TestParsePushAtTruncated: every prefix shorter than the body's fixed
// part and names is ErrPushAt.
func TestParsePushAtTruncated(t *testing.T) {
	b, _ := AppendPushAt(nil, 1000, 7, "r:live://1", "c3", nil)
	for n := 0; n < len(b); n++ {
		if _, err := ParsePushAt(b[:n]); !errors.Is(err, ErrPushAt) {
			t.Fatalf("prefix of %d bytes: %v", n, err)
		}
	}
}

// FuzzParsePushAt: any bytes parse or fail with ErrPushAt, and what parses
// re-encodes to the same bytes.
func FuzzParsePushAt(f *testing.F) {
	seed, _ := AppendPushAt(nil, 1000, 120, "u:42", "a1b2", []byte("hi"))
	f.Add(seed)
	f.Add(seed[:13])
	f.Add([]byte{})
	f.Add(make([]byte, 14))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParsePushAt(data)
		if err != nil {
			if !errors.Is(err, ErrPushAt) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		b, err := AppendPushAt(nil, p.Op, p.Offset, string(p.Stream), string(p.Epoch), p.Body)
		if err != nil || !bytes.Equal(b, data) {
			t.Fatalf("re-encodes to %x, want %x (%v)", b, data, err)
		}
	})
}
