#!/usr/bin/env bash
# Relay benchmark: Switchboard vs coturn, side by side in one run (not part of `make test`).
#
# Each server gets core 0 (coturn with one relay thread, `-m 1`), the load tool core 1.
# The load tool (`switchboard bench relay`) allocates, binds a channel to its own echo peer
# and keeps a window of ChannelData packets in flight; rounds alternate between the servers.
# Its sockets take bursts as one read (UDP_GRO) and send them as one message (UDP_SEGMENT) so
# that it is not what limits the run; the servers see ordinary datagrams either way.
# Then the memory per allocation at N allocations, for both.
#
#   Benchmarks/relay.sh [ROUNDS=3] [SECONDS=10] [ALLOCATIONS=10000]
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-3}
SECONDS_PER_ROUND=${2:-10}
ALLOCATIONS=${3:-10000}
WINDOW=${WINDOW:-64}
SIZE=${SIZE:-200}

command -v turnserver >/dev/null || { echo "needs coturn (apt-get install coturn)"; exit 1; }
swift build -c release --product switchboard >/dev/null
SB=.build/release/switchboard
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SECRET=bench-secret-$RANDOM
SB_PORT=23478
CT_PORT=23578

start_switchboard() {
    taskset -c 0 "$SB" serve --data-dir "$WORK/sb" --http-listen 127.0.0.1:0 --turn-listen "127.0.0.1:$SB_PORT" \
        --turn-secret "$SECRET" --allowed-peer 127.0.0.0/8 --relay-ports 30000-59999 --drain-seconds 0 \
        --log-level error > "$WORK/sb.log" 2>&1 &
    SB_PID=$!
    sleep 1.5
}

start_coturn() {
    taskset -c 0 turnserver -n -m 1 --listening-ip=127.0.0.1 --listening-port=$CT_PORT --relay-ip=127.0.0.1 \
        --min-port=30000 --max-port=59999 --use-auth-secret --static-auth-secret="$SECRET" --realm=bench \
        --allow-loopback-peers --no-tls --no-dtls --no-cli --total-quota=0 --user-quota=0 \
        --log-file=stdout --simple-log > "$WORK/coturn.log" 2>&1 &
    CT_PID=$!
    sleep 1.5
}

flood() {  # port
    taskset -c 1 "$SB" bench relay --server "127.0.0.1:$1" --secret "$SECRET" --seconds "$SECONDS_PER_ROUND" \
        --window "$WINDOW" --size "$SIZE" --json | sed -E 's/.*"packets_per_second":([0-9]+).*/\1/'
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

start_switchboard
start_coturn
echo "relay benchmark: $ROUNDS rounds x ${SECONDS_PER_ROUND}s, window $WINDOW, ${SIZE}-byte payloads"
echo "rt/s: echo round trips per second (two relayed packets each); cpu: server core busy share;"
echo "rt/cpu-s: round trips per second of server CPU (what a fully loaded core would do)"
printf "%-6s %12s %6s %12s   %12s %6s %12s   %7s %7s\n" round "sb rt/s" cpu "sb rt/cpu-s" "coturn rt/s" cpu \
    "ct rt/cpu-s" "ratio" "cpu-rat"
TICKS=$(getconf CLK_TCK)
SB_RT=0; CT_RT=0; SB_EFF=0; CT_EFF=0
measure() {  # pid port -> "rt cpu_share efficiency"
    local before after rt
    before=$(cpu_ticks "$1")
    rt=$(flood "$2")
    after=$(cpu_ticks "$1")
    # The flood runs SECONDS_PER_ROUND plus a 1 s warm-up and setup; charge the CPU to all of it.
    awk -v rt="$rt" -v t="$((after - before))" -v hz="$TICKS" -v s="$SECONDS_PER_ROUND" \
        'BEGIN { cpu = t / hz; share = cpu / (s + 1.2); printf "%d %.2f %d", rt, share, (share > 0 ? rt / share : 0) }'
}
for round in $(seq 1 "$ROUNDS"); do
    read -r sb sbcpu sbeff <<< "$(measure "$SB_PID" $SB_PORT)"
    read -r ct ctcpu cteff <<< "$(measure "$CT_PID" $CT_PORT)"
    SB_RT=$((SB_RT + sb)); CT_RT=$((CT_RT + ct)); SB_EFF=$((SB_EFF + sbeff)); CT_EFF=$((CT_EFF + cteff))
    printf "%-6s %12s %6s %12s   %12s %6s %12s   %7s %7s\n" "$round" "$sb" "$sbcpu" "$sbeff" "$ct" "$ctcpu" "$cteff" \
        "$(awk -v a="$sb" -v b="$ct" 'BEGIN {printf "%.2f", a/b}')" \
        "$(awk -v a="$sbeff" -v b="$cteff" 'BEGIN {printf "%.2f", a/b}')"
done
printf "%-6s %12s %6s %12s   %12s %6s %12s   %7s %7s\n" mean $((SB_RT / ROUNDS)) "" $((SB_EFF / ROUNDS)) \
    $((CT_RT / ROUNDS)) "" $((CT_EFF / ROUNDS)) \
    "$(awk -v a="$SB_RT" -v b="$CT_RT" 'BEGIN {printf "%.2f", a/b}')" \
    "$(awk -v a="$SB_EFF" -v b="$CT_EFF" 'BEGIN {printf "%.2f", a/b}')"

if (( ALLOCATIONS > 0 )); then
    echo
    echo "memory at $ALLOCATIONS allocations (server RSS growth / allocations)"
    for name in switchboard coturn; do
        if [[ $name == switchboard ]]; then pid=$SB_PID; port=$SB_PORT; else pid=$CT_PID; port=$CT_PORT; fi
        before=$(rss_kb "$pid")
        taskset -c 1 "$SB" bench relay --server "127.0.0.1:$port" --secret "$SECRET" \
            --allocations "$ALLOCATIONS" --hold 3 > "$WORK/alloc-$name.log" 2>&1 &
        holder=$!
        for _ in $(seq 1 600); do
            grep -q READY "$WORK/alloc-$name.log" 2>/dev/null && break
            kill -0 $holder 2>/dev/null || break
            sleep 0.2
        done
        after=$(rss_kb "$pid")
        printf "%-12s %s; RSS %d KB -> %d KB: %.2f KB per allocation\n" "$name" \
            "$(grep READY "$WORK/alloc-$name.log" || tail -1 "$WORK/alloc-$name.log")" "$before" "$after" \
            "$(awk -v a="$after" -v b="$before" -v n="$ALLOCATIONS" 'BEGIN {print (a-b)/n}')"
        wait $holder || true
    done
fi
