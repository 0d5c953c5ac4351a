# The README's commands. `make test` is what CI runs (.ci/run).
GO ?= go

.PHONY: test deps vet unit js run bench fuzz

test: deps vet unit

deps:
	./scripts/install-test-deps.sh

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race ./...

# The browser client's unit tests (examples/web/imcloud.js), Node's own runner.
js:
	cd examples/web && npm ci --no-audit --no-fund && node --test imcloud.test.mjs

run:
	$(GO) run ./examples/server

# Short fuzz runs of the decoders (not part of `make test`).
fuzz:
	$(GO) test ./protocol -run '^$$' -fuzz FuzzReadFrame -fuzztime 30s
	$(GO) test . -run '^$$' -fuzz FuzzUnmarshalMessage -fuzztime 30s
