#!/usr/bin/env bash
# vsref.sh: one io_uring loop against the C liburing relay, same run.
#
#   scripts/vsref.sh [-r rounds] [-d secs] [-P "conns size window"]... NAME=CMD...
#
# Each NAME=CMD is a server command line with {addr} where the address goes,
# e.g. c='/tmp/ref/c-uring-relay {addr}' ours='./ringrelay -listen {addr}'.
# Servers run pinned to CPU 0, /tmp/ref/c-loadgen to CPU 1 (LOADGEN= to
# change), alternated within each round. Per run: frames/s and server CPU
# µs/frame = utime+stime of the server (from /proc/PID/stat, sampled after
# the generator's 0.5 s warm-up and at its end) / frames delivered in the
# measured window. Prints every run, then per point the medians and the
# ratio of each server to the first.
set -euo pipefail
rounds=3 dur=3 points=() servers=()
while getopts r:d:P: o; do
	case $o in
	r) rounds=$OPTARG ;; d) dur=$OPTARG ;; P) points+=("$OPTARG") ;;
	*) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
servers=("$@")
[ ${#points[@]} -gt 0 ] || points=("1000 64 16" "2 64 1" "100 1024 4")
[ ${#servers[@]} -gt 0 ] || { echo "usage: $0 [-r n] [-d s] [-P 'c s w'] NAME=CMD..." >&2; exit 2; }
loadgen=${LOADGEN:-/tmp/ref/c-loadgen}
hz=$(getconf CLK_TCK)
# below the ephemeral range, so no generator socket holds the port
port=$((10000 + RANDOM % 15000))
res=$(mktemp)
trap 'rm -f "$res"' EXIT

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

for p in "${points[@]}"; do
	read -r conns size win <<<"$p"
	for ((r = 1; r <= rounds; r++)); do
		for s in "${servers[@]}"; do
			name=${s%%=*} cmd=${s#*=}
			port=$((port + 1)) addr=127.0.0.1:$port
			taskset -c 0 ${cmd//\{addr\}/$addr} >/dev/null 2>&1 &
			pid=$!
			for _ in $(seq 50); do
				ss -ltn "sport = :$port" | grep -q LISTEN && break
				sleep 0.1
			done
			out=$(mktemp)
			taskset -c 1 "$loadgen" -a "$addr" -c "$conns" -s "$size" -w "$win" -d "$dur" >"$out" &
			gen=$!
			sleep 0.5
			a=$(cpu $pid 2>/dev/null) || a=0
			if ! wait $gen || ! b=$(cpu $pid 2>/dev/null); then
				echo "$conns/$size/$win $name round $r: failed" >&2
				kill $pid 2>/dev/null; wait $pid 2>/dev/null || true
				rm -f "$out"
				continue
			fi
			kill $pid; wait $pid 2>/dev/null || true
			# "...: 1308963 frames/s, 85.1 MB/s payload (1.51s)"
			read -r fps secs < <(sed -E 's/.*: ([0-9]+) frames\/s.*\(([0-9.]+)s\).*/\1 \2/' "$out")
			rm -f "$out"
			us=$(awk -v a=$a -v b=$b -v hz=$hz -v f=$fps -v t=$secs 'BEGIN{printf "%.3f", (b-a)/hz*1e6/(f*t)}')
			printf '%-14s %-8s round %d  %9d frames/s  %7s µs/frame\n' "$conns/$size/$win" "$name" "$r" "$fps" "$us"
			echo "$conns/$size/$win $name $fps $us" >>"$res"
		done
	done
done
echo
echo "medians (ratio to ${servers[0]%%=*}):"
awk '
function med(list,   n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{ k = $1 SUBSEP $2; f[k] = f[k] " " $3; u[k] = u[k] " " $4
  if (!($1 in seenp)) { seenp[$1] = 1; P[++np] = $1 }
  if (!($2 in seens)) { seens[$2] = 1; S[++ns] = $2 } }
END {
	for (i = 1; i <= np; i++) {
		f0 = med(f[P[i], S[1]]); u0 = med(u[P[i], S[1]])
		for (j = 1; j <= ns; j++) {
			fm = med(f[P[i], S[j]]); um = med(u[P[i], S[j]])
			printf "%-14s %-8s %9d frames/s (%.2fx)  %7.3f µs/frame (%.2fx)\n", P[i], S[j], fm, fm / f0, um, um / u0
		}
	}
}' "$res"
