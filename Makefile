# The README's commands. `make test` is what CI runs (.ci/run).
GO ?= go

.PHONY: test deps vet unit run bench fuzz

test: deps vet unit

deps:
	./scripts/install-test-deps.sh

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race ./...

run:
	$(GO) run ./examples/server

# Short fuzz runs of the decoders (not part of `make test`).
fuzz:
	$(GO) test ./protocol -run '^$$' -fuzz FuzzReadFrame -fuzztime 30s
	$(GO) test . -run '^$$' -fuzz FuzzUnmarshalMessage -fuzztime 30s
