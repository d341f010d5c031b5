# ewgw — east-west gateway. `make demo` and `make test` are all a newcomer needs.
SHELL := /bin/bash
GO ?= go
BIN := bin/ewgw
FUZZTIME ?= 15s
# Fuzz targets as package:Target; each runs for FUZZTIME in fuzz-smoke.
FUZZ_TARGETS := \
	./internal/sni:FuzzPeek \
	./internal/sni:FuzzParseHello \
	./internal/route:FuzzResolve \
	./internal/route:FuzzParseAnnotations \
	./internal/audience:FuzzParseList \
	./internal/identity:FuzzPermits \
	./internal/tunnel:FuzzHeader \
	./internal/tunnel:FuzzControl \
	./internal/tunnel:FuzzBundle \
	./internal/tunnel:FuzzYamuxSession

.PHONY: all build godebug-default version test e2e lint fuzz-smoke demo bench deps clean image

all: build

## build: bin/ewgw, with RUNTIME_GODEBUG as its built-in GODEBUG defaults
## (after the ones the go command sets from go.mod; a GODEBUG environment
## variable still overrides each). schedtrace=2147483647 (a scheduler trace
## line every 24.8 days) is there for its side effect: the runtime's monitor
## thread no longer parks whenever the process goes idle, to be woken by the
## next syscall. On a 2-vCPU VM the monitor spent 10 % of the gateway's CPU
## in the connection-rate test, and the setting cut the CPU per new
## connection by 8 % on average. docs/performance.md, "The runtime's
## monitor thread", has the measurements and the trade-offs.
RUNTIME_GODEBUG := schedtrace=2147483647
## VERSION is what `ewgw version` prints and tells its peers: by default
## `git describe` of the checkout (a tag, else the commit; -dirty with
## uncommitted changes). Empty, the binary falls back to the commit the go
## command stamped, which GOFLAGS=-buildvcs=false and a build outside a
## git checkout leave out, and then to "dev".
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
comma := ,
build:
	$(GO) build -trimpath -ldflags="-s -w -X=runtime.godebugDefault=$(call godebug_default) -X=main.buildVersion=$(VERSION)" -o $(BIN) ./cmd/ewgw

# godebug_default: the go command's defaults for cmd/ewgw, then RUNTIME_GODEBUG.
godebug_default = $(subst $() ,$(comma),$(strip $(subst $(comma), ,$(shell $(GO) list -f '{{.DefaultGODEBUG}}' ./cmd/ewgw)) $(RUNTIME_GODEBUG)))

## godebug-default: print the GODEBUG defaults build gives bin/ewgw.
godebug-default:
	@echo '$(call godebug_default)'

## version: print the VERSION build stamps into bin/ewgw.
version:
	@echo '$(VERSION)'

## deps: install the system tools the tests drive (openssl, curl, strace,
## etcd, promtool, gcc), and build or find the cached kube-apiserver and
## kubectl (v1.37) the discovery and deploy tests run, and spire-server and
## spire-agent (v1.13.3) for the real-SPIRE test (cgo: gcc).
deps:
	@scripts/deps.sh openssl curl strace etcd:etcd-server promtool:prometheus gcc
	@scripts/kube-apiserver.sh >/dev/null
	@scripts/kubectl.sh >/dev/null
	@scripts/spire.sh >/dev/null

## test: race-enabled tests, then a short fuzz pass. go test runs go vet's
## high-confidence checks on every package it tests; the rest of go vet
## runs in `make lint` (golangci-lint's govet), so test does not compile
## every dependency a third time for it (2.5 of 12 minutes on a cold cache).
## perf/ is a Go module of its own (its plotting stack stays out of the
## gateway's module graph), so its tests run from its directory. The
## tunnel's tests and the public surface's authorization tests run a
## second time on the TCP transport (EWGW_TUNNEL_TRANSPORT).
test: deps
	$(GO) test -race -count=1 -timeout 8m ./...
	EWGW_TUNNEL_TRANSPORT=tcp $(GO) test -race -count=1 -timeout 4m ./internal/tunnel
	EWGW_TUNNEL_TRANSPORT=tcp $(GO) test -race -count=1 -timeout 4m \
		-run 'TestClientSurfaceExportOnly|TestExportAudience|TestPublicPassthrough|TestCrossCluster' ./internal/gateway
	cd perf && $(GO) test -race -count=1 -timeout 4m ./...
	$(MAKE) --no-print-directory fuzz-smoke FUZZTIME=5s

## e2e: the two-cluster end-to-end suite on this machine (network namespaces,
## real kube-apiservers, deploy/ applied with kubectl; needs root), then its
## total time. See test/e2e/README.md; test/e2e/kind/run.sh is the same on kind.
e2e: deps
	@scripts/deps.sh ip:iproute2 nginx setpriv:util-linux shellcheck iptables-legacy-restore:iptables
	@start=$$(date +%s); rc=0; \
	$(GO) test -tags e2e -count=1 -v -timeout 20m ./test/e2e/... || rc=$$?; \
	echo "e2e: total $$(( $$(date +%s) - start ))s"; exit $$rc

## fuzz-smoke: run every fuzz target for FUZZTIME. A run that ends with only
## "context deadline exceeded" and no failing input is Go 1.26's coordinator
## race at the -fuzztime boundary (go.dev/issue/75804) and runs once more.
fuzz-smoke:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		if ! $(GO) test -list "^$$name$$" $$pkg 2>/dev/null | grep -qx "$$name"; then \
			echo "fuzz-smoke: $$pkg $$name not found" >&2; exit 1; fi; \
		echo "fuzz $$pkg $$name ($(FUZZTIME))"; \
		log=$$(mktemp); \
		fuzz() { $(GO) test $$pkg -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) >$$log 2>&1; }; \
		if ! fuzz; then \
			if grep -q 'context deadline exceeded' $$log && ! grep -q 'Failing input written' $$log; then \
				echo "fuzz-smoke: $$name stopped on Go's fuzz-coordinator deadline race (go.dev/issue/75804, fixed in Go 1.27; no input failed), running it again"; \
				fuzz || { tail -n 40 $$log; rm -f $$log; exit 1; }; \
			else tail -n 40 $$log; rm -f $$log; exit 1; fi; \
		fi; \
		rm -f $$log; \
	done

## lint: golangci-lint, version pinned in tools/go.mod; each fork in
## third_party/ must be its upstream release plus its patch, nothing else.
lint:
	$(GO) run -modfile=tools/go.mod github.com/golangci/golangci-lint/v2/cmd/golangci-lint run ./...
	cd perf && $(GO) run -modfile=../tools/go.mod github.com/golangci/golangci-lint/v2/cmd/golangci-lint run --config ../.golangci.yml ./...
	scripts/fork.sh --check

## demo: two gateways and a TLS service on loopback, one cross-cluster call
## (cmd/ewgw-demo: a binary of its own, so bin/ewgw carries no test fixtures).
demo:
	$(GO) build -trimpath -o bin/ewgw-demo ./cmd/ewgw-demo
	bin/ewgw-demo

## image: the container image (IMAGE, default ewgw:dev), FROM scratch, built
## offline from a CGO_ENABLED=0 bin/ewgw; needs a running dockerd.
image:
	@IMAGE=$(or $(IMAGE),ewgw:dev) scripts/image.sh

## bench: the perf suite (see perf/README.md).
bench: build
	$(MAKE) -C perf bench

## bench-wan: ewgw against direct, HAProxy and nginx across an emulated WAN
## link (root; see perf/RESULTS.md).
bench-wan: build
	$(MAKE) -C perf bench-wan

clean:
	rm -rf bin
