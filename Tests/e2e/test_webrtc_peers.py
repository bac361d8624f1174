"""Two aiortc peers, each in its own process, log in to Switchboard, swap offer, answer and
trickled candidates through it, and connect through Switchboard's own TURN relay using relay
candidates only; then they exchange data-channel messages and an audio track."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import start_server

PEER = Path(__file__).with_name("aiortc_peer.py")


def run_pair(server, alice_key, bob_key, caller_events, callee_events, mode="relay"):
    common = ["--base-url", server.base_url]
    callee = subprocess.Popen([sys.executable, str(PEER), *common, "--peer", "bob", f"--key={bob_key}",
                               "--role", "callee", "--events", callee_events],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    caller = subprocess.Popen([sys.executable, str(PEER), *common, "--peer", "alice", f"--key={alice_key}",
                               "--role", "caller", "--target", "bob", "--events", caller_events, "--mode", mode],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return reports_of(caller, callee)


def reports_of(*processes, timeout=120):
    """The JSON report each aiortc peer process prints last."""
    reports = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        lines = out.strip().splitlines()
        assert lines, f"no report; stderr:\n{err[-3000:]}"
        reports.append(json.loads(lines[-1]))
    return reports


def usage_rows(sb, expected, timeout=15):
    """Relay usage rows, once `expected` allocations have ended."""
    deadline = time.monotonic() + timeout
    query = ("select username, client_transport, packets_to_peer, bytes_to_peer, packets_to_client, bytes_to_client"
             " from relay_usage order by id;")
    while time.monotonic() < deadline:
        rows = [line.split("|") for line in sb.sql(query).splitlines()]
        if len(rows) >= expected:
            return rows
        time.sleep(0.2)
    raise AssertionError(f"relay usage rows: {sb.sql(query)!r}")


@pytest.fixture
def peers(sb):
    alice = sb.ok("peer", "add", "alice", "--group", "home").stdout.strip()
    bob = sb.ok("peer", "add", "bob", "--group", "home").stdout.strip()
    # The two relayed addresses are both on 127.0.0.1: let the relay send between them.
    server = start_server(sb, "--allowed-peer", "127.0.0.0/8")
    yield server, alice, bob
    server.stop()


@pytest.mark.parametrize("caller_events,callee_events", [("poll", "sse"), ("poll", "ws")])
def test_two_aiortc_peers_connect_through_the_relay_only(peers, sb, caller_events, callee_events):
    server, alice_key, bob_key = peers
    caller, callee = run_pair(server, alice_key, bob_key, caller_events, callee_events)
    assert caller["ok"] and callee["ok"], (
        f"caller: {caller.get('error')}; callee: {callee.get('error')}\n{caller}\n{callee}")

    # Relay mode: TURN only everywhere, relay policy in the offer, only relay candidates.
    assert caller["session"]["ice_transport_policy"] == "relay" and caller["session"]["mode"] == "relay"
    assert caller["links"] and all("rel=\"ice-server\"" in link and "<turn:" in link for link in caller["links"])
    assert callee["offer_from"] == "alice" and callee["offer_policy"] == "relay"
    for report in (caller, callee):
        assert report["local_candidate_types"] == ["relay"], report
        assert report["remote_candidate_types"] == ["relay"], report
        assert report["selected_pair"] == ["relay", "relay"], report

    # Data channel: every ping answered, in order; audio arrived both ways.
    assert caller["pongs"] == 20 and caller["pongs_in_order"]
    assert callee["messages"] == 20
    assert callee["audio_frames"] >= 100 and caller["audio_frames"] >= 100

    # Every allocation ends when the peers close (aiortc allocates one per media section
    # and uses the first), and the usage rows of the two in use hold the traffic: 100 audio
    # frames of 20 ms each are at least 100 RTP packets through the relay.
    rows = usage_rows(sb, 2)
    used = [row for row in rows if int(row[2]) > 0]
    assert sorted(row[0].split(":", 1)[1] for row in used) == ["alice", "bob"], rows
    for username, transport, packets_out, bytes_out, packets_in, bytes_in in used:
        assert transport == "udp"
        assert int(packets_out) > 100 and int(packets_in) > 100, rows
        assert int(bytes_out) > 4000 and int(bytes_in) > 4000, rows
    # What one side sent to its peer through the relay, the other received from it.
    total_out = sum(int(row[3]) for row in used)
    total_in = sum(int(row[5]) for row in used)
    assert abs(total_out - total_in) <= total_out * 0.05, rows
    session = sb.sql("select state, mode, description from sessions;")
    assert session == "closed|relay|aiortc e2e\n"
