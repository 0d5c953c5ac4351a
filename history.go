package imcloud

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Streams and their history (docs/design.md, recovery).
//
// A push to a user belongs to the user's stream, a push to a room to the
// room's stream; key pushes and broadcasts belong to none. Every stream
// lives in one queue partition (its name is the partition key), so the
// queue's offset is the push's position in its stream: assigned once per
// queue record and the same on every redelivery, growing with every push,
// though not by one (other streams share the partition). A history store
// keeps the last pushes of each stream, bounded by count and age, under an
// epoch that changes whenever the stream's history may have been lost
// (the store's data gone, the stream evicted, the queue reset); positions
// of different epochs are not comparable.

// Stream names a stream: "u:<mid>" for a user's, "r:<room key>" for a
// room's.
type Stream string

// Stream name prefixes.
const (
	userStreamPrefix = "u:"
	roomStreamPrefix = "r:"
)

// UserStream is the stream of user mid's pushes.
func UserStream(mid int64) Stream { return Stream(userStreamPrefix + strconv.FormatInt(mid, 10)) }

// RoomStream is the stream of room's pushes.
func RoomStream(room string) Stream { return Stream(roomStreamPrefix + room) }

// ErrInvalidStream is returned for a stream name that is neither a user's
// nor a room's.
var ErrInvalidStream = errors.New("imcloud: invalid stream")

// MaxStreamLen is the longest valid stream name: a room key of 256 bytes
// and its prefix.
const MaxStreamLen = 258

// Mid returns the user of a user stream.
func (s Stream) Mid() (int64, bool) {
	rest, ok := strings.CutPrefix(string(s), userStreamPrefix)
	if !ok {
		return 0, false
	}
	// Canonical decimal only ("7", not "07" or "+7"): one name per stream.
	if rest == "" || rest[0] < '1' || rest[0] > '9' {
		return 0, false
	}
	mid, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || mid <= 0 {
		return 0, false
	}
	return mid, true
}

// Room returns the room of a room stream.
func (s Stream) Room() (string, bool) {
	rest, ok := strings.CutPrefix(string(s), roomStreamPrefix)
	if !ok || rest == "" {
		return "", false
	}
	return rest, true
}

// Validate reports whether s names a user stream (a positive mid in
// canonical decimal) or a room stream (a room key, "type://id"), at most
// MaxStreamLen bytes.
func (s Stream) Validate() error {
	if len(s) > MaxStreamLen {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidStream, len(s), MaxStreamLen)
	}
	if _, ok := s.Mid(); ok {
		return nil
	}
	if room, ok := s.Room(); ok {
		if _, _, err := ParseRoomKey(room); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: %q", ErrInvalidStream, string(s))
}

// Position is a place in a stream: an epoch and the offset of the last
// push seen. The zero Position means "nothing seen".
type Position struct {
	Epoch  string `json:"epoch"`
	Offset int64  `json:"offset"`
}

// Default bounds of a stream's history.
const (
	// DefaultHistoryLen is how many pushes a stream's history keeps.
	DefaultHistoryLen = 1000
	// DefaultHistoryAge is how long a stream's history keeps a push.
	DefaultHistoryAge = 10 * time.Minute
)

// HistoryEntry is one push in a stream's history.
type HistoryEntry struct {
	// Offset is the push's position in its stream (its queue offset).
	Offset int64
	// ID is the push's message id: an append of an offset already held
	// with the same ID is a redelivery; with another ID, the queue was
	// reset and the stream starts a new epoch.
	ID MessageID
	// Op and Body are what clients receive.
	Op   int32
	Body []byte
	// Accepted is when logic accepted the push; the history's age bound
	// counts from it.
	Accepted time.Time
	// Expires, when set, is when the push stops being worth replaying.
	Expires time.Time
}

// Expired reports whether e carries an expiry that is not after now: an
// expired push is never replayed (and not missing).
func (e *HistoryEntry) Expired(now time.Time) bool {
	return !e.Expires.IsZero() && !now.Before(e.Expires)
}

// HistoryAppend is one push to append to one stream.
type HistoryAppend struct {
	Stream Stream
	// Partition is the queue partition the push came from: a stream seen
	// in another partition than before (the partition count changed)
	// starts a new epoch, since offsets of different partitions are not
	// comparable.
	Partition int32
	Entry     HistoryEntry
	// Epoch is set by the store: the stream's epoch, the push included.
	Epoch string
}

// ErrInvalidAppend is returned by HistoryAppend.Validate.
var ErrInvalidAppend = errors.New("imcloud: invalid history append")

// Validate reports whether a can be stored: a valid stream and an offset
// of 0 or more.
func (a *HistoryAppend) Validate() error {
	if err := a.Stream.Validate(); err != nil {
		return err
	}
	if a.Entry.Offset < 0 {
		return fmt.Errorf("%w: negative offset %d", ErrInvalidAppend, a.Entry.Offset)
	}
	return nil
}

// Why a read could not return everything after a position
// (HistoryRead.Reason).
const (
	// ReasonEpochChanged: the stream's history was lost since the position
	// (another epoch): nothing is replayed, since what the client saw
	// cannot be told apart from what it missed.
	ReasonEpochChanged = "epoch_changed"
	// ReasonTrimmed: pushes after the position were dropped (count or age
	// bound); what the history still holds after it is returned.
	ReasonTrimmed = "trimmed"
	// ReasonUnknownPosition: the offset is past the stream's last push, in
	// the current epoch: not a position this stream gave out.
	ReasonUnknownPosition = "unknown_position"
	// ReasonNotFollowed: the connection asked about a stream it does not
	// follow; nothing is read.
	ReasonNotFollowed = "not_followed"
	// ReasonUnavailable: the history store could not be read.
	ReasonUnavailable = "unavailable"
)

// HistoryRead is the answer to a history read.
type HistoryRead struct {
	// Epoch is the stream's current epoch; a stream never appended to (or
	// whose history expired with its metadata) gets a new one.
	Epoch string
	// Top is the offset of the stream's last push in Epoch, -1 if none.
	Top int64
	// Entries are the pushes returned, oldest first, none expired.
	Entries []HistoryEntry
	// Complete reports that Entries are every push after the position
	// asked for (a read from a position); Reason says why not.
	Complete bool
	Reason   string
}
