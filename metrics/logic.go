package metrics

import (
	"github.com/imcloud/imcloud"
	"github.com/imcloud/imcloud/logic"
	"github.com/imcloud/imcloud/metrics/internal/collect"
	"github.com/prometheus/client_golang/prometheus"
)

// Logic returns a collector of p's Stats: imcloud_logic_*.
func Logic(p *logic.Pusher) prometheus.Collector { return logicCollector(p.Stats) }

func logicCollector(stats func() logic.Stats) prometheus.Collector {
	type S = logic.Stats
	return collect.New(stats,
		collect.Counter("imcloud_logic_pushes_total",
			"Pushes that succeeded: the queue accepted every message of the push.",
			func(s *S) uint64 { return s.Pushes }),
		collect.Counter("imcloud_logic_push_failures_total",
			"Pushes that failed after the worker pool took them (router or queue error, or the push timeout), synchronous and asynchronous.",
			func(s *S) uint64 { return s.Failed }),
		collect.Counter("imcloud_logic_async_push_failures_total",
			"Asynchronous pushes that failed (also in imcloud_logic_push_failures_total), such as the push API's early replies: their callers were answered before.",
			func(s *S) uint64 { return s.AsyncFailed }),
		collect.Counter("imcloud_logic_overloaded_pushes_total",
			"Pushes refused at once (HTTP 503): the worker pool and its wait list full, or the push's cost budget spent (the two counters below).",
			func(s *S) uint64 { return s.Overloaded }),
		collect.Counter("imcloud_logic_overloaded_small_cost_pushes_total",
			"Small pushes refused at once (HTTP 503) because the small pushes' cost budget was spent (also in imcloud_logic_overloaded_pushes_total).",
			func(s *S) uint64 { return s.OverloadedSmallCost }),
		collect.Counter("imcloud_logic_overloaded_cost_pushes_total",
			"Large pushes refused at once (HTTP 503) because the large pushes' cost budget was spent (also in imcloud_logic_overloaded_pushes_total).",
			func(s *S) uint64 { return s.OverloadedCost }),
		collect.Gauge("imcloud_logic_small_push_cost_in_flight",
			"Cost (targets plus body KiB) of the small pushes in flight now.",
			func(s *S) float64 { return float64(s.SmallCost) }),
		collect.Gauge("imcloud_logic_push_cost_in_flight",
			"Cost (targets plus body KiB) of the large pushes in flight now.",
			func(s *S) float64 { return float64(s.Cost) }),
		collect.Counter("imcloud_logic_messages_published_total",
			"Messages the queue accepted: one per room or broadcast push, one per target node of a key or mid push (with history on, one per user of a mid push).",
			func(s *S) uint64 { return s.Messages }),
		collect.Gauge("imcloud_logic_pool_busy_workers",
			"Pool workers running a push now.",
			func(s *S) float64 { return float64(s.Running) }),
		collect.Gauge("imcloud_logic_pool_waiting_pushes",
			"Pushes waiting for a pool worker now.",
			func(s *S) float64 { return float64(s.Waiting) }),
		collect.Histogram("imcloud_logic_push_duration_seconds",
			"Time from a push call to the queue accepting every message of the push, for pushes that succeeded.",
			func(s *S) imcloud.HistogramSnapshot { return s.Duration }),
	)
}
