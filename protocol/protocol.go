// Package protocol is the client wire codec of imcloud, byte for byte the
// goim v2 binary protocol (docs/protocol.md):
//
//	packLen int32 | headerLen int16 (16) | ver int16 | op int32 | seq int32 | body
//
// All integers are big-endian. The codec works on caller-owned buffers and
// allocates nothing on the hot path: ReadFrame reuses the Frame's body
// buffer, AppendFrame and Batch append to slices the caller keeps.
//
// The functions are pure and safe for concurrent use; a Frame or Batch
// value belongs to one goroutine at a time.
package protocol

import (
	"encoding/binary"
	"errors"
)

// Sizes of the frame header.
const (
	// HeaderLen is the size of every frame header; headerLen on the wire
	// must equal it.
	HeaderLen = 16
	// MaxInboundBody is the default cap on a client frame's body (goim's
	// readers refuse frames over 4096+16 bytes).
	MaxInboundBody = 4096

	packLenOff   = 0
	headerLenOff = 4
	verOff       = 6
	opOff        = 8
	seqOff       = 12
)

// Protocol versions carried in the ver field.
const (
	// VerGoim is what goim clients send and what pushes carry.
	VerGoim int16 = 1
	// VerExtensions in an auth frame opts the client into extensions
	// (op 6, and any other new server-initiated op).
	VerExtensions int16 = 2
)

// Operations (docs/protocol.md, section 4).
const (
	OpHeartbeat       int32 = 2
	OpHeartbeatReply  int32 = 3
	OpSendMsg         int32 = 4
	OpDisconnect      int32 = 6 // extension, only to clients that opted in
	OpAuth            int32 = 7
	OpAuthReply       int32 = 8
	OpRaw             int32 = 9 // a batch: the body is complete frames back to back
	OpChangeRoom      int32 = 12
	OpChangeRoomReply int32 = 13
	OpSub             int32 = 14
	OpSubReply        int32 = 15
	OpUnsub           int32 = 16
	OpUnsubReply      int32 = 17
	OpJoin            int32 = 18 // extension: enter one more room (ver 2)
	OpJoinReply       int32 = 19
	OpLeave           int32 = 20 // extension: leave a room (ver 2)
	OpLeaveReply      int32 = 21
	OpRefresh         int32 = 22 // extension: a fresh token before the current one expires (ver 2)
	OpRefreshReply    int32 = 23

	// OpPushMin is the smallest application push op by convention; goim's
	// examples use 1000-1002.
	OpPushMin int32 = 1000
)

// IsReserved reports whether op is one of the reserved ops (0, 1, 5, 10, 11)
// that neither side sends.
func IsReserved(op int32) bool {
	switch op {
	case 0, 1, 5, 10, 11:
		return true
	}
	return false
}

// Errors for malformed input. Every decoding failure is one of these, or
// io.EOF / io.ErrUnexpectedEOF from the reader.
var (
	// ErrHeaderLen: headerLen is not 16.
	ErrHeaderLen = errors.New("protocol: header length is not 16")
	// ErrPackLen: packLen is smaller than the header.
	ErrPackLen = errors.New("protocol: pack length smaller than header")
	// ErrBodyTooLarge: the body is over the reader's cap.
	ErrBodyTooLarge = errors.New("protocol: body over the size cap")
	// ErrTruncated: a byte slice ends inside a frame.
	ErrTruncated = errors.New("protocol: truncated frame")
	// ErrNestedBatch: an op 9 frame inside an op 9 body.
	ErrNestedBatch = errors.New("protocol: op 9 nested in a batch")
	// ErrHeartbeatBody: a heartbeat reply body that is not 4 bytes.
	ErrHeartbeatBody = errors.New("protocol: heartbeat reply body is not 4 bytes")
)

// Frame is one decoded frame. Body aliases a buffer the frame's owner
// keeps (see ReadFrame and ParseFrame).
type Frame struct {
	Ver  int16
	Op   int32
	Seq  int32
	Body []byte
}

// Size is the frame's encoded length, header included.
func (f *Frame) Size() int { return HeaderLen + len(f.Body) }

// AppendHeader appends a frame header for a body of bodyLen bytes.
func AppendHeader(dst []byte, bodyLen int, ver int16, op, seq int32) []byte {
	var h [HeaderLen]byte
	putHeader(h[:], bodyLen, ver, op, seq)
	return append(dst, h[:]...)
}

func putHeader(h []byte, bodyLen int, ver int16, op, seq int32) {
	binary.BigEndian.PutUint32(h[packLenOff:], uint32(HeaderLen+bodyLen))
	binary.BigEndian.PutUint16(h[headerLenOff:], HeaderLen)
	binary.BigEndian.PutUint16(h[verOff:], uint16(ver))
	binary.BigEndian.PutUint32(h[opOff:], uint32(op))
	binary.BigEndian.PutUint32(h[seqOff:], uint32(seq))
}

// AppendFrame appends the encoding of f to dst. With enough capacity in dst
// it does not allocate.
func AppendFrame(dst []byte, f *Frame) []byte {
	dst = AppendHeader(dst, len(f.Body), f.Ver, f.Op, f.Seq)
	return append(dst, f.Body...)
}

// header is a decoded frame header.
type header struct {
	bodyLen int
	ver     int16
	op      int32
	seq     int32
}

// parseHeader checks and decodes a 16-byte header. maxBody <= 0 means no cap.
func parseHeader(h []byte, maxBody int) (header, error) {
	packLen := int64(int32(binary.BigEndian.Uint32(h[packLenOff:])))
	if int16(binary.BigEndian.Uint16(h[headerLenOff:])) != HeaderLen {
		return header{}, ErrHeaderLen
	}
	if packLen < HeaderLen {
		return header{}, ErrPackLen
	}
	bodyLen := packLen - HeaderLen
	if maxBody > 0 && bodyLen > int64(maxBody) {
		return header{}, ErrBodyTooLarge
	}
	return header{
		bodyLen: int(bodyLen),
		ver:     int16(binary.BigEndian.Uint16(h[verOff:])),
		op:      int32(binary.BigEndian.Uint32(h[opOff:])),
		seq:     int32(binary.BigEndian.Uint32(h[seqOff:])),
	}, nil
}

// ParseFrame decodes the frame at the start of b without copying: f.Body
// aliases b. It returns the number of bytes the frame took. maxBody <= 0
// means no cap. A b that ends inside the frame returns ErrTruncated.
func ParseFrame(b []byte, f *Frame, maxBody int) (int, error) {
	if len(b) < HeaderLen {
		return 0, ErrTruncated
	}
	h, err := parseHeader(b[:HeaderLen], maxBody)
	if err != nil {
		return 0, err
	}
	end := HeaderLen + h.bodyLen
	if len(b) < end {
		return 0, ErrTruncated
	}
	f.Ver, f.Op, f.Seq = h.ver, h.op, h.seq
	f.Body = b[HeaderLen:end:end]
	return end, nil
}

// AppendHeartbeatBody appends the 4-byte body of a heartbeat reply: the
// online count of the connection's room.
func AppendHeartbeatBody(dst []byte, online int32) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(online))
}

// HeartbeatOnline decodes a heartbeat reply body.
func HeartbeatOnline(body []byte) (int32, error) {
	if len(body) != 4 {
		return 0, ErrHeartbeatBody
	}
	return int32(binary.BigEndian.Uint32(body)), nil
}
