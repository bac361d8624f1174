#!/usr/bin/env bash
# Soak (not part of `make test`): signaling, relay and WHEP load together against one
# server for MINUTES, then the server's RSS, open descriptors and CPU once a minute, to show
# that nothing grows with time. Each minute runs the three load tools side by side, each
# bounded by --seconds; the server is on core 0, the load on core 1.
#
#   Benchmarks/soak.sh [MINUTES=30] [PEERS=1000] [SESSIONS_PER_SECOND=200] [VIEWERS=50]
set -euo pipefail
cd "$(dirname "$0")/.."

MINUTES=${1:-30}
PEERS=${2:-1000}
RATE=${3:-200}
VIEWERS=${4:-50}

swift build -c release --product switchboard >/dev/null 2>&1 || { swift build -c release --product switchboard; exit 1; }
SB=$PWD/.build/release/switchboard
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
SECRET=soak-secret-$RANDOM

"$SB" stream add bench --video-port 26004 --data-dir "$WORK/sb" >/dev/null
# All load comes from 127.0.0.1: the per-client admission limits are lifted, the rest as shipped.
taskset -c 0 "$SB" serve --data-dir "$WORK/sb" --http-listen 127.0.0.1:29080 --turn-listen 127.0.0.1:29478 \
    --media-listen 127.0.0.1:29189 --turn-secret "$SECRET" --allowed-peer 127.0.0.0/8 --relay-ports 30000-39999 \
    --sessions-per-minute 1000000 --http-connections-per-source 0 --whep-pending-per-source 100000 \
    --whep-offers-per-minute 1000000 \
    --session-retention 60 --log-level error > "$WORK/sb.log" 2>&1 &
SB_PID=$!
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:29080/healthz" >/dev/null 2>&1 && break; sleep 0.2; done

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$SB_PID/status"; }
fds() { ls "/proc/$SB_PID/fd" | wc -l; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SB_PID/stat"; }
HZ=$(getconf CLK_TCK)

echo "soak: $MINUTES min; each minute $PEERS SSE peers at $RATE sessions/s, a relay flood, $VIEWERS WHEP viewers"
printf '%6s %10s %6s %8s %s\n' minute rss_kb fds cpu_% "load (sessions/s, relay pkt/s, viewers playing)"
for minute in $(seq "$MINUTES"); do
    before=$(cpu_ticks)
    taskset -c 1 "$SB" bench signal --data-dir "$WORK/sb" --server 127.0.0.1:29080 --peers "$PEERS" --rate "$RATE" \
        --seconds 50 --json > "$WORK/signal.json" 2>"$WORK/signal.err" &
    SIGNAL=$!
    taskset -c 1 "$SB" bench relay --server 127.0.0.1:29478 --secret "$SECRET" --seconds 50 --window 8 --size 200 \
        --json > "$WORK/relay.json" 2>"$WORK/relay.err" &
    RELAY=$!
    taskset -c 1 "$SB" bench whep --data-dir "$WORK/sb" --server 127.0.0.1:29080 --media 127.0.0.1:29189 \
        --ingest-port 26004 --viewers "$VIEWERS" --seconds 40 --bitrate 500 --json > "$WORK/whep.json" 2>"$WORK/whep.err" &
    WHEP=$!
    wait "$SIGNAL" "$RELAY" "$WHEP" || true
    sleep $((60 - 50))  # the rest of the minute: the server settles (purges, expiries)
    after=$(cpu_ticks)
    cpu=$(( (after - before) * 100 / (HZ * 60) ))
    signal=$(grep -o '"sessions_per_second":[0-9.]*' "$WORK/signal.json" | cut -d: -f2 || true)
    relay=$(grep -o '"packets_per_second":[0-9.]*' "$WORK/relay.json" | cut -d: -f2 || true)
    whep=$(grep -o '"playing":[0-9]*' "$WORK/whep.json" | cut -d: -f2 || true)
    printf '%6d %10d %6d %8d %s\n' "$minute" "$(rss_kb)" "$(fds)" "$cpu" "${signal:-?} ${relay:-?} ${whep:-?}"
done
echo "flat means: after the first minutes (warm-up), RSS and descriptors drift < 5%"
