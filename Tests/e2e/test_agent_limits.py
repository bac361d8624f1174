"""An exposing agent bounds the peer connections it holds: past --max-per-peer from one peer ID
(or --max-peer-connections in all) an offer is hung up at once, the refused caller says so, and
other peers still connect."""
import socket
import time

from conftest import free_port
from loopback_agents import LoopbackAgents, fetch, wait_line


def test_offers_past_the_per_peer_limit_are_hung_up_and_other_peers_still_connect(sb, tmp_path):
    with LoopbackAgents(sb, tmp_path) as lab:
        web_port = lab.web("hello within the limits\n")
        exposer = lab.agent("bob", "expose", "--service", f"http=127.0.0.1:{web_port}", "--max-per-peer", "1")
        time.sleep(1.0)
        ports = {}
        connectors = {}
        for name, peer in (("first", "alice"), ("second", "alice"), ("other", "carol")):
            ports[name] = free_port(socket.SOCK_STREAM)
            connectors[name] = lab.agent(peer, "connect", "bob", "--listen", f"127.0.0.1:{ports[name]}",
                                         "--service", "http")
            assert wait_line(connectors[name], "listening").startswith("listening")
        # alice's first agent holds its one peer connection; her second is turned away.
        assert "hello within the limits" in fetch(ports["first"])
        assert wait_line(connectors["first"], "connected bob")
        refused = fetch(ports["second"])
        assert "hello" not in refused
        assert "hung up" in wait_line(connectors["second"], "disconnected bob")
        # Another peer is not affected, and alice's first connection still works.
        assert "hello within the limits" in fetch(ports["other"])
        assert "hello within the limits" in fetch(ports["first"])
        assert exposer.poll() is None
        exposer.terminate()
        _, errors = exposer.communicate(timeout=15)
        assert "offer refused: too many peer connections" in errors and "from=alice" in errors, errors[-2000:]
