# Airlock's developer entry points. `make test` is the whole suite (what .ci/run calls).
GO       ?= go
NPM      ?= npm
BIN      ?= bin/airlock
# The e2e suite drives real clients through a real gateway; it takes a few minutes on 2 cores.
TEST_TIMEOUT ?= 25m
FUZZTIME ?= 10s

.PHONY: all build run test ci vet services bench fuzz clean ui

all: build

build:
	$(GO) build -o $(BIN) ./cmd/airlock

# Starts the gateway on its embedded default (./airlock-data, loopback listeners), with the web
# UI at http://127.0.0.1:8009/ when npm is there to build it (without, the page says how).
run:
	@if command -v $(NPM) >/dev/null 2>&1; then $(MAKE) ui || echo "make run: the web UI did not build; starting without it"; \
	else echo "make run: npm not found: starting without the web UI (install Node.js and npm, then make ui)"; fi
	$(GO) run ./cmd/airlock gateway

# The web UI: web/ (TypeScript, bundled by esbuild) into internal/ui/dist, which the binary
# embeds; build the binary after it. The output is not committed.
ui: web/node_modules/.package-lock.json
	cd web && $(NPM) run build

web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	cd web && $(NPM) ci --no-audit --no-fund

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
