#!/usr/bin/env bash
# scripts/bench-control.sh (`make bench-control`): the control plane figures
# of BENCHMARKS.md's section "control plane", at the sizes the tests run
# smaller: 1,000 kicks by mid through the HTTP API of a user on two nodes
# (BenchmarkKick), 10,000 connects and disconnects whose events must all
# reach the events topic (BenchmarkEventsClustered), 1,000 clients sending
# 5,000 upstream messages per second (BenchmarkUpstreamClustered). Each in
# one test process: redis-server, the Kafka protocol (kfake), one logic,
# one job and two cloud nodes of examples/server. About 3 minutes.
#
# Knobs (environment): COUNT (runs of each, default 3), OUT (work dir).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/imcloud-bench-control.XXXXXX")}
COUNT=${COUNT:-3}
echo "bench-control: commit $(git describe --always --dirty --abbrev=7), output in $OUT"
go test -c -o "$OUT/node.test" ./examples/server/node
(cd examples/server/node && "$OUT/node.test" -test.run '^$' -test.bench 'BenchmarkKick$|EventsClustered|UpstreamClustered' \
	-test.benchtime 1x -test.count "$COUNT" -test.timeout 30m) | tee "$OUT/control.txt"
