# Bulkhead build, test and demo entry points. See README.md.
GO       ?= go
export PATH := /usr/local/go/bin:$(PATH)
export GOFLAGS ?= -mod=mod
BIN      := bin/bulkhead
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
PKGS     := ./...

.PHONY: all build console test vet bench fuzz demo demo-down clean

all: build

build: console
	$(GO) build -ldflags "-X github.com/bulkhead/bulkhead/internal/cli.Version=$(VERSION)" -o $(BIN) ./cmd/bulkhead

# The web console (web/, React + Vite) builds into internal/console/dist,
# which the manager embeds. npm ci runs only when the lock file changed, the
# build only when a source did.
CONSOLE_SRC := $(shell find web/src web/index.html web/vite.config.ts web/tsconfig.json web/package.json -type f 2>/dev/null)
console: internal/console/dist/index.html

web/node_modules/.package-lock.json: web/package-lock.json web/package.json
	@command -v npm >/dev/null || { echo "make console: npm not found (apt-get install nodejs npm)"; exit 1; }
	cd web && npm ci --no-audit --no-fund

internal/console/dist/index.html: web/node_modules/.package-lock.json $(CONSOLE_SRC)
	cd web && npm run build

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

# Every test: unit, golden, fuzz seed corpora, (as root) kernel tests in
# network namespaces, and the console's browser tests (internal/console runs
# web/e2e in Debian's chromium against a real manager).
test: build vet
	$(GO) test -count=1 -timeout 20m $(PKGS)

# Benchmarks report ratios against a baseline measured in the same run.
bench: build
	$(GO) test -run '^$$' -bench . -benchtime 1s -timeout 30m ./internal/eval ./internal/policy ./internal/tagexpr ./internal/ports ./internal/span ./internal/flow ./internal/store ./internal/ipfix ./internal/zeek ./internal/dpi
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./internal/flowstore ./internal/recommend ./internal/discover ./internal/analysis
	$(GO) test -run '^$$' -bench IngestFlows -benchtime 1x -timeout 30m ./internal/manager
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./internal/ids/...
	@if [ "$$(id -u)" = 0 ]; then $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./internal/nft; \
	else echo "skipping the kernel benchmarks (internal/nft): they need root"; fi

# Short coverage-guided fuzzing of every parser.
FUZZTIME ?= 20s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/tagexpr
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/ports
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./internal/policy
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./internal/flow
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/lab/scenario
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/inventory/cmdb
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/zeek
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./internal/ipfix
	$(GO) test -run '^$$' -fuzz '^FuzzAnalyze$$' -fuzztime $(FUZZTIME) ./internal/analysis
	$(GO) test -run '^$$' -fuzz '^FuzzFeed$$' -fuzztime $(FUZZTIME) ./internal/dpi
	$(GO) test -run '^$$' -fuzz '^FuzzInspect$$' -fuzztime $(FUZZTIME) ./internal/ids
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./internal/ids/rules
	$(GO) test -run '^$$' -fuzz '^FuzzTranslatePCRE$$' -fuzztime $(FUZZTIME) ./internal/ids/rules
	$(GO) test -run '^$$' -fuzz '^FuzzSegment$$' -fuzztime $(FUZZTIME) ./internal/ids/stream
	$(GO) test -run '^$$' -fuzz '^FuzzStream$$' -fuzztime $(FUZZTIME) ./internal/ids/applayer
	$(GO) test -run '^$$' -fuzz '^FuzzDatagram$$' -fuzztime $(FUZZTIME) ./internal/ids/applayer
	$(GO) test -run '^$$' -fuzz '^FuzzIDSDecode$$' -fuzztime $(FUZZTIME) ./internal/span
	$(GO) test -run '^$$' -fuzz '^FuzzCompleteAlert$$' -fuzztime $(FUZZTIME) ./internal/manager
	$(GO) test -run '^$$' -fuzz '^FuzzParseMessages$$' -fuzztime $(FUZZTIME) ./internal/nfq

# The lab: a data center in network namespaces with a manager, agents and
# traffic (root). Checks for root before it builds; see scripts/demo.sh.
demo:
	@scripts/demo.sh preflight demo
	@$(MAKE) --no-print-directory build
	@scripts/demo.sh up

demo-down:
	@scripts/demo.sh down

clean:
	rm -rf bin .demo
	find internal/console/dist -mindepth 1 ! -name .gitkeep -delete
