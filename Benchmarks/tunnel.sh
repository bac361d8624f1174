#!/usr/bin/env bash
# Tunnel benchmark (issue 16, not part of `make test`): the peer agent's TCP tunnel in the NAT
# lab of Tests/e2e/natlab.py (two home NATs, veth, no added delay), for the direct path
# (`agent connect --mode auto`) and the relay path (`--mode relay`):
#   1. one iperf3 TCP stream through the agent, beside an OpenSSH `ssh -L` forward over the
#      same NAT path (sshd behind router B's port forward) in the same run, as a ratio, and
#      plain TCP over that path as the ceiling;
#   2. time from a new local TCP connection to the first byte of an HTTP answer from the
#      service: a new peer connection (a fresh agent's first connection), and a further stream
#      on it (median of 20);
#   3. the exposing agent's RSS growth per idle peer connection (N connecting agents, each with
#      its own peer ID, each carrying one request).
# Aligned text, then one JSON line. The lab itself is Benchmarks/tunnel_lab.py.
#
#   Benchmarks/tunnel.sh [SECONDS=5]       (iperf3 seconds per run)
#
# Needs root (network namespaces, nftables), iperf3, openssh-server and openssh-client, and a
# built switchboard: SWITCHBOARD_BIN, else .build/release/switchboard (`make release` first; a
# debug build works but is far slower). MEMORY_PEERS=N (default 10) sets N; PYTHON the
# interpreter (default python3); KEEP_WORK=1 keeps the scratch directory (agent and server logs).
# Everything runs inside namespaces it creates and removes on exit; the whole run is bounded by
# a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${1:-5}
[[ $DURATION =~ ^[1-9][0-9]*$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
MEMORY_PEERS=${MEMORY_PEERS:-10}
[[ $MEMORY_PEERS =~ ^[0-9]+$ ]] || { echo "MEMORY_PEERS must be a number" >&2; exit 2; }
BIN=${SWITCHBOARD_BIN:-.build/release/switchboard}
PYTHON=${PYTHON:-python3}
EXTRA=()
[[ ${TUNNEL_NO_AGENTS:-} == 1 ]] && EXTRA+=(--no-agents)   # check the lab alone, without Switchboard

(( EUID == 0 )) || { echo "needs root (network namespaces)" >&2; exit 1; }
for tool in ip nft ss iperf3 ssh ssh-keygen unshare timeout "$PYTHON"; do
    command -v "$tool" >/dev/null || { echo "needs $tool (Debian: iproute2 nftables iperf3 openssh-client util-linux)" >&2; exit 1; }
done
[[ -x /usr/sbin/sshd ]] || { echo "needs /usr/sbin/sshd (Debian openssh-server)" >&2; exit 1; }
if [[ ${TUNNEL_NO_AGENTS:-} != 1 && ! -x $BIN ]]; then
    echo "no switchboard binary at $BIN: run \`make release\` or set SWITCHBOARD_BIN" >&2
    exit 1
fi

TAG=tb$(( $$ % 100000 ))
if ip netns list | awk '{print $1}' | grep -q "^$TAG-"; then
    echo "namespaces $TAG-* already exist" >&2
    exit 1
fi
WORK=$(mktemp -d /tmp/tunnel-bench.XXXXXX)
CHILD=

cleanup() {
    trap - EXIT INT TERM HUP
    if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
        kill -TERM "$CHILD" 2>/dev/null || true   # timeout passes it on to the lab and its processes
        for _ in $(seq 100); do kill -0 "$CHILD" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$CHILD" 2>/dev/null || true
    fi
    # Whatever is left in our namespaces was started by this run.
    for ns in $(ip netns list | awk '{print $1}' | grep "^$TAG-" || true); do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [[ -n $pids ]] && kill -KILL $pids 2>/dev/null || true
        ip netns delete "$ns" 2>/dev/null || true
    done
    for link in "${TAG}aw" "${TAG}bw" "${TAG}ab" "${TAG}bb" "${TAG}al" "${TAG}bl" "${TAG}ah" "${TAG}bh"; do
        ip link show "$link" >/dev/null 2>&1 && ip link delete "$link" 2>/dev/null || true
    done
    if [[ ${KEEP_WORK:-} == 1 ]]; then echo "logs and keys kept in $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Bounded: setup, six iperf3 runs, the probes and the memory agents, with room for a slow build.
LIMIT=$(( 300 + 8 * DURATION + 15 * MEMORY_PEERS ))
timeout --kill-after=20 "$LIMIT" "$PYTHON" Benchmarks/tunnel_lab.py bench --bin "$BIN" --work "$WORK" --tag "$TAG" \
    --seconds "$DURATION" --memory-peers "$MEMORY_PEERS" "${EXTRA[@]}" &
CHILD=$!
status=0
wait "$CHILD" || status=$?
CHILD=
(( status == 124 )) && echo "the benchmark did not finish within $LIMIT s" >&2
exit "$status"
