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


def test_a_refreshed_session_outlives_the_servers_session_retention(sb, tmp_path):
    """The server purges a session unchanged for `--session-retention` (kept at least a
    minute), so a peer connection that lasts longer would find no session for its next ICE
    restart. Agents refresh their live sessions (`--session-refresh`, the current credentials
    again with no candidates): with a 5 s retention, alice's session (refreshed every 3 s) is
    still there after carol's (never refreshed) was purged, and alice's connection still
    carries requests."""
    with LoopbackAgents(sb, tmp_path, "--session-retention", "5") as lab:
        web_port = lab.web("hello, still here\n")
        exposer = lab.agent("bob", "expose", "--session-refresh", "0", "--service", f"http=127.0.0.1:{web_port}")
        time.sleep(1.0)
        ports = {peer: free_port(socket.SOCK_STREAM) for peer in ("alice", "carol")}
        connectors = {
            peer: lab.agent(peer, "connect", "bob", "--listen", f"127.0.0.1:{ports[peer]}", "--service", "http",
                            "--session-refresh", refresh)
            for peer, refresh in (("alice", "3"), ("carol", "0"))
        }
        for peer, connector in connectors.items():
            assert wait_line(connector, "listening").startswith("listening")
            assert "hello, still here" in fetch(ports[peer])
            wait_line(connector, "connected bob")
        sessions = {peer: sb.sql(f"select id from sessions where caller = '{peer}' and state = 'answered';").split()
                    for peer in connectors}
        assert all(len(ids) == 1 for ids in sessions.values()), sessions
        # Sessions are kept for at least a minute, then purged by the 5 s retention at the
        # next housekeeping pass (every second) unless something changed them.
        deadline = time.monotonic() + 100
        while sb.sql(f"select count(*) from sessions where id = '{sessions['carol'][0]}';").strip() != "0":
            assert time.monotonic() < deadline, sb.sql("select caller, state, created_at, updated_at from sessions;")
            time.sleep(1)
        row = sb.sql(f"select state, unixepoch() - updated_at from sessions where id = '{sessions['alice'][0]}';")
        assert row.startswith("answered|"), (row, sb.sql("select caller, state, created_at, updated_at from sessions;"))
        assert int(row.split("|")[1]) <= 5, row
        assert "hello, still here" in fetch(ports["alice"])
        for process in (*connectors.values(), exposer):
            process.terminate()
        alice_out, _ = connectors["alice"].communicate(timeout=15)
        exposer.communicate(timeout=15)
        # One peer connection throughout, ended by SIGTERM.
        ends = [text for text in alice_out.splitlines() if text.startswith("disconnected")]
        assert ends == ["disconnected bob reason=agent stopped"], alice_out
