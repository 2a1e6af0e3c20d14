# tollgate: `make run` starts a development broker, `make test` runs every test.
GO       ?= go
BIN      := bin/tollgate
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOBIN    := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOBIN):$(PATH)
# Every fuzz test, as package:target:executions (about 10 s each on 2 cores).
# Budgets are counts, not durations: Go 1.26's fuzz coordinator can fail a
# duration budget with "context deadline exceeded" on a loaded machine
# (golang/go#75804, fixed in Go 1.27). FUZZSCALE multiplies every count.
FUZZSCALE ?= 1
FUZZ := ./scope:FuzzParse:300000 ./broker:FuzzTokenEndpoint:25000 \
	./broker:FuzzInspect:30000 ./identity/htpasswd:FuzzParse:250000 \
	./identity/robot:FuzzStore:5000 ./internal/devicelogin:FuzzParseChallenges:100000

.PHONY: all build image run test test-deps lint unit fuzz e2e bench soak clean

all: build

# bin/docker-credential-tollgate: the same binary under the name registry
# clients run as the credential helper (tollgate login).
build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/tollgate
	ln -sf tollgate bin/docker-credential-tollgate

## image: the container image FROM scratch (Dockerfile), with nothing pulled:
## a static binary, the host's CA certificates and a non-root user (uid 65532)
PODMAN   ?= podman
IMAGE    ?= tollgate:$(VERSION)
IMAGEDIR ?= bin/image
CA_CERTS ?= /etc/ssl/certs/ca-certificates.crt
image:
	rm -rf $(IMAGEDIR)
	mkdir -p $(IMAGEDIR)/rootfs/usr/local/bin $(IMAGEDIR)/rootfs/etc/ssl/certs \
		$(IMAGEDIR)/rootfs/var/lib $(IMAGEDIR)/state/tollgate
	chmod 0700 $(IMAGEDIR)/state/tollgate
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" \
		-o $(IMAGEDIR)/rootfs/usr/local/bin/tollgate ./cmd/tollgate
	cp $(CA_CERTS) $(IMAGEDIR)/rootfs/etc/ssl/certs/ca-certificates.crt
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >$(IMAGEDIR)/rootfs/etc/passwd
	printf 'root:x:0:\nnonroot:x:65532:\n' >$(IMAGEDIR)/rootfs/etc/group
	$(PODMAN) build -f Dockerfile --build-arg VERSION=$(VERSION) \
		--build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null) -t $(IMAGE) $(IMAGEDIR)

## run: build and start the broker on the embedded development default
run: build
	./$(BIN) serve --state-dir .tollgate

## test: install missing test components, then lint, unit, Rego, fuzz and end-to-end tests
test: test-deps lint unit fuzz

test-deps:
	./scripts/install-test-deps.sh

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# Unit, Rego and end-to-end tests (test/e2e starts real registries and clients).
unit:
	$(GO) test -race -count=1 -timeout 20m ./...

## fuzz: run every fuzz test for its execution budget (failures are saved under testdata/fuzz)
fuzz:
	@set -e; for f in $(FUZZ); do \
		pkg=$${f%%:*}; rest=$${f#*:}; target=$${rest%%:*}; n=$$(( $${rest#*:} * $(FUZZSCALE) )); \
		echo "fuzz $$pkg $$target ($${n}x)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$target$$" -fuzztime $${n}x -timeout 10m; \
	done

e2e: build
	$(GO) test -count=1 -v -timeout 15m ./test/e2e/...

## bench: Go benchmarks and loopback load against tollgate and the parse-and-sign
## ceiling, one table (about 10 minutes; not part of `make test`). Set
## DOCKER_AUTH=/path/to/docker_auth to run docker_auth side by side (docs/performance.md).
BENCHFLAGS ?=
bench:
	$(GO) run ./test/bench $(BENCHFLAGS)

## soak: SOAKTIME (10m) of mixed load with reloads, key rotations, policy and
## user changes between 30 s runs; reports errors and RSS over time (not in `make test`).
SOAKTIME ?= 10m
soak:
	$(GO) run ./test/bench -micro=false -soak $(SOAKTIME)

clean:
	rm -rf bin
