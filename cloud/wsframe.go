package cloud

import (
	"slices"

	"github.com/gobwas/ws"
)

// appendWSFrameHeader appends the header of an unmasked, final server
// frame with opcode op and an n-byte payload, encoded by gobwas/ws.
//
// ws.WriteHeaderBuffer encodes into a caller's buffer but hands the bytes
// to an io.Writer; here the buffer is dst's spare capacity and the writer
// only accepts the bytes already in place, so appending a header costs no
// allocation once dst has ws.MaxHeaderSize bytes to spare.
func appendWSFrameHeader(dst []byte, op ws.OpCode, n int) []byte {
	h := ws.Header{Fin: true, OpCode: op, Length: int64(n)}
	size := ws.HeaderSize(h)
	dst = slices.Grow(dst, ws.MaxHeaderSize)
	// Cannot fail: the buffer holds ws.MaxHeaderSize bytes, an int length
	// fits the 63 bits a frame allows, and inPlace takes every write.
	_ = ws.WriteHeaderBuffer(inPlace{}, h, dst[len(dst):len(dst)+ws.MaxHeaderSize])
	return dst[:len(dst)+size]
}

// inPlace is the io.Writer for appendWSFrameHeader: the header is already
// in the destination buffer, so writing it is a no-op. Zero-sized, so
// passing it as an io.Writer allocates nothing.
type inPlace struct{}

func (inPlace) Write(p []byte) (int, error) { return len(p), nil }
