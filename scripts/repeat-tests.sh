#!/usr/bin/env bash
# repeat-tests.sh: the flake finder. Runs `go test -race -count=1` N times
# over the packages given (default ./...) and prints, per test, how many
# runs it passed and failed, so a test that fails one run in twenty shows
# up as such instead of as "CI was red once".
#
#   scripts/repeat-tests.sh [-busy] [-cpu C] [-run REGEX] [-short] [-all] [-keep DIR] N [PACKAGES...]
#
# PACKAGES default to those of `make test`, in its order.
#
#   -busy       keep one CPU busy with another process for the whole run
#               (taskset -c C sh -c 'while :; do :; done'), the load a
#               shared CI machine puts on the tests
#   -cpu C      the CPU -busy spins on (default 1)
#   -run REGEX  only the tests go test -run REGEX selects
#   -short      pass -short to go test
#   -all        list every test, not only those that failed at least once
#   -keep DIR   keep each run's `go test -json` output in DIR (default: a
#               temporary directory, removed at the end unless a run failed)
#
# Exit status: 0 when every run passed, 1 when any failed, 2 on bad usage.
set -euo pipefail

usage() {
	echo "usage: $0 [-busy] [-cpu C] [-run REGEX] [-short] [-all] [-keep DIR] N [PACKAGES...]" >&2
	exit 2
}

busy=0 cpu=1 run="" short=0 all=0 keep=""
while [ $# -gt 0 ]; do
	case "$1" in
	-busy) busy=1 ;;
	-cpu) [ $# -ge 2 ] || { echo "-cpu needs a CPU number" >&2; usage; }; cpu=$2; shift ;;
	-run) [ $# -ge 2 ] || { echo "-run needs a regular expression" >&2; usage; }; run=$2; shift ;;
	-short) short=1 ;;
	-all) all=1 ;;
	-keep) [ $# -ge 2 ] || { echo "-keep needs a directory" >&2; usage; }; keep=$2; shift ;;
	-h | -help | --help) usage ;;
	-*) echo "unknown flag $1" >&2; usage ;;
	*) break ;;
	esac
	shift
done
[ $# -ge 1 ] || { echo "missing N, the number of runs" >&2; usage; }
n=$1
shift
case "$n" in '' | *[!0-9]* | 0) echo "N must be a positive whole number, not \"$n\"" >&2; usage ;; esac
case "$cpu" in '' | *[!0-9]*) echo "-cpu must be a CPU number, not \"$cpu\"" >&2; usage ;; esac
pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./relay/ ./cmd/ringrelay/ ./...) # the Makefile's TESTPKGS

# giouring reaches syscall.mmap through go:linkname (see the Makefile).
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-ldflags=-checklinkname=0"

if [ -n "$keep" ]; then
	mkdir -p "$keep"
	dir=$keep
else
	dir=$(mktemp -d "${TMPDIR:-/tmp}/repeat-tests.XXXXXX")
fi

busy_pid=""
cleanup() {
	if [ -n "$busy_pid" ]; then
		kill "$busy_pid" 2>/dev/null || true
		wait "$busy_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$busy" = 1 ]; then
	command -v taskset >/dev/null || { echo "-busy needs taskset (util-linux)" >&2; exit 2; }
	taskset -c "$cpu" sh -c 'while :; do :; done' &
	busy_pid=$!
	echo "keeping CPU $cpu busy (pid $busy_pid)"
fi

# The same flags as `make test` (TESTP and TESTPARALLEL as there).
args=(-race -count=1 -p "${TESTP:-3}" -parallel "${TESTPARALLEL:-4}" -timeout 20m -json)
[ -n "$run" ] && args+=(-run "$run")
[ "$short" = 1 ] && args+=(-short)

failed_runs=0
start=$(date +%s)
for i in $(seq 1 "$n"); do
	t0=$(date +%s)
	if go test "${args[@]}" "${pkgs[@]}" >"$dir/run-$i.json" 2>"$dir/run-$i.stderr"; then
		verdict=ok
	else
		verdict=FAIL
		failed_runs=$((failed_runs + 1))
	fi
	echo "run $i/$n: $verdict in $(($(date +%s) - t0))s"
done

# One line per test result: "package test action". A package whose run
# ended without a result for some test (a panic, a timeout, a build error)
# counts as a failure of "(package)".
summary() {
	for f in "$dir"/run-*.json; do
		sed -n 's/.*"Action":"\(pass\|fail\|skip\)".*/&/p' "$f" |
			sed 's/.*"Action":"\([a-z]*\)".*"Package":"\([^"]*\)"\(.*"Test":"\([^"]*\)"\)\{0,1\}.*/\2 \4 \1/' |
			awk '{ if (NF == 2) print $1, "(package)", $2; else print }'
	done
}

summary | awk -v all="$all" -v runs="$n" '
	{ key = $1 " " $2; if ($3 == "pass") pass[key]++; else if ($3 == "fail") fail[key]++; else skip[key]++; seen[key] = 1 }
	END {
		sortcmd = "sort -k2,2nr -k4"
		printf "\nper package (runs passed, failed)\n"; fflush()
		for (k in seen) if (k ~ / \(package\)$/ && pass[k] + fail[k] > 0) { p = k; sub(/ \(package\)$/, "", p); printf "%-6d %-6d %s\n", pass[k], fail[k], p | sortcmd }
		close(sortcmd)
		tests = 0; flaky = 0
		for (k in seen) {
			if (k ~ / \(package\)$/) continue
			tests++
			if (fail[k] > 0) flaky++
		}
		printf "\n%d tests and subtests seen; %d failed at least once%s\n", tests, flaky, all == 1 ? "" : " (-all lists every one)"
		if (flaky == 0 && all != 1) exit
		printf "%-6s %-6s %-6s %s\n", "pass", "fail", "skip", "package test"; fflush()
		for (k in seen) if (!(k ~ / \(package\)$/) && (fail[k] > 0 || all == 1)) printf "%-6d %-6d %-6d %s\n", pass[k], fail[k], skip[k], k | sortcmd
		close(sortcmd)
	}'

echo
echo "$failed_runs of $n runs failed; $(($(date +%s) - start))s in all"
if [ "$failed_runs" -gt 0 ]; then
	echo "go test -json output of every run: $dir (run-N.json, run-N.stderr)"
	exit 1
fi
[ -n "$keep" ] || rm -rf "$dir"
