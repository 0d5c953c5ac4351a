package protocol

import (
	"bufio"
	"fmt"
	"io"
	"testing"
)

// benchBody is a typical small push body (111 bytes, 127 with the header).
var benchBody = []byte(`{"type":"chat","from":12345,"room":"live://1000","text":"hello, this is a push body of about 128 bytes ......"}`)

func BenchmarkAppendFrame(b *testing.B) {
	f := Frame{Ver: VerGoim, Op: OpPushMin, Body: benchBody}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(f.Size()))
	for b.Loop() {
		buf = AppendFrame(buf[:0], &f)
	}
}

func BenchmarkWriteFrame(b *testing.B) {
	f := Frame{Ver: VerGoim, Op: OpPushMin, Body: benchBody}
	w := bufio.NewWriter(io.Discard)
	b.ReportAllocs()
	b.SetBytes(int64(f.Size()))
	for b.Loop() {
		if err := WriteFrame(w, &f); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
}

// repeatReader serves the same bytes forever.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

func BenchmarkReadFrame(b *testing.B) {
	enc := AppendFrame(nil, &Frame{Ver: VerGoim, Op: OpSendMsg, Seq: 7, Body: benchBody})
	r := bufio.NewReader(&repeatReader{data: enc})
	var f Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if err := ReadFrame(r, &f, MaxInboundBody); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseFrame(b *testing.B) {
	enc := AppendFrame(nil, &Frame{Ver: VerGoim, Op: OpSendMsg, Seq: 7, Body: benchBody})
	var f Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, err := ParseFrame(enc, &f, MaxInboundBody); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBatchAppend(b *testing.B) {
	f := Frame{Ver: VerGoim, Op: OpPushMin, Body: benchBody}
	for _, n := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("frames=%d", n), func(b *testing.B) {
			var batch Batch
			b.ReportAllocs()
			b.SetBytes(int64(HeaderLen + n*f.Size()))
			for b.Loop() {
				batch.Reset()
				for range n {
					batch.Append(&f)
				}
				_ = batch.Bytes()
			}
		})
	}
}

func BenchmarkBatchIter(b *testing.B) {
	var batch Batch
	for range 16 {
		batch.Append(&Frame{Ver: VerGoim, Op: OpPushMin, Body: benchBody})
	}
	body := batch.Bytes()[HeaderLen:]
	var f Frame
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		it := NewBatchIter(body)
		for it.Next(&f) {
		}
		if it.Err() != nil {
			b.Fatal(it.Err())
		}
	}
}
