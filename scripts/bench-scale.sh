#!/usr/bin/env bash
# scripts/bench-scale.sh (`make bench-scale`): the scale scenario. One
# redis-server, a Kafka-protocol broker (examples/kfake), one logic, one job
# and GW cloud processes of examples/server (-role cloud, each its own
# ports, -max-conns 19000), and GENS generator processes of examples/bench
# (-mode scale, PER_GEN authenticated WebSocket connections each, spread
# over every gateway, heartbeats every 30 s, each generator from its own
# 127.0.x.y source addresses), coordinated by `bench scale`:
#
#   ramp       time until every connection is authenticated;
#   hold       HOLD of idle holding: CPU and RSS per process (gateway RSS
#              per connection above its RSS with none), redis-server CPU
#              and commands per second (INFO);
#   room       one room push to the room every connection is in: time until
#              the last client has it in its socket;
#   broadcast  one broadcast paced at 100,000 connections/s: same;
#   reconnect  every gateway SIGTERMed (drain, op 6 with a reconnect hint)
#              within 10 s of the first and restarted as soon as it exited;
#              time from the first SIGTERM until every connection is back;
#   routes     the router's routes (logic's presence API) against the
#              generators' live connections: 0 missing, 0 stale;
#   room after the storm  one more room push, to every connection.
#
# Every delivery is counted per connection: a connection without a push
# fails the run. Writes the table into BENCHMARKS.md's section "scale"
# with the commands, the machine and the commit; with SHARDS above 1, into
# its subsection "The same over SHARDS Redis shards" instead.
#
# Knobs (environment): SMALL=1 (3 gateways, 30,000 connections, 30 s hold:
# under 3 minutes), GW, GENS, PER_GEN, HOLD, CONNECT_RATE (per generator),
# SHARDS (redis-servers the router is sharded over, default 1), PROTO (ws,
# the default, or tcp: goim TCP clients; its report has its own block), GW_FLAGS
# (more flags for every gateway, e.g. '-pprof -log-level info': pprof on
# its admin port, and the drain's phases logged when it ends), LOAD_ONLY=1
# (ramp, hold and the room push only: no broadcast, no storm, no report;
# the results stay in OUT/results.jsonl, as scripts/bench-scale-sweep.sh
# runs it), OUT (work dir), MD (the BENCHMARKS.md to write).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ "${SMALL:-}" = 1 ]; then
	GW=${GW:-3} GENS=${GENS:-2} PER_GEN=${PER_GEN:-15000} HOLD=${HOLD:-30s}
else
	GW=${GW:-10} GENS=${GENS:-10} PER_GEN=${PER_GEN:-19000} HOLD=${HOLD:-5m}
fi
CONNECT_RATE=${CONNECT_RATE:-2000} SHARDS=${SHARDS:-1} PROTO=${PROTO:-ws}
TOTAL=$((GENS * PER_GEN))
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/imcloud-bench-scale.XXXXXX")}
MD=${MD:-$ROOT/BENCHMARKS.md}
RESULTS=$OUT/results.jsonl
COMMIT=$(git describe --always --dirty --abbrev=7 2>/dev/null || echo unknown)
mkdir -p "$OUT/bin"
: >"$RESULTS"
ulimit -n "$(ulimit -Hn)"
echo "bench-scale: $GW gateways, $GENS generators x $PER_GEN connections, hold $HOLD, $SHARDS redis-servers; work dir $OUT"

go build -o "$OUT/bin/server" ./examples/server
go build -o "$OUT/bin/bench" ./examples/bench
go build -o "$OUT/bin/kfake" ./examples/kfake
SERVER=$OUT/bin/server BENCH=$OUT/bin/bench

PIDS=()
# cleanup stops the processes newest first, each before the next: the
# generators before the gateways, and Redis and the broker last, so that
# no gateway waits out its drain timeout on a dead Redis.
cleanup() {
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill "${PIDS[$i]}" 2>/dev/null || true
		wait "${PIDS[$i]}" 2>/dev/null || true
	done
}
trap cleanup EXIT

# start NAME CMD...: run in the background, log to $OUT/NAME.log; the pid
# is in $LAST.
start() {
	local name=$1
	shift
	"$@" >>"$OUT/$name.log" 2>&1 &
	LAST=$!
	PIDS+=("$LAST")
}

wait_ready() { # wait_ready HOST:PORT
	for _ in $(seq 1 150); do
		if curl -fs "http://$1/readyz" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	echo "bench-scale: $1 not ready" >&2
	return 1
}

# Loopback ports of their own, so that other servers are left alone.
# Redis shard I listens on 26479+I.
REDIS_PORT=26479 KAFKA=127.0.0.1:29192 API=127.0.0.1:23211
REDIS_ADDRS= REDIS_PIDS=
for i in $(seq 0 $((SHARDS - 1))); do
	start redis-$i redis-server --port $((REDIS_PORT + i)) --bind 127.0.0.1 --save '' --appendonly no
	REDIS_ADDRS+=${REDIS_ADDRS:+,}127.0.0.1:$((REDIS_PORT + i))
	name=redis
	if [ "$SHARDS" -gt 1 ]; then name=redis-$i; fi
	REDIS_PIDS+=${REDIS_PIDS:+,}$name=$LAST
done
COMMON="-redis-addr $REDIS_ADDRS -kafka-brokers $KAFKA -link-secret bench-link-secret -auth dev -log-level warn"
start kfake "$OUT/bin/kfake" -addr "$KAFKA" -topic imcloud-push -partitions 4
pid_kfake=$LAST
sleep 1
LOGIC_ARGS="-role logic -http-addr $API $COMMON"
JOB_ARGS="-role job -admin-addr 127.0.0.1:23229 $COMMON"
start logic "$SERVER" $LOGIC_ARGS
pid_logic=$LAST
start job "$SERVER" $JOB_ARGS
pid_job=$LAST

# listen_args K: gateway K's client listener, WebSocket on 24000+K, or TCP
# there with PROTO=tcp.
listen_args() {
	if [ "$PROTO" = tcp ]; then
		echo "-tcp-addr 127.0.0.1:$((24000 + $1)) -ws-addr ''"
	else
		echo "-tcp-addr '' -ws-addr 127.0.0.1:$((24000 + $1))"
	fi
}

# gw_args K INCARNATION: gateway K's flags; its node id names the
# incarnation, so a route left by the one before shows as stale.
gw_args() {
	echo "-role cloud -node-id scale-$1-$2 $(listen_args "$1") -link-addr 127.0.0.1:$((24100 + $1)) -admin-addr 127.0.0.1:$((24200 + $1)) -max-conns 19000 $COMMON${GW_FLAGS:+ $GW_FLAGS}"
}
start_gw() { # start_gw K INCARNATION
	eval "start gw-$1 \"\$SERVER\" $(gw_args "$1" "$2")"
	GWPID[$1]=$LAST
	NODE[$1]=scale-$1-$2
}
declare -a GWPID NODE
GATEWAYS=
for k in $(seq 0 $((GW - 1))); do
	start_gw "$k" 1
	GATEWAYS+=${GATEWAYS:+,}127.0.0.1:$((24000 + k))
done
for k in $(seq 0 $((GW - 1))); do wait_ready "127.0.0.1:$((24200 + k))"; done
wait_ready "$API"
wait_ready 127.0.0.1:23229

# Generator G dials from 127.0.(101+G).1 onwards, 1,000 connections per
# address (-first-ip counts addresses from 127.0.0.1).
GENCTL= GENPIDS=
GEN_ARGS="-mode scale -proto $PROTO -conns $PER_GEN -per-ip 1000 -gateways $GATEWAYS -heartbeat 30s -connect-rate $CONNECT_RATE -duration 2h -quiet"
for g in $(seq 0 $((GENS - 1))); do
	start gen-$g "$BENCH" $GEN_ARGS -gen-index "$g" -first-ip $(((101 + g) * 256)) -ctl "127.0.0.1:$((24300 + g))"
	GENCTL+=${GENCTL:+,}127.0.0.1:$((24300 + g))
	GENPIDS+=,gen-$g=$LAST
done
for g in $(seq 0 $((GENS - 1))); do
	for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$((24300 + g))/state" >/dev/null 2>&1 && break; sleep 0.1; done
done

PIDLIST="$REDIS_PIDS,kfake=$pid_kfake,logic=$pid_logic,job=$pid_job"
for k in $(seq 0 $((GW - 1))); do PIDLIST+=",gw-$k=${GWPID[$k]}"; done
PIDLIST+=$GENPIDS
CTL=("$BENCH" scale -gens "$GENCTL" -api "$API" -redis "$REDIS_ADDRS" -expect "$TOTAL" -json "$RESULTS")
ok=1
if [ "${LOAD_ONLY:-}" = 1 ]; then
	"${CTL[@]}" -phase load -hold "$HOLD" -speed 0 -pids "$PIDLIST" || ok=0
	echo "bench-scale: results in $RESULTS"
	[ $ok = 1 ]
	exit
fi
"${CTL[@]}" -phase load -hold "$HOLD" -pids "$PIDLIST" || ok=0

# The reconnect storm: gateway K gets SIGTERM K*9/(GW-1) s after the first
# (all within 10 s), and is restarted as soon as it has exited.
if [ $ok = 1 ]; then
	STAGGER=$((GW > 1 ? 9000 / (GW - 1) : 0))
	SINCE=$(date +%s%N)
	declare -A killed restarted
	left=$GW
	while [ "$left" -gt 0 ]; do
		now=$((($(date +%s%N) - SINCE) / 1000000))
		for k in $(seq 0 $((GW - 1))); do
			if [ -z "${killed[$k]:-}" ] && [ "$now" -ge $((k * STAGGER)) ]; then
				kill -TERM "${GWPID[$k]}"
				killed[$k]=$now
			elif [ -n "${killed[$k]:-}" ] && [ -z "${restarted[$k]:-}" ] && ! kill -0 "${GWPID[$k]}" 2>/dev/null; then
				wait "${GWPID[$k]}" || echo "bench-scale: gateway $k exited with $?"
				start_gw "$k" 2
				restarted[$k]=$now
				left=$((left - 1))
			fi
		done
		sleep 0.05
	done
	for k in $(seq 0 $((GW - 1))); do echo "bench-scale: gateway $k SIGTERM at ${killed[$k]} ms, restarted at ${restarted[$k]} ms"; done
	IDS=$(
		IFS=,
		echo "${NODE[*]}"
	)
	"${CTL[@]}" -phase back -since "$SINCE" -node-ids "$IDS" || ok=0
fi

{
	echo "Generated by \`$([ "$PROTO" = ws ] || echo "PROTO=$PROTO ")$([ "$SHARDS" = 1 ] || echo "SHARDS=$SHARDS ")make bench-scale\`$([ "${SMALL:-}" = 1 ] && echo ' (SMALL=1)') on $(date -u +%Y-%m-%d), commit $COMMIT."
	echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), $(ulimit -Hn) open files per process,"
	echo "$(go version | cut -d' ' -f3-), loopback only; every process below on it. Processes, as scripts/bench-scale.sh starts them:"
	echo
	echo '```'
	echo "redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no$([ "$SHARDS" = 1 ] || echo "   # shard I of $SHARDS: port $REDIS_PORT+I")"
	echo "go run ./examples/kfake -addr $KAFKA -topic imcloud-push -partitions 4"
	echo "./server $LOGIC_ARGS"
	echo "./server $JOB_ARGS"
	echo "./server $(gw_args 0 1)   # gateway 0; gateway K: ports 24000+K, 24100+K, 24200+K, node id scale-K-1, restarted as scale-K-2"
	echo "./bench $GEN_ARGS -gen-index G -first-ip \$(((101 + G) * 256)) -ctl 127.0.0.1:\$((24300 + G))   # G = 0..$((GENS - 1))"
	echo "./bench scale -phase load -hold $HOLD -expect $TOTAL ...; ./bench scale -phase back ...   # the coordinator"
	echo '```'
	echo
	echo "Times to the last client are from the push's send to its arrival in the last client socket (kernel"
	echo "receive timestamp); p50/p99 over all connections. Missing: connections without the push, or live"
	echo "connections without a route; stale: routes to no live connection; conns dropped: connections the phase"
	echo "closed (the storm closes them all; each must come back). Dial errors include the refused dials to a"
	echo "gateway that is restarting; refused counts auth refusals."
} >"$OUT/preamble.md"
"$BENCH" scale -phase report -proto "$PROTO" -shards "$SHARDS" -json "$RESULTS" -preamble "$OUT/preamble.md" -md "$MD"
echo "bench-scale: results in $RESULTS; BENCHMARKS.md updated"
[ $ok = 1 ]
