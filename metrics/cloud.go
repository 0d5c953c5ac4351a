package metrics

import (
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/cloud"
	"github.com/imcloud/imcloud/metrics/internal/collect"
	"github.com/prometheus/client_golang/prometheus"
)

// Cloud returns a collector of s's Stats: imcloud_cloud_*.
func Cloud(s *cloud.Server) prometheus.Collector { return cloudCollector(s.Stats) }

func cloudCollector(stats func() cloud.Stats) prometheus.Collector {
	type S = cloud.Stats
	return collect.New(stats,
		collect.Gauge("imcloud_cloud_connections",
			"Open client sockets now, authenticated or not.",
			func(s *S) float64 { return float64(s.Conns) }),
		collect.Gauge("imcloud_cloud_sessions",
			"Authenticated client connections now.",
			func(s *S) float64 { return float64(s.Sessions) }),
		collect.Counter("imcloud_cloud_connections_accepted_total",
			"Client sockets accepted.",
			func(s *S) uint64 { return s.Accepted }),
		collect.CounterVec("imcloud_cloud_connections_rejected_total",
			"Client connections refused before they were served, by reason: a limit (ip_accept_rate, accept_rate, node_cap, ip_cap, handshakes, ip_handshakes), upgrade_too_large, auth, identity, room_forbidden or revoked.",
			[]string{"reason"}, func(s *S, emit collect.Emit) {
				for reason, n := range s.Refused {
					emit(float64(n), reason)
				}
			}),
		collect.CounterVec("imcloud_cloud_auths_total",
			"Client auths by result: ok, or refused (bad JSON, a bad token, the handshake timeout).",
			[]string{"result"}, func(s *S, emit collect.Emit) {
				emit(float64(s.AuthOK), "ok")
				emit(float64(s.AuthRefused), "refused")
			}),
		collect.Counter("imcloud_cloud_connections_replaced_total",
			"Connections closed because a new one authenticated with the same key.",
			func(s *S) uint64 { return s.Replaced }),
		collect.Counter("imcloud_cloud_protocol_errors_total",
			"Connections closed for malformed input.",
			func(s *S) uint64 { return s.ProtocolErrors }),
		collect.Counter("imcloud_cloud_rate_limited_connections_total",
			"Connections closed for sending frames faster than the inbound rate allows.",
			func(s *S) uint64 { return s.RateLimited }),
		collect.Counter("imcloud_cloud_upstream_messages_total",
			"Messages clients sent upstream (op 4 and other client ops).",
			func(s *S) uint64 { return s.Upstream }),
		collect.Counter("imcloud_cloud_room_joins_total",
			"Joins (op 18) answered ok.",
			func(s *S) uint64 { return s.Joins }),
		collect.Counter("imcloud_cloud_room_leaves_total",
			"Leaves (op 20) answered ok.",
			func(s *S) uint64 { return s.Leaves }),
		collect.Counter("imcloud_cloud_room_refusals_total",
			"Room entries refused: an auth room_id forbidden (connection closed), a ChangeRoom or Join answered forbidden, too_many_rooms, invalid_room or malformed, a Leave naming no room.",
			func(s *S) uint64 { return s.RoomRefusals }),
		collect.Counter("imcloud_cloud_messages_received_total",
			"Messages job handed to the node, over the link or in process.",
			func(s *S) uint64 { return s.Messages }),
		collect.CounterVec("imcloud_cloud_messages_dropped_total",
			"Messages dropped before fan-out, by reason: duplicate (a redelivery), expired, invalid, or reserved (an op below 1000, never a push).",
			[]string{"reason"}, func(s *S, emit collect.Emit) {
				emit(float64(s.Duplicates), "duplicate")
				emit(float64(s.Expired), "expired")
				emit(float64(s.Invalid), "invalid")
				emit(float64(s.Reserved), "reserved")
			}),
		collect.Counter("imcloud_cloud_frames_queued_total",
			"Push frames placed on connection queues, one per receiving connection.",
			func(s *S) uint64 { return s.Delivered }),
		collect.Counter("imcloud_cloud_frames_filtered_total",
			"Connections a key, mid or broadcast push skipped because they do not accept its op (auth accepts, sub, unsub): sent but not received by design.",
			func(s *S) uint64 { return s.Filtered }),
		collect.Counter("imcloud_cloud_frames_dropped_total",
			"Frames dropped from full connection queues by the drop-oldest policy.",
			func(s *S) uint64 { return s.Dropped }),
		collect.Counter("imcloud_cloud_slow_consumer_disconnects_total",
			"Connections closed because their queue was full: clients that could not keep up.",
			func(s *S) uint64 { return s.SlowDisconnects }),
		collect.Counter("imcloud_cloud_kicked_connections_total",
			"Connections closed by a kick: from the queue (Pusher.Kick) or the library calls Kick, KickMid.",
			func(s *S) uint64 { return s.Kicked }),
		collect.Counter("imcloud_cloud_events_dropped_total",
			"Connection events dropped: the event queue (EventBuffer) was full, or the sink was still behind when the drain's flush gave up.",
			func(s *S) uint64 { return s.EventsDropped }),
		collect.Counter("imcloud_cloud_store_errors_total",
			"Session-store calls that failed (the router: Redis); the node retries them.",
			func(s *S) uint64 { return s.StoreErrors }),
		collect.Gauge("imcloud_cloud_writing_connections",
			"Connections whose writes are under way now: waiting for a writer, being written, or on a goroutine of their own (a slow socket).",
			func(s *S) float64 { return float64(s.Writers) }),
		collect.Gauge("imcloud_cloud_link_connections",
			"Open link connections from job now.",
			func(s *S) float64 { return float64(s.LinkConns) }),
		collect.Counter("imcloud_cloud_link_refused_total",
			"Link hellos refused: a wrong secret or version.",
			func(s *S) uint64 { return s.LinkRefused }),
		collect.Counter("imcloud_cloud_link_legacy_hellos_total",
			"Link hellos accepted in the deprecated version 1, which sends the secret in clear: a job not yet upgraded.",
			func(s *S) uint64 { return s.LinkLegacyHellos }),
		collect.Gauge("imcloud_cloud_paced_broadcasts",
			"Paced broadcasts in progress now.",
			func(s *S) float64 { return float64(s.Broadcasts) }),
		collect.Gauge("imcloud_cloud_queued_bytes",
			"Bytes waiting in connection queues now (a room push once per receiver, each connection's counted up to 64 KiB): the backlog deliveries wait on.",
			func(s *S) float64 { return float64(s.QueuedBytes) }),
		collect.Counter("imcloud_cloud_backpressure_waits_total",
			"Deliveries that waited for the node's backlog to drain before fan-out.",
			func(s *S) uint64 { return s.Backpressured }),
		collect.Counter("imcloud_cloud_replayed_pushes_total",
			"Pushes replayed to recover connections from the history, at auth and ChangeRoom.",
			func(s *S) uint64 { return s.Replayed }),
		collect.CounterVec("imcloud_cloud_recoveries_total",
			"Streams whose recovery a recover connection was told (op 25), by result: recovered, or why not (epoch_changed, trimmed, unknown_position, not_followed, unavailable).",
			[]string{"result"}, func(s *S, emit collect.Emit) {
				for result, n := range s.Recoveries {
					emit(float64(n), result)
				}
			}),
		collect.Counter("imcloud_cloud_room_misses_total",
			"Room messages that found no member of their room on this node and were dropped: a membership the node had just lost, or a router without room membership (every node gets every room push).",
			func(s *S) uint64 { return s.RoomMisses }),
		collect.Histogram("imcloud_cloud_fanout_connections",
			"Connections each message was queued to on this node, 0 included (a room with nobody here).",
			func(s *S) imcloud.HistogramSnapshot { return s.Fanout }),
		collect.Histogram("imcloud_cloud_delivery_latency_seconds",
			"Time from logic accepting a push to this node starting the socket write that carries it, sampled one write in 64; as exact as the machines' clocks agree.",
			func(s *S) imcloud.HistogramSnapshot { return s.DeliveryLatency }),
	)
}
