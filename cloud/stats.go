package cloud

import (
	"sync/atomic"

	"github.com/imcloud/imcloud"
)

// Stats is a snapshot of a node's counters. Counters only grow, except the
// gauges (Conns, Sessions, Writers, LinkConns, Broadcasts).
type Stats struct {
	// Conns is the number of open client sockets (authenticated or not);
	// Sessions the number of authenticated connections.
	Conns, Sessions int64
	// Accepted sockets.
	Accepted uint64
	// Refused counts the connections refused before they were served, by
	// reason code (the op 6 reason a ver-2 client receives when its auth
	// frame was read, listed in docs/protocol.md): a limit
	// ("ip_accept_rate", "accept_rate", "node_cap", "ip_cap",
	// "handshakes", "ip_handshakes"), "upgrade_too_large", "auth" (the
	// authenticator refused, or bad auth JSON), "identity" (a mid,
	// key, room or platform that is not well-formed), "room_forbidden"
	// (the auth room_id may not be entered) or "revoked" (a credential
	// issued before its user's revocation; op 6 says "auth"). Every code is present. The log sums them up every 10 s with the limit's setting.
	Refused map[string]uint64
	// AuthOK and AuthRefused count auth outcomes (refused includes bad
	// JSON, bad tokens and handshake timeouts).
	AuthOK, AuthRefused uint64
	// Replaced counts connections replaced by a new one with the same key.
	Replaced uint64
	// ProtocolErrors counts connections closed for malformed input;
	// RateLimited those closed for exceeding the inbound frame rate.
	ProtocolErrors, RateLimited uint64
	// Upstream counts upstream client messages (op 4 and others).
	Upstream uint64
	// Joins and Leaves count the Joins (op 18) and Leaves (op 20)
	// answered ok; RoomRefusals the room entries refused: an auth room_id
	// forbidden (the connection is closed), a ChangeRoom or Join answered
	// forbidden, too_many_rooms, invalid_room or malformed (the
	// connection stays where it was), and Leaves answered invalid_room or
	// malformed.
	Joins, Leaves, RoomRefusals uint64
	// Messages counts messages handed to Deliver (link or in process);
	// Duplicates, Expired and Invalid those dropped before delivery, and
	// Reserved those of a reserved op (below protocol.OpPushMin, or a
	// batch carrying one), which a node never delivers as a push.
	Messages, Duplicates, Expired, Invalid, Reserved uint64
	// Delivered counts frames placed on connection queues; Filtered the
	// connections a key, mid or broadcast push skipped because they do
	// not accept its op (their accepts, sub and unsub): pushes sent but
	// not received by design. Room pushes are never filtered.
	Delivered, Filtered uint64
	// Dropped counts frames dropped by the drop-oldest policy;
	// SlowDisconnects connections closed because their queue was full.
	Dropped, SlowDisconnects uint64
	// Kicked counts connections closed by a kick: from the queue
	// (imcloud.KindKick), Kick or KickMid.
	Kicked uint64
	// EventsDropped counts the connection events dropped because the
	// event queue (Config.EventBuffer) was full, or left when Shutdown's
	// flush gave up on a slow sink.
	EventsDropped uint64
	// StoreErrors counts failed session-store calls.
	StoreErrors uint64
	// Writers is the number of connections whose writes are under way
	// now: waiting for a scheduler writer, being written, or on a
	// goroutine of their own.
	Writers int64
	// LinkConns is the number of open link connections; LinkRefused the
	// link hellos refused; LinkLegacyHellos the hellos accepted in the
	// deprecated version 1, which carries the secret in clear.
	LinkConns        int64
	LinkRefused      uint64
	LinkLegacyHellos uint64
	// Broadcasts is the number of paced broadcasts in progress.
	Broadcasts int64
	// QueuedBytes is the node's backlog: bytes waiting in connection
	// queues now, a room push once per receiver, each connection's up to
	// 64 KiB; Backpressured counts the Deliver calls that waited for it to
	// drain (backlog.go).
	QueuedBytes   int64
	Backpressured uint64
	// RoomMisses counts room messages that found no member of their room
	// on the node, dropped: job read a membership the node has just lost
	// (removals reach the store lazily) or, without a RoomStore, sends
	// every room push to every node.
	RoomMisses uint64
	// Fanout is the number of connections each message was queued to on
	// this node (imcloud.NewSizeHistogram's buckets); 0 counts too (a room
	// with nobody here).
	Fanout imcloud.HistogramSnapshot
	// Replayed counts the pushes replayed to recover connections;
	// Recoveries the streams whose recovery was reported (op 25), by
	// outcome: "recovered", or the reason it was not (epoch_changed,
	// trimmed, unknown_position, not_followed, unavailable). Every key is
	// present.
	Replayed   uint64
	Recoveries map[string]uint64
	// DeliveryLatency is the time from a push's acceptance by logic to
	// the start of the socket write carrying it, sampled (latency.go).
	DeliveryLatency imcloud.HistogramSnapshot
}

type counters struct {
	conns, sessions                        atomic.Int64
	accepted                               atomic.Uint64
	refused                                [numRefusals]atomic.Uint64
	authOK, authRefused, replaced          atomic.Uint64
	protocolErrors, rateLimited, upstream  atomic.Uint64
	messages, duplicates, expired, invalid atomic.Uint64
	reserved                               atomic.Uint64
	delivered, dropped, slowDisconnects    atomic.Uint64
	filtered                               atomic.Uint64
	kicked, storeErrors, linkRefused       atomic.Uint64
	backpressured, linkLegacyHellos        atomic.Uint64
	linkConns, broadcasts                  atomic.Int64
	replayed, roomMisses                   atomic.Uint64
	joins, leaves, roomRefusals            atomic.Uint64
	recoveries                             [numRecOutcomes]atomic.Uint64
	fanout, latency                        *imcloud.Histogram
}

// initHistograms makes the histograms Stats reports.
func (c *counters) initHistograms() {
	c.fanout, c.latency = imcloud.NewSizeHistogram(), imcloud.NewLatencyHistogram()
}

// Stats returns a snapshot of the node's counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Conns: c.conns.Load(), Sessions: c.sessions.Load(),
		Accepted: c.accepted.Load(), Refused: c.refusedCounts(),
		AuthOK: c.authOK.Load(), AuthRefused: c.authRefused.Load(), Replaced: c.replaced.Load(),
		ProtocolErrors: c.protocolErrors.Load(), RateLimited: c.rateLimited.Load(), Upstream: c.upstream.Load(),
		Joins: c.joins.Load(), Leaves: c.leaves.Load(), RoomRefusals: c.roomRefusals.Load(),
		Messages: c.messages.Load(), Duplicates: c.duplicates.Load(), Expired: c.expired.Load(), Invalid: c.invalid.Load(),
		Reserved:  c.reserved.Load(),
		Delivered: c.delivered.Load(), Filtered: c.filtered.Load(), Dropped: c.dropped.Load(), SlowDisconnects: c.slowDisconnects.Load(),
		Kicked: c.kicked.Load(), EventsDropped: s.events.droppedCount(), StoreErrors: c.storeErrors.Load(),
		Writers: s.writerCount(), LinkConns: c.linkConns.Load(), LinkRefused: c.linkRefused.Load(),
		LinkLegacyHellos: c.linkLegacyHellos.Load(),
		Broadcasts:       c.broadcasts.Load(), QueuedBytes: s.queuedBytes(), Backpressured: c.backpressured.Load(),
		Replayed: c.replayed.Load(), Recoveries: c.recoveryCounts(), RoomMisses: c.roomMisses.Load(),
		Fanout: c.fanout.Snapshot(), DeliveryLatency: c.latency.Snapshot(),
	}
}
