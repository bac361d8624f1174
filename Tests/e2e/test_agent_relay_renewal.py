"""Relay credentials run out (TURN REST credentials: the relay refuses to refresh an allocation
with an expired one); a long relayed peer connection must outlive them. With the server handing
out 20-second credentials, two agents on the relay path renew theirs before they expire (new
ICE servers, an ICE restart allocating with them, the old allocations released once a new pair
is selected): the connection carries requests past the first credentials' expiry without a
new peer connection, and the relay's usage rows show data carried by allocations made with two
generations of credentials."""
import socket
import time

from conftest import free_port
from loopback_agents import LoopbackAgents, fetch, wait_line


def test_a_relayed_connection_outlives_its_relay_credentials(sb, tmp_path):
    with LoopbackAgents(sb, tmp_path, "--turn-credential-lifetime", "20") as lab:
        web_port = lab.web("hello through the relay\n")
        exposer = lab.agent("bob", "expose", "--verbose", "--service", f"http=127.0.0.1:{web_port}")
        time.sleep(1.0)
        port = free_port(socket.SOCK_STREAM)
        connector = lab.agent("alice", "connect", "--verbose", "bob", "--listen", f"127.0.0.1:{port}",
                              "--service", "http", "--mode", "relay")
        assert wait_line(connector, "listening").startswith("listening")
        started = time.monotonic()
        assert "hello through the relay" in fetch(port)
        assert "path=relay" in wait_line(connector, "connected bob")
        # Past the first credentials' expiry (20 s) and the old allocations' release (10 s
        # after the renewed pair is selected), requests still go over the same connection.
        for at in (12, 24, 34):
            time.sleep(max(0, started + at - time.monotonic()))
            assert "hello through the relay" in fetch(port), at
        for process in (connector, exposer):
            process.terminate()
        connector_out, connector_log = connector.communicate(timeout=15)
        exposer.communicate(timeout=15)
        # One peer connection throughout: the only disconnection is the one SIGTERM made.
        ends = [text for text in connector_out.splitlines() if text.startswith("disconnected")]
        assert ends == ["disconnected bob reason=agent stopped"], connector_out
        assert not [text for text in connector_out.splitlines() if text.startswith("connected")], connector_out
        assert "relay credentials renewed" in connector_log, connector_log[-3000:]
        # Data went through allocations made with two generations of alice's credentials. The
        # relay writes ended allocations in batches: the last ones, released as the agents
        # stopped, may take a moment to show.
        deadline = time.monotonic() + 10
        while True:
            rows = sb.sql("select username from relay_usage where username like '%alice%' and packets_to_peer > 0;")
            expiries = {row.split(":")[0] for row in rows.split()}
            if len(expiries) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert len(expiries) >= 2, (rows, sb.sql("select username, packets_to_peer, end_reason from relay_usage;"))
