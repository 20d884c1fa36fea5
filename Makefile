# pgcloak — the two commands of the README are `make demo` and `make test`.
GO      ?= go
BIN     := bin/pgcloak
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/pgcloak/pgcloak/cmd.Version=$(VERSION)

.PHONY: build demo test testdeps vault bench fmt vet notice release deb image

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) .

# A throwaway PostgreSQL, a Vault dev server (or the local KMS), pgcloak, sample
# data and a scripted psql session through it.
demo: build
	./$(BIN) demo

# What the tests need beyond Go (PostgreSQL server headers, the drivers and
# ORMs of the matrices, their npm packages): installed when missing if run as
# root or with passwordless sudo, else it stops at once and prints the one
# command that installs everything.
testdeps:
	./tools/testdeps.sh

# Vault v1.13.0 dev server for the integration tests (built once into the
# cache dir; about six minutes the first time).
vault:
	./tools/buildvault.sh

# staticcheck is pinned here and fetched by the go command (not a go.mod
# dependency of pgcloak).
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

vet:
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }

# Its own set-up first (testdeps, vault), then the packages with concurrent
# code under the race detector (the integration tests pass under it too,
# ~5 min: go test -race -short ./integration/), then unit tests, fuzz seed
# corpora and the integration tests against real PostgreSQL and Vault
# processes.
test: testdeps vault vet
	$(GO) test -race -count=1 ./proxy/... ./crypto/... ./migrate/... ./config/...
	$(GO) test -count=1 -timeout 50m ./...

# Throughput: pgbench -S against direct PostgreSQL, PgBouncer and pgcloak.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./proxy/ ./crypto/...
	$(GO) run ./bench/pgbench

# THIRD_PARTY_NOTICES.md from go.mod and the module cache (go test
# ./tools/notice/ fails while it is stale).
notice:
	$(GO) run ./tools/notice -o THIRD_PARTY_NOTICES.md

# Versioned binaries for linux/amd64 and linux/arm64 (+ .tar.gz) and
# dist/SHA256SUMS; installs the arm64 cross C compiler when root.
release:
	./packaging/release.sh

# dist/pgcloak_VERSION_ARCH.deb for this machine's architecture (ARCH=arm64 for the other).
deb:
	./packaging/deb.sh $(ARCH)

# The container image (Containerfile) with podman or buildah.
image:
	podman build -t pgcloak:$(VERSION) --build-arg VERSION=$(VERSION) -f Containerfile .
