package metrics

import (
	"strconv"

	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/job"
	"github.com/imcloud/imcloud/metrics/internal/collect"
	"github.com/prometheus/client_golang/prometheus"
)

// Job returns a collector of j's Stats: imcloud_job_*, with a node label
// on the per-node families and a partition label on the commit lag.
func Job(j *job.Job) prometheus.Collector { return jobCollector(j.Stats) }

func jobCollector(stats func() job.Stats) prometheus.Collector {
	type S = job.Stats
	node, partition := []string{"node"}, []string{"partition"}
	perNode := func(v func(job.NodeStats) float64) func(*S, collect.Emit) {
		return func(s *S, emit collect.Emit) {
			for id, n := range s.Nodes {
				emit(v(n), id)
			}
		}
	}
	perPartition := func(v func(job.PartitionStats) float64) func(*S, collect.Emit) {
		return func(s *S, emit collect.Emit) {
			for id, p := range s.Partitions {
				emit(v(p), strconv.Itoa(int(id)))
			}
		}
	}
	return collect.New(stats,
		collect.Counter("imcloud_job_records_consumed_total",
			"Records received from the queue.",
			func(s *S) uint64 { return s.Consumed }),
		collect.Counter("imcloud_job_messages_delivered_total",
			"Messages nodes acknowledged, one per message per node.",
			func(s *S) uint64 { return s.Delivered }),
		collect.Counter("imcloud_job_delivery_retries_total",
			"Deliveries to a node that failed and were retried with backoff.",
			func(s *S) uint64 { return s.Retried }),
		collect.Counter("imcloud_job_records_skipped_total",
			"Records skipped as poison: undecodable, of an unknown kind, or too large for the link; messages a node refused as too new for it.",
			func(s *S) uint64 { return s.Skipped }),
		collect.Counter("imcloud_job_messages_expired_total",
			"Messages dropped because their expiry passed before delivery.",
			func(s *S) uint64 { return s.Expired }),
		collect.Counter("imcloud_job_records_dead_lettered_total",
			"Records of a newer major version set aside on the dead-letter topic.",
			func(s *S) uint64 { return s.DeadLettered }),
		collect.Counter("imcloud_job_dead_letter_failures_total",
			"Records of a newer major version that could not be set aside, and were skipped.",
			func(s *S) uint64 { return s.DeadLetterFailed }),
		collect.Counter("imcloud_job_deliveries_abandoned_total",
			"Deliveries given up because their node left the directory (its registration expired).",
			func(s *S) uint64 { return s.Abandoned }),
		collect.Counter("imcloud_job_messages_unroutable_total",
			"Messages with no node to go to: a key message's node is not in the directory, or no node is.",
			func(s *S) uint64 { return s.Unroutable }),
		collect.Counter("imcloud_job_room_no_members_total",
			"Room messages whose room had no member on any node (room-aware dispatch): delivered to nobody.",
			func(s *S) uint64 { return s.RoomNoMembers }),
		collect.Counter("imcloud_job_room_lookup_errors_total",
			"Room member lookups (the router's NodesByRooms) that failed; their batch fanned out to every node.",
			func(s *S) uint64 { return s.RoomLookupErrors }),
		collect.Counter("imcloud_job_room_fallbacks_total",
			"Room messages sent to every live node because their member lookup failed.",
			func(s *S) uint64 { return s.RoomFallbacks }),
		collect.Counter("imcloud_job_commits_total",
			"Offset commits the queue accepted.",
			func(s *S) uint64 { return s.Commits }),
		collect.Counter("imcloud_job_commit_failures_total",
			"Offset commits that failed; the next commit covers their records.",
			func(s *S) uint64 { return s.CommitErrors }),
		collect.Counter("imcloud_job_directory_errors_total",
			"Reads of the node directory (the router) that failed; the last list read stands meanwhile.",
			func(s *S) uint64 { return s.DirectoryErrors }),
		collect.Counter("imcloud_job_history_appends_total",
			"Pushes appended to a stream's history: one per user of a push to users, one per room push.",
			func(s *S) uint64 { return s.HistoryAppended }),
		collect.Counter("imcloud_job_history_append_failures_total",
			"History appends that failed; each is retried while its partition waits.",
			func(s *S) uint64 { return s.HistoryErrors }),
		collect.Counter("imcloud_job_user_lookup_failures_total",
			"Lookups of a user's connections that failed; each is retried while its partition waits.",
			func(s *S) uint64 { return s.LookupErrors }),
		collect.Counter("imcloud_job_kicks_total",
			"Kicks routed: by keys to their node, by mids to the nodes of their users' connections.",
			func(s *S) uint64 { return s.Kicks }),
		collect.Counter("imcloud_job_user_pushes_offline_total",
			"Pushes to users none of whom had a connection: kept in their history, delivered to nobody.",
			func(s *S) uint64 { return s.Offline }),
		collect.Counter("imcloud_job_catch_up_messages_total",
			"Room pushes and broadcasts handed to a node that joined after they were fanned out, accepted since it registered.",
			func(s *S) uint64 { return s.CaughtUp }),
		collect.Counter("imcloud_job_catch_up_gaps_total",
			"Nodes that joined after the record of recent fan-outs dropped one they may need: their clients may have missed a push.",
			func(s *S) uint64 { return s.CatchUpGaps }),
		collect.Gauge("imcloud_job_pending_records",
			"Records received and not yet done (delivered, or given up) now.",
			func(s *S) float64 { return float64(s.Pending) }),
		collect.GaugeVec("imcloud_job_node_lag_messages",
			"Messages waiting for a node or in flight to it now.",
			node, perNode(func(n job.NodeStats) float64 { return float64(n.Lag) })),
		collect.GaugeVec("imcloud_job_node_oldest_wait_seconds",
			"How long the oldest message waiting for a node has waited.",
			node, perNode(func(n job.NodeStats) float64 { return n.Oldest.Seconds() })),
		collect.CounterVec("imcloud_job_node_messages_delivered_total",
			"Messages a node acknowledged.",
			node, perNode(func(n job.NodeStats) float64 { return float64(n.Delivered) })),
		collect.CounterVec("imcloud_job_node_delivery_retries_total",
			"Deliveries to a node that failed and were retried.",
			node, perNode(func(n job.NodeStats) float64 { return float64(n.Retried) })),
		collect.GaugeVec("imcloud_job_node_failing",
			"1 while the last delivery to a node failed, 0 after a success.",
			node, perNode(func(n job.NodeStats) float64 { return boolFloat(n.LastError != "") })),
		collect.GaugeVec("imcloud_job_commit_lag_records",
			"Records received from a partition and not yet committed: waiting for their nodes, or for the commit.",
			partition, perPartition(func(p job.PartitionStats) float64 { return float64(p.Uncommitted) })),
		collect.GaugeVec("imcloud_job_commit_lag_seconds",
			"How long the oldest record of a partition not yet committed has been held since it was received; 0 when every record is committed.",
			partition, perPartition(func(p job.PartitionStats) float64 { return p.Oldest.Seconds() })),
		collect.Histogram("imcloud_job_link_round_trip_seconds",
			"Time from writing a delivery to a node's link to the node's acknowledgement.",
			func(s *S) imcloud.HistogramSnapshot { return s.LinkRoundTrip }),
	)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
