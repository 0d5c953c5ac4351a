package imcloud

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Kind says who a Message is for.
type Kind uint8

// The kinds of push. The zero Kind is invalid so that a message whose kind
// was lost is refused rather than delivered to the wrong audience.
const (
	// KindKeys targets the connections named in Message.Keys on Message.Node.
	KindKeys Kind = 1
	// KindRoom targets every connection in Message.Room on every node.
	KindRoom Kind = 2
	// KindBroadcast targets every connection that accepts Message.Op on
	// every node, paced at Message.Speed connections per second.
	KindBroadcast Kind = 3
	// KindMids targets every connection of the users in Message.Mids,
	// wherever they are: job appends it to each user's stream and
	// resolves the users' connections (docs/design.md, recovery). It is
	// encoded with major version 2, so a job too old to route it sets it
	// aside instead of dropping it.
	KindMids Kind = 4
	// KindKick closes connections, never a push (docs/design.md, control
	// plane): those named in Keys on Node, or every connection of the users
	// in Mids (job resolves them, in order with the users' pushes), with
	// Reason sent to ver-2 clients in op 6. Encoded with major version 3,
	// so a job or cloud too old to apply it sets it aside.
	KindKick Kind = 5
)

// String returns the kind's name, as used in logs and metrics.
func (k Kind) String() string {
	switch k {
	case KindKeys:
		return "keys"
	case KindRoom:
		return "room"
	case KindBroadcast:
		return "broadcast"
	case KindMids:
		return "mids"
	case KindKick:
		return "kick"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Valid reports whether k is one of the known kinds.
func (k Kind) Valid() bool { return k >= KindKeys && k <= KindKick }

// MessageID identifies one accepted push. Cloud nodes remember recent IDs
// and drop redeliveries, so a job restart does not show clients duplicates.
// It is comparable and can be used as a map key.
type MessageID [16]byte

// String returns the ID in hex.
func (id MessageID) String() string { return fmt.Sprintf("%x", id[:]) }

// IsZero reports whether the ID is unset.
func (id MessageID) IsZero() bool { return id == MessageID{} }

// ForUser returns the id of a push's copy for user mid: a push to many
// users with history on is one queue message per user, job turns each
// into messages per node, and a node drops a message whose id it has
// seen, so the copies must not share the push's id. The first 8 bytes (a
// process's random prefix, or the hash of an idempotency key) are XORed
// with a bijective mix of mid, the rest kept: copies of one push differ
// for different users, and a copy cannot equal a copy of another push of
// the same process, whose last 8 bytes (its counter) differ. Deterministic,
// so a retried push's copies keep their ids.
func (id MessageID) ForUser(mid int64) MessageID {
	x := uint64(mid)
	// splitmix64's finalizer: a bijection on 64 bits, 0 only for 0.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	binary.BigEndian.PutUint64(id[:8], binary.BigEndian.Uint64(id[:8])^x)
	return id
}

// ErrInvalidMessageID is returned by ParseMessageID and MessageIDForKey
// for text that is not a message id or an idempotency key.
var ErrInvalidMessageID = errors.New("imcloud: invalid message id")

// MaxIdempotencyKey is the longest key MessageIDForKey accepts, in bytes.
const MaxIdempotencyKey = 128

// ParseMessageID parses the ID's String form: 32 hex digits, not all zero.
func ParseMessageID(s string) (MessageID, error) {
	var id MessageID
	if len(s) != 2*len(id) {
		return MessageID{}, fmt.Errorf("%w: %q is not %d hex digits", ErrInvalidMessageID, s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil || id.IsZero() {
		return MessageID{}, fmt.Errorf("%w: %q is not a non-zero hex id", ErrInvalidMessageID, s)
	}
	return id, nil
}

// MessageIDForKey maps a client-chosen idempotency key to the message id a
// push carries, deterministically, so a push retried with the same key
// carries the same id and the cloud nodes drop the copy. A key of 32 hex
// digits is an ID's String form and is that ID (ParseMessageID): a client
// may retry with the id a push API answered. Any other key of 1 to
// MaxIdempotencyKey printable ASCII bytes (0x21-0x7e) is hashed: the first
// 16 bytes of SHA-256 over "imcloud-push-id:" and the key. Keys name pushes
// across the whole cluster: two applications that choose the same key
// within the nodes' dedup window lose one of the pushes, so use a random
// or namespaced key (a UUID, "app:order-42").
func MessageIDForKey(key string) (MessageID, error) {
	if len(key) == 0 || len(key) > MaxIdempotencyKey {
		return MessageID{}, fmt.Errorf("%w: key of %d bytes (1 to %d)", ErrInvalidMessageID, len(key), MaxIdempotencyKey)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x21 || c > 0x7e {
			return MessageID{}, fmt.Errorf("%w: key byte %#x is not printable ASCII", ErrInvalidMessageID, c)
		}
	}
	if id, err := ParseMessageID(key); err == nil {
		return id, nil
	}
	sum := sha256.Sum256([]byte("imcloud-push-id:" + key))
	var id MessageID
	copy(id[:], sum[:])
	if id.IsZero() { // never in practice; the zero ID means "unset"
		id[0] = 1
	}
	return id, nil
}

// idSource hands out IDs: 8 random bytes drawn once per process followed by
// an 8-byte counter. Unique across processes without coordination and
// far cheaper than reading crypto/rand per message.
type idSource struct {
	prefix [8]byte
	next   atomic.Uint64
}

var ids = newIDSource()

func newIDSource() *idSource {
	s := &idSource{}
	if _, err := rand.Read(s.prefix[:]); err != nil {
		panic("imcloud: crypto/rand unavailable: " + err.Error())
	}
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	s.next.Store(binary.BigEndian.Uint64(seed[:]))
	return s
}

// NewMessageID returns a new unique message ID. Safe for concurrent use.
func NewMessageID() MessageID {
	var id MessageID
	copy(id[:8], ids.prefix[:])
	binary.BigEndian.PutUint64(id[8:], ids.next.Add(1))
	return id
}

// Message is the queue message every role shares: logic produces it, the
// queue carries it (encoded with MarshalBinary), job routes it and cloud
// delivers it to client connections.
type Message struct {
	// ID is unique per accepted push; the messages of one key or mid push
	// to several nodes share it (each node drops a redelivery on its own).
	// A push carrying a client-chosen idempotency key (MessageIDForKey)
	// has the same ID every time it is retried.
	ID MessageID
	// Kind says who the message is for.
	Kind Kind
	// Op is the push operation clients see (1000 and above by convention).
	Op int32
	// Node is the target cloud node's id (KindKeys, and KindKick by keys).
	Node string
	// Keys are the target connection keys on Node (KindKeys, and KindKick
	// by keys).
	Keys []string
	// Room is the room key, "type://id" (KindRoom only).
	Room string
	// Mids are the target users (KindMids, and KindKick by users).
	Mids []int64
	// Reason is why a KindKick closes its connections, as ver-2 clients
	// read it in op 6 ("kicked" when empty).
	Reason string
	// Body is the payload clients receive.
	Body []byte
	// Speed paces a broadcast in connections per second; 0 is unpaced.
	Speed int32
	// Accepted is when logic accepted the push.
	Accepted time.Time
	// Expires, when non-zero, is when the push stops being worth delivering.
	Expires time.Time

	// Stream, Epoch and Offset place the push in a stream's history
	// (history.go). job sets them on what it delivers once the push was
	// appended to its stream; logic never does. Empty Stream: no history.
	Stream Stream
	// Epoch is the stream's epoch when the push was appended.
	Epoch string
	// Offset is the push's position in Stream: its queue offset.
	Offset int64
}

// Expired reports whether m carries an expiry that is not after now.
func (m *Message) Expired(now time.Time) bool {
	return !m.Expires.IsZero() && !now.Before(m.Expires)
}

// Validate reports whether m is complete enough to be delivered.
func (m *Message) Validate() error {
	switch m.Kind {
	case KindKeys:
		if m.Node == "" {
			return fmt.Errorf("%w: keys message without a node", ErrInvalidMessage)
		}
		if len(m.Keys) == 0 {
			return fmt.Errorf("%w: keys message without keys", ErrInvalidMessage)
		}
	case KindRoom:
		if m.Room == "" {
			return fmt.Errorf("%w: room message without a room", ErrInvalidMessage)
		}
	case KindBroadcast:
		if m.Speed < 0 {
			return fmt.Errorf("%w: negative broadcast speed", ErrInvalidMessage)
		}
	case KindMids:
		if len(m.Mids) == 0 {
			return fmt.Errorf("%w: mids message without mids", ErrInvalidMessage)
		}
	case KindKick:
		if len(m.Mids) == 0 && (m.Node == "" || len(m.Keys) == 0) {
			return fmt.Errorf("%w: kick without mids, or without a node and keys", ErrInvalidMessage)
		}
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrInvalidMessage, m.Kind)
	}
	if m.Stream != "" {
		if err := m.Stream.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidMessage, err)
		}
		if m.Offset < 0 {
			return fmt.Errorf("%w: negative stream offset", ErrInvalidMessage)
		}
	}
	return nil
}

// ErrInvalidMessage is returned by Message.Validate and UnmarshalBinary for a
// message whose fields do not make sense together.
var ErrInvalidMessage = errors.New("imcloud: invalid message")

// roomSep separates a room's type from its id in a room key.
const roomSep = "://"

// RoomKey joins a room type and id into a room key: ("live", "1000") is
// "live://1000" (goim's encoding).
func RoomKey(typ, id string) string { return typ + roomSep + id }

// ErrInvalidRoomKey is returned by ParseRoomKey for a key without "://".
var ErrInvalidRoomKey = errors.New("imcloud: invalid room key")

// ParseRoomKey splits "live://1000" into ("live", "1000").
func ParseRoomKey(key string) (typ, id string, err error) {
	i := strings.Index(key, roomSep)
	if i < 0 {
		return "", "", fmt.Errorf("%w: %q", ErrInvalidRoomKey, key)
	}
	return key[:i], key[i+len(roomSep):], nil
}
