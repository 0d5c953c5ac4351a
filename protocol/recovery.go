package protocol

import (
	"encoding/binary"
	"errors"
)

// Recovery ops (docs/protocol-recovery.md): sent only to connections
// that authenticated with ver 2 and "recover": true.
const (
	// OpPushAt is a push with its place in a stream: the body is the
	// push's op, its offset, the stream's name and epoch, then the push's
	// body (AppendPushAt, ParsePushAt). ver 2, seq 0.
	OpPushAt int32 = 24
	// OpRecovery tells, per stream, whether the pushes a connection missed
	// were replayed in full (JSON). ver 2, seq 0.
	OpRecovery int32 = 25
)

// MaxPushAtName is the longest stream name or epoch an op 24 body can
// carry (one length byte).
const MaxPushAtName = 255

// pushAtFixed is the size of an op 24 body's fixed part: op, offset and
// the two length bytes.
const pushAtFixed = 4 + 8 + 1 + 1

// ErrPushAt: an op 24 body that is too short for what its lengths say, or
// a stream or epoch longer than MaxPushAtName when encoding.
var ErrPushAt = errors.New("protocol: malformed op 24 body")

// PushAt is a decoded op 24 body. Stream, Epoch and Body alias the bytes
// it was parsed from.
type PushAt struct {
	Op     int32
	Offset int64
	Stream []byte
	Epoch  []byte
	Body   []byte
}

// PushAtLen is the size of an op 24 body carrying body in stream at
// epoch.
func PushAtLen(stream, epoch string, body int) int {
	return pushAtFixed + len(stream) + len(epoch) + body
}

// AppendPushAt appends an op 24 body:
//
//	op int32 | offset int64 | s uint8 | stream [s] | e uint8 | epoch [e] | body
//
// A stream or epoch over MaxPushAtName bytes is ErrPushAt (dst unchanged).
func AppendPushAt(dst []byte, op int32, offset int64, stream, epoch string, body []byte) ([]byte, error) {
	if len(stream) > MaxPushAtName || len(epoch) > MaxPushAtName {
		return dst, ErrPushAt
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(op))
	dst = binary.BigEndian.AppendUint64(dst, uint64(offset))
	dst = append(dst, byte(len(stream)))
	dst = append(dst, stream...)
	dst = append(dst, byte(len(epoch)))
	dst = append(dst, epoch...)
	return append(dst, body...), nil
}

// ParsePushAt decodes an op 24 body without copying.
func ParsePushAt(b []byte) (PushAt, error) {
	if len(b) < pushAtFixed {
		return PushAt{}, ErrPushAt
	}
	p := PushAt{
		Op:     int32(binary.BigEndian.Uint32(b)),
		Offset: int64(binary.BigEndian.Uint64(b[4:])),
	}
	rest := b[12:]
	s := int(rest[0])
	if len(rest) < 1+s+1 {
		return PushAt{}, ErrPushAt
	}
	p.Stream = rest[1 : 1+s : 1+s]
	rest = rest[1+s:]
	e := int(rest[0])
	if len(rest) < 1+e {
		return PushAt{}, ErrPushAt
	}
	p.Epoch = rest[1 : 1+e : 1+e]
	p.Body = rest[1+e:]
	return p, nil
}

// RecoveryStream is one stream's entry in an op 25 body.
type RecoveryStream struct {
	// Stream names the stream ("u:42", "r:live://1").
	Stream string `json:"stream"`
	// Epoch and Offset are the position the client holds after the op 25
	// frame: the last push replayed, or the stream's top when nothing was.
	Epoch  string `json:"epoch"`
	Offset int64  `json:"offset"`
	// Recovered reports that every push after the client's position
	// arrived; Reason says why not (imcloud.Reason*).
	Recovered bool   `json:"recovered"`
	Reason    string `json:"reason,omitempty"`
	// Replayed is how many pushes of the stream were replayed.
	Replayed int `json:"replayed"`
}

// Recovery is an op 25 body.
type Recovery struct {
	Streams []RecoveryStream `json:"streams"`
}
