#!/usr/bin/env bash
# scripts/bench-rooms.sh (`make bench-rooms`): the rooms figures of
# BENCHMARKS.md's section "rooms". Runs, one at a time:
#
#   J   job's cost and link bytes per room push at 2, 20 and 100 gateway
#       nodes, every node (Config.Rooms nil) against member nodes only
#       (BenchmarkRoomPush, COUNT alternated runs, then benchstat);
#   C   the 20-node cluster in one process behind redis-server and the
#       Kafka protocol: 1,000 rooms with members on 1-3 nodes each, every
#       push reaching exactly its members (BenchmarkRoomReach), then joins
#       and leaves at over 10,000/s while 1,000 room pushes/s flow, with
#       the join and leave latency (BenchmarkRoomChurn);
#   R   the router's membership calls on redis-server (BenchmarkRedis
#       NodesByRooms, PutRooms);
#   M   the gateway's idle RSS per connection: one room, one room and a
#       heartbeat, ten rooms and a heartbeat (BenchmarkIdleConnRSS tcp,
#       tcp-beat, tcp-rooms10, one per process).
#
# Writes every raw output to OUT (default a fresh temp dir) and prints them.
# Knobs (environment): COUNT (runs of J, default 6), OUT. About 10 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/imcloud-bench-rooms.XXXXXX")}
COUNT=${COUNT:-6}
echo "bench-rooms: commit $(git describe --always --dirty --abbrev=7), output in $OUT"

go test -c -o "$OUT/job.test" ./job
go test -c -o "$OUT/node.test" ./examples/server/node
go test -c -o "$OUT/redis.test" ./redis
go test -c -o "$OUT/bench.test" ./examples/bench

echo "== J: job per room push"
for _ in $(seq "$COUNT"); do
	"$OUT/job.test" -test.run '^$' -test.bench 'RoomPush' -test.benchtime 20000x
done | tee "$OUT/job.txt"
if command -v benchstat >/dev/null; then benchstat "$OUT/job.txt" | tee "$OUT/job-benchstat.txt"; fi

echo "== C: 20-node cluster"
(cd examples/server/node && "$OUT/node.test" -test.run '^$' -test.bench 'RoomReach|RoomChurn' -test.benchtime 1x -test.timeout 20m) | tee "$OUT/cluster.txt"

echo "== R: router membership calls"
"$OUT/redis.test" -test.run '^$' -test.bench 'Rooms' -test.benchtime 2s -test.count 3 | tee "$OUT/redis.txt"

echo "== M: idle RSS per connection, one room and ten"
(cd examples/bench && for v in tcp tcp-beat tcp-rooms10; do
	"$OUT/bench.test" -test.run '^$' -test.bench "IdleConnRSS/$v\$" -test.benchtime 1x -test.v
done) | tee "$OUT/rss.txt"
