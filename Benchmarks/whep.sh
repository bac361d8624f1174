#!/usr/bin/env bash
# Media edge benchmark (not part of `make test`): a synthetic H.264 stream (BITRATE kbit/s,
# a 4 s GOP) pushed into a stream, N WHEP viewers doing ICE, DTLS and SRTP decryption of every
# packet. Prints packets/s, loss, the time from POST to the first complete keyframe (viewers
# join mid-GOP), the server's CPU and viewers per server core. Server on core 0, load tool
# (source + viewers) on core 1.
#
#   Benchmarks/whep.sh [VIEWERS=500] [BITRATE=1000] [SECONDS=10]
set -euo pipefail
cd "$(dirname "$0")/.."

VIEWERS=${1:-500}
BITRATE=${2:-1000}
SECONDS_TO_RUN=${3:-10}

swift build -c release --product switchboard >/dev/null
SB=.build/release/switchboard
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

"$SB" stream add bench --video-port 25004 --data-dir "$WORK/sb" >/dev/null
taskset -c 0 "$SB" serve --data-dir "$WORK/sb" --http-listen 127.0.0.1:28080 --turn-listen 127.0.0.1:28478 \
    --media-listen 127.0.0.1:28189 --log-level error > "$WORK/sb.log" 2>&1 &
SB_PID=$!
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:28080/healthz" >/dev/null 2>&1 && break; sleep 0.2; done

echo "switchboard bench whep: $VIEWERS viewers, $BITRATE kbit/s, 4 s GOP, $SECONDS_TO_RUN s"
taskset -c 1 "$SB" bench whep --data-dir "$WORK/sb" --server 127.0.0.1:28080 --media 127.0.0.1:28189 \
    --viewers "$VIEWERS" --bitrate "$BITRATE" --seconds "$SECONDS_TO_RUN" --server-pid "$SB_PID"
echo "goal: ≥ 1500 viewers per core at < 1% loss; first frame ≤ 50 ms for a mid-GOP joiner (Janus with its keyframe buffer: 57 ms)"
