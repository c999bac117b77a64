#!/usr/bin/env bash
# Starts a local ringrelay cluster: one NATS server (internal/devnats, the
# official server embedded, max_payload 2MiB) and NODES ringrelay nodes on
# loopback, joined through it. Ctrl-C stops everything this script started.
#
#   NODES=3 BASE_PORT=7000 METRICS_BASE=9100 NATS_ADDR=127.0.0.1:4222 scripts/cluster.sh [extra ringrelay flags]
#
# Node K listens on 127.0.0.1:(BASE_PORT+K) and serves metrics on
# 127.0.0.1:(METRICS_BASE+K). Binaries come from bin/ (make build).
set -euo pipefail

NODES=${NODES:-3}
BASE_PORT=${BASE_PORT:-7000}
METRICS_BASE=${METRICS_BASE:-9100}
NATS_ADDR=${NATS_ADDR:-127.0.0.1:4222}
BIN=${BIN:-bin}

cd "$(dirname "$0")/.."
for b in ringrelay devnats; do
	if [ ! -x "$BIN/$b" ]; then
		echo "cluster.sh: $BIN/$b is missing: run make build" >&2
		exit 1
	fi
done

pids=()
stop() {
	trap - INT TERM EXIT
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}
trap stop INT TERM EXIT

"$BIN/devnats" -addr "$NATS_ADDR" -max-payload 2MiB &
pids+=($!)

# Wait until NATS accepts connections (bash's /dev/tcp, no extra tools).
host=${NATS_ADDR%:*}
port=${NATS_ADDR##*:}
for _ in $(seq 100); do
	if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
		break
	fi
	sleep 0.1
done

for ((k = 0; k < NODES; k++)); do
	"$BIN/ringrelay" -listen "127.0.0.1:$((BASE_PORT + k))" \
		-metrics-addr "127.0.0.1:$((METRICS_BASE + k))" \
		-cluster "nats://$NATS_ADDR" -node "$k" "$@" &
	pids+=($!)
done

echo "cluster.sh: $NODES nodes on 127.0.0.1:$BASE_PORT..$((BASE_PORT + NODES - 1)) through NATS at $NATS_ADDR; Ctrl-C stops them" >&2
echo "cluster.sh: try: ./bin/ringcat -addr 127.0.0.1:$BASE_PORT   and   ./bin/ringcat -addr 127.0.0.1:$((BASE_PORT + 1))" >&2

# Stop everything as soon as any process ends (a node that refused to
# start, say), and exit with its status.
set +e
wait -n
status=$?
exit "$status"
