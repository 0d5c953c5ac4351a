# The README's commands. `make test` is what CI runs (.ci/run).
GO ?= go

.PHONY: test deps vet unit js browser run bench bench-recovery bench-rooms bench-control bench-scale bench-scale-sweep bench-shards fuzz

# Everything CI checks: Go vet and race tests, the JavaScript client's unit
# tests, and the demo page in headless chromium against the real server.
test: deps vet unit js browser

deps:
	./scripts/install-test-deps.sh

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race ./...

# The browser client's unit tests (examples/web/imcloud.js), Node's own runner,
# and the client as an npm package: packed, installed elsewhere, imported, and
# its TypeScript declarations checked with tsc.
js:
	cd examples/web && npm ci --no-audit --no-fund && node --test imcloud.test.mjs recovery.test.mjs rooms.test.mjs token.test.mjs package.test.mjs

# The demo page driven in Debian's chromium (playwright-core) against a
# freshly built examples/server (examples/web/e2e; shared setup in
# e2e/helpers.mjs). Each file starts its own server and chromium: they run
# one at a time.
browser:
	cd examples/web && npm ci --no-audit --no-fund && node --test --test-concurrency=1 e2e/browser.test.mjs e2e/recovery-rooms.test.mjs e2e/token-kick.test.mjs

run:
	$(GO) run ./examples/server

# End-to-end scenarios with examples/bench (about 12 minutes; not part of
# `make test`): writes the tables into BENCHMARKS.md and docs/bench-scenario1.svg.
bench:
	./scripts/bench.sh

# The recovery figures (about 20 minutes; not part of `make bench`): replay on
# reconnect, history on vs off on the hot path, the history stores' memory,
# into BENCHMARKS.md's recovery section (scripts/bench-recovery.sh).
bench-recovery:
	./scripts/bench.sh recovery

# The rooms figures (about 10 minutes; not part of `make bench`): job's cost
# per room push at 2, 20 and 100 nodes, the 20-node cluster's reach and join
# churn, the router's membership calls, idle RSS with ten rooms per
# connection (scripts/bench-rooms.sh).
bench-rooms:
	./scripts/bench-rooms.sh

# The control plane figures (about 3 minutes; not part of `make bench`): kicks
# across two nodes, connection events and upstream messages at full rate
# (scripts/bench-control.sh).
bench-control:
	./scripts/bench-control.sh

# The scale scenario (not part of `make bench`): redis-server, kfake, logic,
# job, 10 cloud processes of 19,000 WebSocket connections each from 10
# generator processes (190,000 in all), ramp, a 5-minute idle hold, a room
# push and a paced broadcast to every connection, a reconnect storm (every
# gateway drained and restarted within 10 s) and the router's routes
# checked against the live connections; into BENCHMARKS.md's section
# "scale" (scripts/bench-scale.sh). About 12 minutes; `make bench-scale
# SMALL=1`: 3 gateways, 30,000 connections, under 3 minutes; `make
# bench-scale SHARDS=3`: the router over 3 redis-servers, into the
# subsection "The same over 3 Redis shards".
bench-scale:
	SMALL=$(SMALL) SHARDS=$(SHARDS) PROTO=$(PROTO) ./scripts/bench-scale.sh

# The scale scenario's cost as the work grows (about 10 minutes; not part of
# `make bench`): its load phase alone (ramp, 60 s hold, one room push) at
# 1,000, 5,000, 10,000 and 19,000 connections on one gateway and 5,000 per
# node on 5 and 10; plots into docs/bench-scale-*.svg and the table into
# BENCHMARKS.md's "Cost as the work grows" (scripts/bench-scale-sweep.sh).
# SHARDS=N: the router over N redis-servers (also for bench-scale).
bench-scale-sweep:
	SHARDS=$(SHARDS) ./scripts/bench-scale-sweep.sh

# The sharded router's cost (about 2 minutes; not part of `make bench`): Redis
# calls, commands and redis-server CPU per push, per session and per node
# renewal over 1, 2 and 3 redis-servers and a 3-master Redis Cluster, for
# BENCHMARKS.md's scale section.
bench-shards:
	$(GO) test -run '^$$' -bench RedisShardCost -benchtime 2s ./redis

# Short fuzz runs of the decoders (not part of `make test`).
fuzz:
	$(GO) test ./protocol -run '^$$' -fuzz FuzzReadFrame -fuzztime 30s
	$(GO) test ./protocol -run '^$$' -fuzz FuzzParsePushAt -fuzztime 30s
	$(GO) test . -run '^$$' -fuzz FuzzUnmarshalMessage -fuzztime 30s
	$(GO) test ./internal/link -run '^$$' -fuzz FuzzAccept -fuzztime 30s
	$(GO) test ./cloud -run '^$$' -fuzz FuzzLinkConn -fuzztime 30s -fuzzminimizetime 1s
	$(GO) test ./cloud -run '^$$' -fuzz FuzzWSUpgrade -fuzztime 30s -fuzzminimizetime 1s
