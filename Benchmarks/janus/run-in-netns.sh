#!/usr/bin/env bash
# Start Debian's Janus (1.1.2) with Benchmarks/janus/conf, then run a command next to it.
# Must already run inside a fresh network namespace of its own (the parent does
# `unshare -n Benchmarks/janus/run-in-netns.sh CMD...`, as root): it adds links and addresses.
#
#   run-in-netns.sh CMD [ARGS...]
#
# Why a namespace: libnice (Janus's ICE) never gathers candidates on a loopback interface, so
# Janus needs a non-loopback link with an address. `dummy` links are not available on this
# kernel; a veth pair (both ends here) works. libnice pins each ICE socket to its interface
# (IP_UNICAST_IF), so Janus can only reach peers whose address is on that same link: a reply
# to 127.0.0.1 fails with EINVAL (a 127.x source routed out of a non-loopback device). So
# bench0 carries two 127.0.0.x addresses, one for Janus and one for the viewers, and all
# traffic stays in 127.0.0.0/8. Inside the namespace:
#   REST API  http://127.0.0.1:8088/janus  (janus.transport.http.jcfg)
#   ICE/DTLS  $JANUS_ADDR:20000-40000/udp  (the only host candidate in Janus's offer)
#   viewers   must bind their ICE sockets to $VIEWER_ADDR (exported to CMD)
#   ingest    127.0.0.1:25004 (H.264 PT 96), 127.0.0.1:25006 (Opus PT 111), mountpoint id 1
#
# Environment: JANUS_ADDR (default 127.0.0.2), VIEWER_ADDR (default 127.0.0.3), JANUS_CONF,
# JANUS_LOG (default /tmp/janus-bench.log), JANUS_DEBUG (log level 0-7, default 4),
# JANUS_EXTRA_ARGS (more janus flags, e.g. "-s 60" or "-l" for libnice debug output),
# JANUS_CPUS (pin Janus to these cores with taskset, e.g. 0). CMD gets JANUS_PID.
# The command runs as a child (not exec'd) so that Janus is stopped when it ends; the
# script exits with the command's status.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CONF=${JANUS_CONF:-$HERE/conf}   # JANUS_CONF: another config folder (e.g. ice_lite = false)
JANUS_ADDR=${JANUS_ADDR:-127.0.0.2}
VIEWER_ADDR=${VIEWER_ADDR:-127.0.0.3}
export JANUS_ADDR VIEWER_ADDR
JANUS_LOG=${JANUS_LOG:-/tmp/janus-bench.log}
JANUS_DEBUG=${JANUS_DEBUG:-4}
API=http://127.0.0.1:8088/janus

if [ $# -eq 0 ]; then
    echo "usage: $0 CMD [ARGS...]  (inside a fresh 'unshare -n')" >&2
    exit 2
fi

# Refuse to touch a namespace that already has links besides lo (e.g. the host's).
if ip -o link show | awk -F': ' '{print $2}' | grep -qv '^lo$'; then
    echo "$0: this network namespace has links besides lo; run me under 'unshare -n'" >&2
    exit 2
fi

# lo for the REST API and RTP ingest; bench0 (veth, peer bench0p) carries Janus's ICE address
# and the viewers' one. `-E $JANUS_ADDR` below makes Janus gather on its own address only.
ip link set lo up
ip link add bench0 type veth peer name bench0p
ip addr add "$JANUS_ADDR/32" dev bench0
ip addr add "$VIEWER_ADDR/32" dev bench0
ip link set bench0p up
ip link set bench0 up      # a veth is RUNNING only when both ends are up; libnice needs RUNNING

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true   # one UDP socket per viewer

# -F: our config folder; -E: gather ICE candidates on this address only; -i: the local IP
# Janus reports (o=/c= lines); -o: no colours; -D: timestamps. Its log (stdout) and stderr
# (libnice's debug output with `-l`) both go to JANUS_LOG.
# shellcheck disable=SC2086  # JANUS_EXTRA_ARGS is a list of flags
PIN=()
if [ -n "${JANUS_CPUS:-}" ]; then PIN=(taskset -c "$JANUS_CPUS"); fi
"${PIN[@]}" janus -F "$CONF" -E "$JANUS_ADDR" -i "$JANUS_ADDR" -d "$JANUS_DEBUG" -o -D ${JANUS_EXTRA_ARGS:-} >"$JANUS_LOG" 2>&1 &
JANUS_PID=$!
export JANUS_PID
trap 'kill "$JANUS_PID" 2>/dev/null && wait "$JANUS_PID" 2>/dev/null || true' EXIT

# Wait (up to 10 s) for the REST API; generating the DTLS certificate takes a moment.
for _ in $(seq 100); do
    if curl -fsS "$API/info" -o /dev/null 2>/dev/null; then
        break
    fi
    if ! kill -0 "$JANUS_PID" 2>/dev/null; then
        echo "$0: janus exited during startup; see $JANUS_LOG" >&2
        exit 1
    fi
    sleep 0.1
done
if ! curl -fsS "$API/info" -o /dev/null; then
    echo "$0: Janus REST API did not answer at $API/info; see $JANUS_LOG" >&2
    exit 1
fi

status=0
"$@" || status=$?
exit "$status"
