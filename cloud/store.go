package cloud

import (
	"context"
	"time"

	"github.com/imcloud/imcloud"
)

// SessionStore is where a cloud node records its sessions, itself and its
// room online counts, and reads the cluster-wide counts back. logic's
// memory and Redis routers satisfy it; cloud never imports logic.
//
// Every method may be called from many goroutines at once and must return
// when ctx ends. Slices and maps passed in are not retained. Methods are
// not retried by the implementation; the node retries on its own schedule.
type SessionStore interface {
	// PutSessions records or renews sessions for ttl. Renewal rewrites the
	// whole session, so after a store outage the node simply puts every
	// session again.
	PutSessions(ctx context.Context, sessions []imcloud.Session, ttl time.Duration) error
	// RemoveSessions removes sessions whose routes still name the same
	// Node and Gen; a route rewritten since (a reconnect elsewhere, a
	// same-key replacement) is left alone. A store sharded by user finds
	// the user's copy of a route only through Session.Mid, so callers set
	// it (cloud does).
	RemoveSessions(ctx context.Context, sessions []imcloud.Session) error
	// PutNode registers or renews a node for ttl. A node not renewed in
	// time is gone: it stops being a push target.
	PutNode(ctx context.Context, node imcloud.Node, ttl time.Duration) error
	// RemoveNode deregisters a node at once (graceful drain).
	RemoveNode(ctx context.Context, id string) error
	// PutRoomCounts replaces the node's room online counts for ttl.
	PutRoomCounts(ctx context.Context, node string, counts map[string]int32, ttl time.Duration) error
	// RoomCounts returns the cluster-wide online count per room: the sum
	// over live nodes' latest reports.
	RoomCounts(ctx context.Context) (map[string]int32, error)
}

// RoomStore is a SessionStore that records which nodes have members in
// which rooms, so that job sends a room push only to those nodes
// (docs/design.md, rooms): an optional capability, found by type
// assertion. logic's memory and Redis routers have it. Without it job
// fans every room push out to every node.
//
// The node writes a room when its first member on the node enters it,
// before that member's reply is sent (so a push accepted after the reply
// finds the node), renews every room it has every SessionTTL/3, and
// removes a room when its last member left, lazily: a stale membership
// only costs the node a push it drops.
type RoomStore interface {
	// PutRooms records for ttl that node has at least one member in each
	// room of joined (renewing those it had), and that it has none in
	// each room of left.
	PutRooms(ctx context.Context, node string, joined, left []string, ttl time.Duration) error
}

// RevocationStore is a SessionStore that keeps, per user, the time before
// which the user's credentials were revoked (a kick with revoke, written
// by logic's Pusher.Kick): an optional capability, found by type
// assertion. logic's memory and Redis routers have it. With it, an auth
// or a token refresh whose Identity.IssuedAt is before that time is
// refused.
type RevocationStore interface {
	// RevokedBefore returns the revocation time of each of mids that has
	// one (absent: none).
	RevokedBefore(ctx context.Context, mids []int64) (map[int64]time.Time, error)
}

// GenerationStore is a SessionStore that can lose its data (Redis
// restarted empty, flushed, failed over to an empty replica) and tells so
// through its generation: an optional capability, found by type
// assertion. logic's memory and Redis routers have it.
//
// The node reads the generation every Config.StoreCheckInterval; when it
// changed, the node registers itself, every session and its room counts
// again at once, StoreCallSessions at a time. Meanwhile the store rebuilds:
// lookups that may be incomplete fail rather than report online users as
// offline, and job keeps the nodes that vanished with the data.
type GenerationStore interface {
	// Generation returns the store's current generation, an opaque
	// non-empty value that changes when the store loses its data; it is
	// created if the store has none. known is the generation the caller
	// last saw ("" for none): if the current one differs, the store lost
	// its data since, and starts its rebuild window if it has not.
	Generation(ctx context.Context, known string) (string, error)
}

// EventSink receives a node's connection events (Config.Events). The node
// calls Event from one goroutine of its own, in the order the events
// happened, never from a connection's goroutine: a slow sink delays
// events, never a client; events beyond Config.EventBuffer waiting are
// dropped and counted. package kafka's event producer is one (the topic
// "<topic>.events"); EventFunc adapts a function.
type EventSink interface {
	Event(ev imcloud.Event)
}

// EventFunc adapts a function to EventSink.
type EventFunc func(ev imcloud.Event)

// Event calls f.
func (f EventFunc) Event(ev imcloud.Event) { f(ev) }
