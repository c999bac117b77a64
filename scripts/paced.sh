#!/usr/bin/env bash
# paced.sh GAP ROUNDS NAME=CMD...: server CPU per frame under a paced
# one-client ping (scripts/paced.py, one frame every GAP seconds), server on
# CPU 0, client on CPU 1, servers alternated. CMD has {addr} where the
# address goes. CPU = utime+stime from /proc/PID/stat over 4 s.
set -euo pipefail
gap=$1 rounds=$2
shift 2
dir=$(dirname "$0")
port=$((10000 + RANDOM % 15000))
out=$(mktemp)
trap 'rm -f "$out"' EXIT
hz=$(getconf CLK_TCK)
for ((r = 1; r <= rounds; r++)); do
	for s in "$@"; do
		name=${s%%=*} cmd=${s#*=}
		port=$((port + 1))
		taskset -c 0 ${cmd//\{addr\}/127.0.0.1:$port} >/dev/null 2>&1 &
		pid=$!
		sleep 0.4
		taskset -c 1 python3 "$dir/paced.py" $port "$gap" 5 >"$out" &
		py=$!
		sleep 0.5
		a=$(awk '{print $14 + $15}' /proc/$pid/stat)
		sleep 4
		b=$(awk '{print $14 + $15}' /proc/$pid/stat)
		wait $py
		kill $pid
		wait $pid 2>/dev/null || true
		awk -v n="$(cat "$out")" -v a=$a -v b=$b -v hz=$hz -v name="$name" -v r=$r 'BEGIN {
			fps = n / 5
			printf "%-8s round %d  %6.0f frames/s  %6.1f µs/frame  %4.1f%% CPU\n", name, r, fps, (b - a) / hz * 1e6 / (fps * 4), (b - a) / hz / 4 * 100
		}'
	done
done
