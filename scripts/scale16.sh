#!/usr/bin/env bash
# scale16.sh: `ringbench scale` and `ringbench scale -handoff` on a many-core
# Linux host (sized for 16 CPUs: about 7 minutes, the build included).
#
#   scripts/scale16.sh            results in bench/results/scale16-<time>/
#   OUT=/some/dir scripts/scale16.sh   results in /some/dir
#
# It writes machine.txt (CPUs, topology, kernel), scale.md and scale.json
# (loops 1, 2, 4, 8 on half the machine, pingpong on random pairs and
# flood), handoff.md and handoff.json (2 loops sharing one CPU against 1),
# and scale16.log (what ringbench printed while running).
#
# What it needs: Go (to build ringrelay and ringbench, unless bin/ has them
# already; set REBUILD=1 to build anyway) and a ringrelay with -loops and
# -cpus. The gnet reference relay is a column when it is found in $REF_BIN
# (default: .ref/ in the repository if there, else /tmp/ref) or can be built
# with ref/build.sh from $REF_SRC, shared/ref or ../shared/ref, which needs
# a C compiler, liburing and the gnet module; otherwise it is left out.
# The C reference relay is single-threaded (no loop count), so it is not a
# column here: `ringbench compare` has it.
#
# Knobs (environment): RUNS (3), DURATION (2s), WARMUP (1s), BACKENDS
# (uring,epoll), and EXTRA, more flags for both ringbench runs
# (e.g. EXTRA='-server-cpus 0-7 -gen-cpus 8-15').
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD
out=${OUT:-bench/results/scale16-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)
export GOFLAGS=-ldflags=-checklinkname=0
runs=${RUNS:-3} duration=${DURATION:-2s} warmup=${WARMUP:-1s} backends=${BACKENDS:-uring,epoll}
read -r -a extra <<<"${EXTRA:-}"
logf=$out/scale16.log
log() { echo "scale16: $*" | tee -a "$logf" >&2; }
start=$(date +%s)

{
	echo "date: $(date -u)"
	echo "nproc: $(nproc)"
	uname -a
	go version 2>&1
	lscpu 2>&1
	for t in /sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list; do
		echo "$t: $(cat "$t")"
	done 2>/dev/null
} >"$out/machine.txt"

# ringrelay and ringbench.
if [ -n "${REBUILD:-}" ] || [ ! -x bin/ringrelay ] || [ ! -x bin/ringbench ]; then
	log "building ringrelay and ringbench"
	if ! go build -o bin/ ./cmd/ringrelay ./cmd/ringbench >>"$logf" 2>&1; then
		log "go build failed (see $logf); if this machine cannot download modules, run 'make build' where it can and bring bin/ along"
		exit 1
	fi
fi
if ! bin/ringrelay -h 2>&1 | grep -q -- '-loops'; then
	log "bin/ringrelay has no -loops flag: nothing to scale (build it from a tree that has many loops)"
	exit 1
fi

# The gnet reference relay, if it is here or can be built.
ref=${REF_BIN:-}
if [ -z "$ref" ]; then
	ref=/tmp/ref
	[ -x .ref/gnet-relay ] && ref=$root/.ref
fi
if [ ! -x "$ref/gnet-relay" ]; then
	src=
	for d in "${REF_SRC:-}" shared/ref ../shared/ref; do
		if [ -n "$d" ] && [ -x "$d/build.sh" ]; then src=$d; break; fi
	done
	if [ -z "$src" ]; then
		log "no ref/build.sh found: no gnet column"
	elif ! command -v cc >/dev/null || ! echo '#include <liburing.h>' | cc -E - >/dev/null 2>&1; then
		log "no C compiler or no liburing headers: no gnet column"
	else
		log "building the reference relays from $src into $ref"
		timeout 180 "$src/build.sh" "$ref" >>"$logf" 2>&1 || log "ref/build.sh failed (see $logf)"
	fi
fi
opponents=()
if [ -x "$ref/gnet-relay" ]; then
	opponents=(-opponent "gnet=$ref/gnet-relay -addr {addr} -loops {loops}")
else
	log "running without gnet"
fi
log "ready after $(($(date +%s) - start)) s"

# bench NAME TIMEOUT FLAGS...: one ringbench scale run into NAME.md and NAME.json.
bench() {
	local name=$1 limit=$2
	shift 2
	local tmp
	tmp=$(mktemp -d)
	log "ringbench scale $* (at most $limit s)"
	# SIGINT first: ringbench then prints what it measured before the limit.
	timeout --signal=INT --kill-after=15 "$limit" bin/ringbench scale -backends "$backends" "${opponents[@]}" \
		-runs "$runs" -duration "$duration" -warmup "$warmup" -out "$tmp" "${extra[@]}" "$@" \
		>"$tmp/stdout" 2> >(tee -a "$logf" >&2)
	local rc=$?
	grep -v '^results: ' "$tmp/stdout" >"$out/$name.md"
	mv "$tmp"/ringbench-scale-*.json "$out/$name.json" 2>/dev/null
	rm -rf "$tmp"
	log "$name: exit $rc after $(($(date +%s) - start)) s"
	cat "$out/$name.md"
}

# Loops 1, 2, 4, 8 x 2 points x 3 columns x 3 runs: about 4.5 minutes.
bench scale 330
# 1 and 2 loops on one CPU x pingpong x 3 columns x 3 runs: about 1 minute.
bench handoff 100 -handoff
log "done in $(($(date +%s) - start)) s; results in $out"
