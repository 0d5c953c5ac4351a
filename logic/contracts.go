package logic

import (
	"context"
	"time"

	"github.com/imcloud/imcloud"
)

// Queue is the producing side of the message queue. The memory queue and
// the Kafka queue in this package implement it.
//
// Publish may be called from many goroutines at once.
type Queue interface {
	// Publish returns nil only once the queue accepted every message
	// (Kafka: acknowledged by the broker with the configured acks). Messages
	// for one node (keys) or one room keep their order. msgs are not
	// retained after Publish returns. The implementation retries transient
	// failures within ctx; an error means some messages may not be queued.
	Publish(ctx context.Context, msgs []*imcloud.Message) error
}

// Router resolves who is online where. The memory and Redis routers in this
// package implement it (and, by their method sets, cloud's SessionStore and
// job's NodeDirectory).
//
// Every method may be called from many goroutines at once; slices passed in
// are not retained. One call is one round trip to the backend, whatever the
// number of keys or mids.
//
// A router that lost its data (Redis restarted empty or flushed) rebuilds
// for a bounded window while the nodes register again; meanwhile a lookup
// that may be incomplete fails with ErrRouterRebuilding rather than
// report online users as offline: NodesByMids always, NodesByKeys when a
// key has no route.
type Router interface {
	// NodesByKeys returns key -> node id for the keys that are online.
	NodesByKeys(ctx context.Context, keys []string) (map[string]string, error)
	// NodesByMids returns key -> node id for every online connection of the
	// given users.
	NodesByMids(ctx context.Context, mids []int64) (map[string]string, error)
	// RoomCounts returns the cluster-wide online count per room.
	RoomCounts(ctx context.Context) (map[string]int32, error)
	// Nodes returns the live nodes.
	Nodes(ctx context.Context) ([]imcloud.Node, error)
}

// History reads the pushes a stream's history holds (docs/design.md,
// recovery): the Pusher's History answers through it. logic.MemoryHistory
// and redis.History implement it, among their other methods (job appends
// through them).
//
// Last may be called from many goroutines at once.
type History interface {
	// Last returns the last n retained, unexpired pushes of s, oldest
	// first, with the stream's epoch and top offset (-1: none yet).
	Last(ctx context.Context, s imcloud.Stream, n int) (imcloud.HistoryRead, error)
}

// Revoker is a Router that keeps revocations (Pusher.Kick with revoke):
// an optional capability, found by type assertion. The memory and Redis
// routers have it; cloud reads the revocations at auth
// (cloud.RevocationStore).
type Revoker interface {
	// Revoke records that the credentials of mids issued before before
	// are revoked, for ttl (the longest credential lifetime); a later
	// revocation replaces an earlier one.
	Revoke(ctx context.Context, mids []int64, before time.Time, ttl time.Duration) error
}

// PresenceRouter is a Router that reports users' connections in full
// (Pusher.Presence): an optional capability, found by type assertion. The
// memory and Redis routers have it.
type PresenceRouter interface {
	// Presence returns the live connections of each of mids that has any:
	// key, node, platform, primary room and since (imcloud.Session), on
	// live nodes only.
	Presence(ctx context.Context, mids []int64) (map[int64][]imcloud.Session, error)
}
