#!/usr/bin/env bash
# Media edge benchmark, Switchboard vs Janus side by side in one run (not part of `make test`).
#
# The same load tool (`switchboard bench whep`) plays the same synthetic H.264 stream
# (BITRATE kbit/s, a 4 s GOP) to N viewers that do what a browser does — ICE check, DTLS
# handshake, SRTP decryption of every packet — counting packets and loss, and the time from
# the first signaling request to the first complete keyframe (viewers join mid-GOP):
#   1. Switchboard's WHEP edge (POST /whep/bench);
#   2. Janus 1.1.2's streaming plugin with its keyframe buffer (Benchmarks/janus: REST
#      create/attach/watch/start, ICE-lite, inside a network namespace because libnice does
#      not gather on loopback).
# Each server gets core 0, the load tool core 1. Prints both and the ratios.
#
#   Benchmarks/whep.sh [VIEWERS=500] [BITRATE=1000] [SECONDS=10]     (as root; installs janus)
set -euo pipefail
cd "$(dirname "$0")/.."

VIEWERS=${1:-500}
BITRATE=${2:-1000}
SECONDS_TO_RUN=${3:-10}

command -v janus >/dev/null || { apt-get install -y janus >/dev/null || { apt-get update >/dev/null && apt-get install -y janus >/dev/null; }; }
swift build -c release --product switchboard >/dev/null 2>&1 || { swift build -c release --product switchboard; exit 1; }
SB=$PWD/.build/release/switchboard
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
LOAD=(--bitrate "$BITRATE" --seconds "$SECONDS_TO_RUN" --json)

echo "bench whep: $VIEWERS viewers, $BITRATE kbit/s, 4 s GOP, $SECONDS_TO_RUN s measured; server on core 0, load on core 1"

# 1. Switchboard.
"$SB" stream add bench --video-port 25004 --data-dir "$WORK/sb" >/dev/null
taskset -c 0 "$SB" serve --data-dir "$WORK/sb" --http-listen 127.0.0.1:28080 --turn-listen 127.0.0.1:28478 \
    --media-listen 127.0.0.1:28189 --whep-pending-per-source 100000 --whep-pending-per-stream 100000 \
    --whep-offers-per-minute 1000000 --log-level error > "$WORK/sb.log" 2>&1 &
SB_PID=$!
# Every viewer comes from 127.0.0.1: the per-client admission limits are lifted.
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:28080/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
taskset -c 1 "$SB" bench whep --data-dir "$WORK/sb" --server 127.0.0.1:28080 --media 127.0.0.1:28189 \
    --server-pid "$SB_PID" --viewers "$VIEWERS" "${LOAD[@]}" > "$WORK/switchboard.json"
kill "$SB_PID"; wait "$SB_PID" 2>/dev/null || true

# 2. Janus, in a network namespace of its own (run-in-netns.sh sets it up and starts Janus).
# Viewers per core only counts below 1% loss: if Janus loses more at N viewers, N is halved
# (at most three times) until it keeps up.
JANUS_VIEWERS=$VIEWERS
for attempt in 1 2 3 4; do
    JANUS_CPUS=0 JANUS_LOG="$WORK/janus.log" unshare -n Benchmarks/janus/run-in-netns.sh bash -c \
        "taskset -c 1 '$SB' bench whep --janus 127.0.0.1:8088 --viewer-address \"\$VIEWER_ADDR\" \
            --server-pid \"\$JANUS_PID\" --viewers $JANUS_VIEWERS ${LOAD[*]} > '$WORK/janus-$attempt.json'"
    python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["loss_percent"] < 1 else 1)' \
        "$WORK/janus-$attempt.json" && break
    JANUS_VIEWERS=$((JANUS_VIEWERS / 2))
done

python3 - "$WORK/switchboard.json" "$WORK"/janus-*.json <<'EOF'
import json, sys
sb = json.load(open(sys.argv[1]))
janus_runs = [json.load(open(path)) for path in sorted(sys.argv[2:])]
def row(name, r):
    print(f"{name:<12} playing {r['playing']:>5}/{r['viewers']:<5} loss {r['loss_percent']:6.3f}%  "
          f"{r['packets_per_second']:8.0f} pkt/s  server CPU {r['server_cpu_cores'] or 0:5.2f} cores  "
          f"{r['viewers_per_core'] or 0:6.0f} viewers/core  first keyframe p50 {r['first_frame_ms_p50']:6.1f} ms  "
          f"p95 {r['first_frame_ms_p95']:7.1f} ms")
row("switchboard", sb)
for janus in janus_runs:
    row("janus", janus)
janus = janus_runs[-1]
valid = all(r["loss_percent"] < 1 and r["viewers_per_core"] for r in (sb, janus))
print(f"ratio switchboard/janus: viewers per core {sb['viewers_per_core'] / janus['viewers_per_core']:.2f}x, "
      f"first keyframe p50 {sb['first_frame_ms_p50'] / janus['first_frame_ms_p50']:.2f}x (lower is better)"
      + ("" if valid else "  (a run had ≥ 1% loss: not a valid comparison)"))
print("goal: ≥ 1500 viewers per core at < 1% loss; first frame ≤ 50 ms for a mid-GOP joiner (Janus with its keyframe buffer: 57 ms)")
EOF
