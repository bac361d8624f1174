"""The NAT lab (natlab.py) with Switchboard on its "internet" and two aiortc peers behind
routers: behind two home NATs they connect directly (host/server-reflexive/peer-reflexive
candidates, nothing relayed); as soon as a symmetric NAT is on either side, auto mode falls
back to Switchboard's relay. Asserted from both ends: the pair aioice selected, and the relay
usage the server recorded in SQLite."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from natlab import SERVER, Lab, start_lab_server
from test_webrtc_peers import reports_of

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs Debian nftables (make test installs it)"),
]

PEER = Path(__file__).with_name("aiortc_peer.py")
BASE_URL = f"http://{SERVER}:8080"


def run_lab_pair(lab, alice_key, bob_key, mode):
    """An aiortc caller (alice, behind router A) and callee (bob, behind router B)."""
    def spawn(side, *argv):
        return subprocess.Popen(lab.argv(side, sys.executable, str(PEER), "--base-url", BASE_URL,
                                         "--host-address", lab.address(side), *argv),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    callee = spawn("b", "--peer", "bob", f"--key={bob_key}", "--role", "callee", "--events", "sse")
    caller = spawn("a", "--peer", "alice", f"--key={alice_key}", "--role", "caller", "--target", "bob",
                   "--events", "ws", "--mode", mode)
    return reports_of(caller, callee)


def relayed_packets(sb, allocations, timeout=20):
    """Packets the relay carried either way, once at least `allocations` allocations have
    ended and no more usage rows arrive for a second."""
    query = "select count(*), coalesce(sum(packets_to_peer + packets_to_client), 0) from relay_usage;"
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        count, packets = (int(value) for value in sb.sql(query).split("|"))
        if (count, packets) != last:
            last, since = (count, packets), time.monotonic()
        elif count >= allocations and time.monotonic() - since >= 1:
            return packets
        time.sleep(0.2)
    raise AssertionError(f"relay usage: {sb.sql('select * from relay_usage;')!r}")


@pytest.mark.parametrize("kind_a,kind_b,path", [
    ("home", "home", "direct"),
    ("symmetric", "symmetric", "relay"),
    ("home", "symmetric", "relay"),
])
def test_aiortc_peers_behind_nats_go_direct_or_through_the_relay(sb, kind_a, kind_b, path):
    alice = sb.ok("peer", "add", "alice", "--group", "home").stdout.strip()
    bob = sb.ok("peer", "add", "bob", "--group", "home").stdout.strip()
    with Lab({"a": kind_a, "b": kind_b}) as lab:
        server = start_lab_server(lab, sb)
        try:
            caller, callee = run_lab_pair(lab, alice, bob, "auto")
            assert caller["ok"] and callee["ok"], (
                f"caller: {caller.get('error')}; callee: {callee.get('error')}\n{caller}\n{callee}")
            for report in (caller, callee):
                pair = report["selected_pair"]
                if path == "direct":
                    assert "relay" not in pair, report
                else:
                    assert "relay" in pair, report
            assert caller["pongs"] == 20 and caller["pongs_in_order"]
            assert callee["audio_frames"] >= 100 and caller["audio_frames"] >= 100
            # Each side allocated (auto mode gathers relay candidates too); what went through
            # the relay tells the paths apart: ICE checks only, or the whole call.
            packets = relayed_packets(sb, allocations=2)
            if path == "direct":
                assert packets < 60, packets
            else:
                assert packets > 200, packets
        finally:
            server.terminate()
            server.wait(timeout=15)
