package imcloud

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// The encoding of a Message on the queue and on the link:
//
//	byte 0     major version (MessageMajor); a reader refuses a newer one
//	byte 1     minor version; informational, a reader accepts any
//	then       fields, each: tag (uvarint), length (uvarint), value
//
// Integers inside values are varints (zig-zag for signed ones), times are
// Unix nanoseconds. Fields may come in any order; a tag a reader does not
// know is skipped by its length, so new optional fields need only a new tag
// and a minor version bump. A change old readers must not misread bumps the
// major version, and old readers refuse it with ErrNewerVersion.
//
// A message is written with the lowest major version that can carry it:
// 1 for every kind but KindMids and KindKick, 2 for KindMids (a version-1
// reader would not know whom to deliver it to), 3 for KindKick (a
// version-2 reader would not know how to apply it). MessageMajor is the
// newest this reader understands.
const (
	MessageMajor = 3
	MessageMinor = 1
)

const (
	tagID       = 1
	tagKind     = 2
	tagOp       = 3
	tagNode     = 4
	tagKey      = 5 // repeated, one per key
	tagRoom     = 6
	tagBody     = 7
	tagSpeed    = 8
	tagAccepted = 9
	tagExpires  = 10
	tagMid      = 11 // repeated, one per mid; major 2
	tagStream   = 12 // minor 1
	tagEpoch    = 13 // minor 1
	tagOffset   = 14 // minor 1
	tagReason   = 15 // KindKick; major 3
)

// Decoding errors. Every malformed input returns one of these (wrapped with
// detail); decoding never panics.
var (
	// ErrNewerVersion is returned for a message of a newer major version.
	// The consumer should set it aside (a dead-letter topic), not drop it:
	// a newer reader will understand it.
	ErrNewerVersion = errors.New("imcloud: message of a newer major version")
	// ErrMalformedMessage is returned for bytes that are not a message.
	ErrMalformedMessage = errors.New("imcloud: malformed message")
)

// MarshalBinary encodes m. It never fails; the error is there to satisfy
// encoding.BinaryMarshaler.
func (m *Message) MarshalBinary() ([]byte, error) {
	return m.AppendBinary(make([]byte, 0, m.encodedSizeHint())), nil
}

func (m *Message) encodedSizeHint() int {
	n := 2 + 18 + 3 + 8 + len(m.Node) + 3 + len(m.Room) + 3 + len(m.Body) + 5 + 2*11 + 4
	for _, k := range m.Keys {
		n += len(k) + 3
	}
	n += 11 * len(m.Mids)
	n += 3 + len(m.Reason)
	if m.Stream != "" {
		n += 3 + len(m.Stream) + 3 + len(m.Epoch) + 11
	}
	return n
}

// AppendBinary appends the encoding of m to dst and returns the extended
// slice. With a dst of enough capacity it does not allocate.
func (m *Message) AppendBinary(dst []byte) []byte {
	major := byte(1)
	switch m.Kind {
	case KindMids:
		major = 2
	case KindKick:
		major = 3
	}
	dst = append(dst, major, MessageMinor)
	if !m.ID.IsZero() {
		dst = appendBytesField(dst, tagID, m.ID[:])
	}
	dst = appendUvarintField(dst, tagKind, uint64(m.Kind))
	dst = appendVarintField(dst, tagOp, int64(m.Op))
	if m.Node != "" {
		dst = appendStringField(dst, tagNode, m.Node)
	}
	for _, k := range m.Keys {
		dst = appendStringField(dst, tagKey, k)
	}
	if m.Room != "" {
		dst = appendStringField(dst, tagRoom, m.Room)
	}
	if len(m.Body) > 0 {
		dst = appendBytesField(dst, tagBody, m.Body)
	}
	if m.Speed != 0 {
		dst = appendVarintField(dst, tagSpeed, int64(m.Speed))
	}
	if !m.Accepted.IsZero() {
		dst = appendVarintField(dst, tagAccepted, m.Accepted.UnixNano())
	}
	if !m.Expires.IsZero() {
		dst = appendVarintField(dst, tagExpires, m.Expires.UnixNano())
	}
	for _, mid := range m.Mids {
		dst = appendVarintField(dst, tagMid, mid)
	}
	if m.Reason != "" {
		dst = appendStringField(dst, tagReason, m.Reason)
	}
	if m.Stream != "" {
		dst = appendStringField(dst, tagStream, string(m.Stream))
		if m.Epoch != "" {
			dst = appendStringField(dst, tagEpoch, m.Epoch)
		}
		dst = appendVarintField(dst, tagOffset, m.Offset)
	}
	return dst
}

func appendBytesField(dst []byte, tag uint64, v []byte) []byte {
	dst = binary.AppendUvarint(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

func appendStringField(dst []byte, tag uint64, v string) []byte {
	dst = binary.AppendUvarint(dst, tag)
	dst = binary.AppendUvarint(dst, uint64(len(v)))
	return append(dst, v...)
}

func appendUvarintField(dst []byte, tag, v uint64) []byte {
	var tmp [binary.MaxVarintLen64]byte
	return appendBytesField(dst, tag, binary.AppendUvarint(tmp[:0], v))
}

func appendVarintField(dst []byte, tag uint64, v int64) []byte {
	var tmp [binary.MaxVarintLen64]byte
	return appendBytesField(dst, tag, binary.AppendVarint(tmp[:0], v))
}

// UnmarshalBinary decodes data into m, replacing its contents. It copies
// what it keeps, so data may be reused afterwards. The decoded message is
// validated: an unknown kind or missing target returns ErrInvalidMessage,
// a newer major version ErrNewerVersion, anything else unreadable
// ErrMalformedMessage.
func (m *Message) UnmarshalBinary(data []byte) error {
	*m = Message{}
	if len(data) < 2 {
		return fmt.Errorf("%w: %d bytes, want at least 2", ErrMalformedMessage, len(data))
	}
	switch major := data[0]; {
	case major > MessageMajor:
		return fmt.Errorf("%w: major %d, this reader knows %d", ErrNewerVersion, major, MessageMajor)
	case major < 1:
		return fmt.Errorf("%w: major version 0", ErrMalformedMessage)
	}
	rest := data[2:]
	var seenBody bool
	for len(rest) > 0 {
		tag, n := binary.Uvarint(rest)
		if n <= 0 {
			return fmt.Errorf("%w: bad field tag", ErrMalformedMessage)
		}
		rest = rest[n:]
		size, n := binary.Uvarint(rest)
		if n <= 0 || size > uint64(len(rest)-n) {
			return fmt.Errorf("%w: field %d: bad length", ErrMalformedMessage, tag)
		}
		val := rest[n : n+int(size)]
		rest = rest[n+int(size):]
		if err := m.setField(tag, val, &seenBody); err != nil {
			return err
		}
	}
	return m.Validate()
}

func (m *Message) setField(tag uint64, val []byte, seenBody *bool) error {
	switch tag {
	case tagID:
		if len(val) != len(m.ID) {
			return fmt.Errorf("%w: id of %d bytes", ErrMalformedMessage, len(val))
		}
		copy(m.ID[:], val)
	case tagKind:
		v, err := uvarintValue(tag, val)
		if err != nil {
			return err
		}
		if v > 255 {
			return fmt.Errorf("%w: kind %d", ErrInvalidMessage, v)
		}
		m.Kind = Kind(v)
	case tagOp:
		v, err := int32Value(tag, val)
		if err != nil {
			return err
		}
		m.Op = v
	case tagNode:
		m.Node = string(val)
	case tagKey:
		m.Keys = append(m.Keys, string(val))
	case tagRoom:
		m.Room = string(val)
	case tagBody:
		if *seenBody {
			return fmt.Errorf("%w: body twice", ErrMalformedMessage)
		}
		*seenBody = true
		m.Body = append([]byte(nil), val...)
	case tagSpeed:
		v, err := int32Value(tag, val)
		if err != nil {
			return err
		}
		m.Speed = v
	case tagAccepted, tagExpires:
		v, err := varintValue(tag, val)
		if err != nil {
			return err
		}
		t := time.Unix(0, v)
		if tag == tagAccepted {
			m.Accepted = t
		} else {
			m.Expires = t
		}
	case tagMid:
		v, err := varintValue(tag, val)
		if err != nil {
			return err
		}
		m.Mids = append(m.Mids, v)
	case tagReason:
		m.Reason = string(val)
	case tagStream:
		m.Stream = Stream(val)
	case tagEpoch:
		m.Epoch = string(val)
	case tagOffset:
		v, err := varintValue(tag, val)
		if err != nil {
			return err
		}
		m.Offset = v
	default:
		// A field from a newer minor version: skip it.
	}
	return nil
}

func uvarintValue(tag uint64, val []byte) (uint64, error) {
	v, n := binary.Uvarint(val)
	if n <= 0 || n != len(val) {
		return 0, fmt.Errorf("%w: field %d: bad uvarint", ErrMalformedMessage, tag)
	}
	return v, nil
}

func varintValue(tag uint64, val []byte) (int64, error) {
	v, n := binary.Varint(val)
	if n <= 0 || n != len(val) {
		return 0, fmt.Errorf("%w: field %d: bad varint", ErrMalformedMessage, tag)
	}
	return v, nil
}

func int32Value(tag uint64, val []byte) (int32, error) {
	v, err := varintValue(tag, val)
	if err != nil {
		return 0, err
	}
	if v != int64(int32(v)) {
		return 0, fmt.Errorf("%w: field %d: %d overflows int32", ErrMalformedMessage, tag, v)
	}
	return int32(v), nil
}
