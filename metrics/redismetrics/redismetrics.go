// Package redismetrics exports a redis.Router's Stats to Prometheus, as
// package metrics does for the roles; it lives apart so that metrics links
// no Redis code.
//
//	reg.MustRegister(redismetrics.Router(r))
package redismetrics

import (
	"github.com/imcloud/imcloud/metrics/internal/collect"
	"github.com/imcloud/imcloud/redis"
	"github.com/prometheus/client_golang/prometheus"
)

// Router returns a collector of r's Stats: imcloud_redis_*.
func Router(r *redis.Router) prometheus.Collector { return routerCollector(r.Stats) }

func routerCollector(stats func() redis.Stats) prometheus.Collector {
	type S = redis.Stats
	return collect.New(stats,
		collect.Counter("imcloud_redis_lookups_total",
			"Key and mid lookups that reached Redis.",
			func(s *S) uint64 { return s.Lookups }),
		collect.Counter("imcloud_redis_round_trips_total",
			"Redis round trips that carried the lookups; lookups per round trip is how well they batch.",
			func(s *S) uint64 { return s.RoundTrips }),
	)
}
