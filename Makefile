# ringrelay build entry points. `make run` serves, `make test` is what CI runs.

# giouring reaches syscall.mmap through go:linkname, which Go 1.23+ refuses
# unless the linker is told not to check.
export GOFLAGS := -ldflags=-checklinkname=0
GO ?= go

BIN := bin
ARGS ?=
FUZZTIME ?= 10s
DURATION ?= 10m

.PHONY: all build run cluster test vet fuzz lint bench bench-quick soak clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/... ./internal/devnats

run: build
	./$(BIN)/ringrelay $(ARGS)

vet:
	$(GO) vet ./...

# A local cluster: one NATS server and three nodes on 127.0.0.1:7000-7002
# (scripts/cluster.sh; ARGS go to every node). Ctrl-C stops it.
cluster: build
	./scripts/cluster.sh $(ARGS)

# Packages run two at a time (-p defaults to the number of CPUs), and
# within a package the tests that call t.Parallel run four at a time, not
# two: most of them wait on sockets and server processes, not on a CPU.
# Tests that measure the whole test process do not call t.Parallel and run
# alone (see relay/harness_test.go).
TESTPARALLEL ?= 4

test: vet
	$(GO) test -race -count=1 -parallel $(TESTPARALLEL) -timeout 20m ./...

# A short run of every fuzz target; the seed corpora also run in `make test`.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$t"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# staticcheck, pinned in its own module (tools/go.mod, so its
# dependencies stay out of ringrelay's): the first `make lint` downloads it,
# later ones build it from the module cache, offline. It is not part of
# `make test` (what CI runs): on a fresh machine it needs that download,
# and it adds a quarter of a minute on two cores; vet, which test runs,
# is the cheap part.
STATICCHECK ?= $(GO) tool -modfile=tools/go.mod staticcheck

lint: vet
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(STATICCHECK) ./...

bench: build
	./$(BIN)/ringbench compare $(ARGS)

bench-quick: build
	./$(BIN)/ringbench compare -quick $(ARGS)

soak: build
	RINGRELAY_SOAK=$(DURATION) $(GO) test -race -count=1 -run 'TestSoak' -timeout 0 -v ./relay/...

clean:
	rm -rf $(BIN)
