#!/bin/bash
# memback.sh: does the server give memory back after a burst?
#
# Starts bin/ringrelay, reads its RSS (VmRSS of /proc/PID/status) before,
# at its peak during a burst of `ringbench load` traffic (sampled every
# 200 ms), and every second for 30 s after the burst ended, then prints
# one line. Build first (make build).
#
#   scripts/memback.sh [BACKEND [LOOPS [DURATION [-- RINGBENCH LOAD FLAGS]]]]
#   scripts/memback.sh uring 4 30s
#   scripts/memback.sh epoll 1 30s -- -workload fanin -senders 128 -size 16KiB
#
# The default burst is 64 flood pairs (128 connections) of 4 KiB frames:
# every connection keeps its queue near -max-queue, the spike the README's
# Memory section describes. Server flags can be added with SERVER_FLAGS.
set -eu
cd "$(dirname "$0")/.."
backend=${1:-uring}
loops=${2:-1}
duration=${3:-30s}
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = "--" ] && shift
load=("$@")
[ ${#load[@]} -eq 0 ] && load=(-workload flood -pairs 64 -size 4KiB)

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# shellcheck disable=SC2086
bin/ringrelay -listen 127.0.0.1:"$port" -backend "$backend" -loops "$loops" -log-level warn ${SERVER_FLAGS:-} &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
rss() { awk '/^VmRSS:/ {print $2}' /proc/$pid/status; }
for _ in $(seq 100); do
	(exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
	sleep 0.1
done
sleep 1
before=$(rss)

bin/ringbench load -addr 127.0.0.1:"$port" "${load[@]}" -warmup 0 -duration "$duration" >/dev/null 2>&1 &
gen=$!
peak=$before
while kill -0 $gen 2>/dev/null; do
	r=$(rss)
	[ "$r" -gt "$peak" ] && peak=$r
	sleep 0.2
done
wait $gen || { echo "ringbench load failed" >&2; exit 1; }

series=()
back=""
for i in $(seq 30); do
	sleep 1
	r=$(rss)
	series+=("$r")
	[ -z "$back" ] && [ "$r" -le $((2 * before)) ] && back=${i}s
done
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k/1024}'; }
echo "backend=$backend loops=$loops before=$(mib "$before")MiB peak=$(mib "$peak")MiB" \
	"after10s=$(mib "${series[9]}")MiB after30s=$(mib "${series[29]}")MiB" \
	"within2x_after=${back:-never}"
