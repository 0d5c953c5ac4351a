package protocol

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// fuzzSeeds are real frames: what a goim client sends and receives, and
// the malformed frames a server must refuse.
func fuzzSeeds() [][]byte {
	auth := AppendFrame(nil, &Frame{Ver: 1, Op: OpAuth, Seq: 1,
		Body: []byte(`{"mid":123,"key":"","room_id":"live://1000","platform":"web","accepts":[1000,1001,1002],"token":"t"}`)})
	heartbeat := AppendFrame(nil, &Frame{Ver: 1, Op: OpHeartbeat, Seq: 2})
	reply := AppendFrame(nil, &Frame{Ver: 1, Op: OpHeartbeatReply, Seq: 2, Body: AppendHeartbeatBody(nil, 42)})
	var b Batch
	b.Append(&Frame{Ver: 1, Op: 1000, Body: []byte("hello")})
	b.Append(&Frame{Ver: 1, Op: 1001, Body: []byte(`{"n":1}`)})
	b.Append(&Frame{Ver: 1, Op: 1002})
	batch := append([]byte(nil), b.Bytes()...)
	oversized := AppendHeader(nil, MaxInboundBody+1, 1, OpSendMsg, 3)
	oversized = append(oversized, make([]byte, MaxInboundBody+1)...)
	return [][]byte{
		auth,
		heartbeat,
		reply,
		batch,
		cat(auth, heartbeat, batch), // a stream of frames
		auth[:len(auth)-5],          // truncated body
		heartbeat[:9],               // truncated header
		oversized,
		AppendHeader(nil, 0, 2, OpAuth, 1)[:16], // ver 2, empty body
		AppendFrame(nil, &Frame{Ver: 1, Op: OpRaw, Body: batch}), // nested batch
	}
}

// knownErr reports whether err is one the codec documents.
func knownErr(err error) bool {
	for _, e := range []error{ErrHeaderLen, ErrPackLen, ErrBodyTooLarge, ErrTruncated, ErrNestedBatch, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// checkBatch iterates an op 9 body and checks every inner frame re-encodes
// to its bytes.
func checkBatch(t *testing.T, body []byte) {
	it := NewBatchIter(body)
	var inner Frame
	off := 0
	for it.Next(&inner) {
		enc := AppendFrame(nil, &inner)
		if !bytes.Equal(enc, body[off:off+len(enc)]) {
			t.Fatalf("inner frame at %d re-encodes differently", off)
		}
		off += len(enc)
	}
	if err := it.Err(); err != nil {
		if !knownErr(err) {
			t.Fatalf("batch: unexpected error %v", err)
		}
	} else if off != len(body) {
		t.Fatalf("batch iteration stopped at %d of %d without an error", off, len(body))
	}
}

// FuzzReadFrame reads a stream of frames with ReadFrame under the inbound
// cap; every frame read must re-encode to the bytes it came from and agree
// with ParseFrame over the same bytes.
func FuzzReadFrame(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		var fr Frame
		off := 0
		for {
			err := ReadFrame(r, &fr, MaxInboundBody)
			var pf Frame
			n, perr := ParseFrame(data[off:], &pf, MaxInboundBody)
			if err != nil {
				if !knownErr(err) {
					t.Fatalf("ReadFrame: unexpected error %v", err)
				}
				if perr == nil {
					t.Fatalf("ParseFrame accepted what ReadFrame refused with %v", err)
				}
				if errors.Is(err, io.EOF) && off != len(data) {
					t.Fatalf("io.EOF at %d of %d", off, len(data))
				}
				return
			}
			if perr != nil {
				t.Fatalf("ReadFrame accepted what ParseFrame refused with %v", perr)
			}
			enc := AppendFrame(nil, &fr)
			if n != len(enc) || !bytes.Equal(enc, data[off:off+n]) {
				t.Fatalf("frame at %d re-encodes differently", off)
			}
			if fr.Ver != pf.Ver || fr.Op != pf.Op || fr.Seq != pf.Seq || !bytes.Equal(fr.Body, pf.Body) {
				t.Fatalf("ReadFrame and ParseFrame disagree at %d", off)
			}
			if fr.Op == OpRaw {
				checkBatch(t, fr.Body)
			}
			off += n
		}
	})
}

// FuzzParseFrame parses frames from a byte slice without a cap (outbound
// frames have none); a parsed frame must re-encode to its bytes, and an op
// 9 body must iterate without panicking.
func FuzzParseFrame(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rest := data
		for len(rest) > 0 {
			var fr Frame
			n, err := ParseFrame(rest, &fr, 0)
			if err != nil {
				if !knownErr(err) || n != 0 {
					t.Fatalf("ParseFrame: %d, %v", n, err)
				}
				return
			}
			if n < HeaderLen || n > len(rest) {
				t.Fatalf("ParseFrame used %d of %d bytes", n, len(rest))
			}
			enc := AppendFrame(nil, &fr)
			if !bytes.Equal(enc, rest[:n]) {
				t.Fatal("frame re-encodes differently")
			}
			checkBatch(t, fr.Body) // any body, to fuzz the iterator too
			rest = rest[n:]
		}
	})
}
