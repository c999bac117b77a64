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

# Packages run three at a time and, within a package, the tests that call
# t.Parallel four at a time, on two CPUs: most tests wait on sockets,
# timers and server processes, not on a CPU (cluster/ and tlshandshake/
# hardly use one). Tests that measure the whole test process do not call
# t.Parallel and run alone in theirs (see relay/harness_test.go); tests
# that measure a server measure its process, not this one.
TESTP ?= 3
TESTPARALLEL ?= 4

# The two longest packages are named first so that they start first: go
# test starts packages in the order it is given them, and a run that ends
# with relay/ alone leaves a CPU idle for most of a minute.
TESTPKGS ?= ./relay/ ./cmd/ringrelay/ ./...

test: vet
	$(GO) test -race -count=1 -p $(TESTP) -parallel $(TESTPARALLEL) -timeout 20m $(TESTPKGS)

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
