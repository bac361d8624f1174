#!/usr/bin/env bash
# Signaling benchmark (not part of `make test`): N peers hold SSE event streams while
# sessions run at a rate (offer → callee's stream → PATCH answer → caller's stream).
# Prints offer-to-delivery and offer-to-answer latency, sessions/s, and the server's RSS per
# connected peer. Server on core 0, load tool on core 1.
#
#   Benchmarks/signal.sh [PEERS=10000] [RATE=1000] [SECONDS=10]
set -euo pipefail
cd "$(dirname "$0")/.."

PEERS=${1:-10000}
RATE=${2:-1000}
SECONDS_TO_RUN=${3:-10}

swift build -c release --product switchboard >/dev/null
SB=.build/release/switchboard
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

PORT=28080
taskset -c 0 "$SB" serve --data-dir "$WORK/sb" --http-listen "127.0.0.1:$PORT" --turn-listen 127.0.0.1:28478 \
    --sessions-per-minute 1000000 --http-connections-per-source 0 --log-level error > "$WORK/sb.log" 2>&1 &
# Every peer connects from 127.0.0.1: the per-client limits (256 connections, session rate) are lifted.
SB_PID=$!
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done

echo "switchboard bench signal: $PEERS peers on SSE, $RATE sessions/s for $SECONDS_TO_RUN s"
taskset -c 1 "$SB" bench signal --data-dir "$WORK/sb" --server "127.0.0.1:$PORT" --peers "$PEERS" \
    --rate "$RATE" --seconds "$SECONDS_TO_RUN" --server-pid "$SB_PID"
echo "goal: ≤ 20 KB RSS per connected peer at 10k peers, p99 offer delivery ≤ 5 ms at 1k sessions/s"
