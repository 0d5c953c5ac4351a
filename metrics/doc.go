// Package metrics exports the roles' Stats to Prometheus: typed, described
// collectors over a logic.Pusher, a job.Job and a cloud.Server, for a
// registry the caller owns.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(metrics.Logic(pusher), metrics.Job(j), metrics.Cloud(srv))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// docs/metrics.md lists every metric, its labels, its meaning and the
// alerts it serves.
//
// # Design
//
// The roles keep no metrics library: each counts in atomics and reports a
// Stats snapshot, and the distributions operators alert on (push duration,
// link round trip, fan-out, delivery latency) are imcloud.Histogram values
// in those snapshots, lock-free and allocation-free to observe. This
// package is the only library package that imports
// prometheus/client_golang (deps_test.go checks it), so an embedder who
// does not use Prometheus does not link it. A collector calls its role's
// Stats once per scrape and turns every field into a family with a fixed
// name, type and HELP written for operators:
//
//   - names are imcloud_<role>_<what>, with the unit last (_seconds,
//     _bytes; counts name what they count: _connections, _messages);
//   - counters end in _total; gauges do not;
//   - histograms are built from the snapshot at scrape time
//     (prometheus.MustNewConstHistogram), in base units (seconds).
//
// The collectors are checked (Describe lists every family), so a registry
// refuses a clash at registration, and safe for concurrent scrapes. The
// backends' collectors live in subpackages so that this one links neither
// Redis nor Kafka code: redismetrics for redis.Router.
package metrics
