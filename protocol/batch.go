package protocol

import "encoding/binary"

// Batch builds one op 9 frame whose body is many complete frames back to
// back (goim's Raw op). Reset it to reuse its buffer; once warm, appending
// does not allocate. The zero Batch is ready to use.
//
//	var b protocol.Batch
//	b.Reset()
//	b.Append(&push1)
//	b.AppendEncoded(sharedRoomFrame)
//	conn.Write(b.Bytes())
type Batch struct {
	buf   []byte
	count int
}

// Reset empties the batch and keeps its buffer.
func (b *Batch) Reset() {
	b.buf = AppendHeader(b.buf[:0], 0, VerGoim, OpRaw, 0)
	b.count = 0
}

func (b *Batch) ensureHeader() {
	if len(b.buf) < HeaderLen {
		b.Reset()
	}
}

// Append adds one frame to the batch.
func (b *Batch) Append(f *Frame) {
	b.ensureHeader()
	b.buf = AppendFrame(b.buf, f)
	b.count++
}

// AppendEncoded adds one already-encoded frame (for example a room push
// encoded once for every receiver). The caller vouches that it is one
// complete frame and not an op 9.
func (b *Batch) AppendEncoded(frame []byte) {
	b.ensureHeader()
	b.buf = append(b.buf, frame...)
	b.count++
}

// Count is the number of frames in the batch.
func (b *Batch) Count() int { return b.count }

// BodyLen is the size of the batch's body (the inner frames).
func (b *Batch) BodyLen() int {
	if len(b.buf) < HeaderLen {
		return 0
	}
	return len(b.buf) - HeaderLen
}

// Bytes returns the op 9 frame, header included. It aliases the batch's
// buffer: valid until the next Append or Reset.
func (b *Batch) Bytes() []byte {
	b.ensureHeader()
	binary.BigEndian.PutUint32(b.buf[packLenOff:], uint32(len(b.buf)))
	return b.buf
}

// BatchIter walks the frames inside an op 9 body without copying.
//
//	it := protocol.NewBatchIter(f.Body)
//	var inner protocol.Frame
//	for it.Next(&inner) { ... }
//	if err := it.Err(); err != nil { ... }
type BatchIter struct {
	rest []byte
	err  error
}

// NewBatchIter returns an iterator over the frames in body.
func NewBatchIter(body []byte) BatchIter { return BatchIter{rest: body} }

// Next decodes the next inner frame into f (f.Body aliases the batch body)
// and reports whether there was one. It stops at the end of the body or at
// the first malformed frame (see Err). An inner op 9 is ErrNestedBatch.
func (it *BatchIter) Next(f *Frame) bool {
	if it.err != nil || len(it.rest) == 0 {
		return false
	}
	n, err := ParseFrame(it.rest, f, 0)
	if err != nil {
		it.err = err
		return false
	}
	if f.Op == OpRaw {
		it.err = ErrNestedBatch
		return false
	}
	it.rest = it.rest[n:]
	return true
}

// Err is the error that stopped Next, or nil at a clean end.
func (it *BatchIter) Err() error { return it.err }
