# Airlock's developer entry points. `make test` is the whole suite (what .ci/run calls).
GO       ?= go
BIN      ?= bin/airlock
# The e2e suite drives real clients through a real gateway; it takes a few minutes on 2 cores.
TEST_TIMEOUT ?= 25m
FUZZTIME ?= 10s

.PHONY: all build run test ci vet services bench fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/airlock

# Starts the gateway on its embedded default (./airlock-data, loopback listeners).
run:
	$(GO) run ./cmd/airlock gateway

services:
	bash scripts/ensure-services.sh

vet:
	$(GO) vet ./...

# The whole suite, end-to-end tests included (test/e2e needs PostgreSQL and psql, pgbench,
# pg_dump; scripts/ensure-services.sh starts/installs them).
test: services vet
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

ci: test

# Direct vs through the gateway; writes the figures to stdout (see docs/benchmarks.md).
bench: services
	bash scripts/bench.sh

# Runs every Fuzz* target for $(FUZZTIME) each.
fuzz:
	@set -e; \
	found=0; \
	for f in $$(grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . ); do \
		dir=$$(dirname $$f); \
		for fn in $$(grep -hoE '^func Fuzz[A-Za-z0-9_]*' $$f | sed 's/^func //'); do \
			found=1; \
			echo "== $$dir $$fn"; \
			$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) ./$$dir; \
		done; \
	done; \
	if [ $$found = 0 ]; then echo "no Fuzz targets found"; fi

clean:
	rm -rf bin
