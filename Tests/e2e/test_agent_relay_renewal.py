"""Relay credentials run out (TURN REST credentials: the relay refuses to refresh an allocation
with an expired one); a long relayed peer connection must outlive them. With the server handing
out 20-second credentials, two agents on the relay path renew theirs before they expire (new
ICE servers, an ICE restart allocating with them, the old allocations released once a new pair
is selected): the connection carries requests past the first credentials' expiry without a
new peer connection, and the relay's usage rows show data carried by allocations made with two
generations of credentials."""
import socket
import subprocess
import sys
import time

from conftest import BIN, clean_env, free_port, start_server
from test_agent_limits import fetch, line


def test_a_relayed_connection_outlives_its_relay_credentials(sb, tmp_path):
    keys = {}
    for peer in ("alice", "bob"):
        keys[peer] = tmp_path / f"{peer}.key"
        keys[peer].write_text(sb.ok("peer", "add", peer, "--group", "lab").stdout.strip())
    server = start_server(sb, "--allowed-peer", "127.0.0.0/8", "--turn-credential-lifetime", "20")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hello through the relay\n")
    web_port = free_port(socket.SOCK_STREAM)
    processes = [subprocess.Popen([sys.executable, "-m", "http.server", str(web_port), "--bind", "127.0.0.1",
                                   "--directory", str(tmp_path / "www")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    common = ["--server", server.base_url, "--host-address", "127.0.0.1", "--verbose"]
    try:
        exposer = subprocess.Popen([str(BIN), "agent", "expose", *common, "--peer-id", "bob", "--key-file",
                                    str(keys["bob"]), "--service", f"http=127.0.0.1:{web_port}"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
        processes.append(exposer)
        time.sleep(1.0)
        port = free_port(socket.SOCK_STREAM)
        connector = subprocess.Popen([str(BIN), "agent", "connect", *common, "--peer-id", "alice", "--key-file",
                                      str(keys["alice"]), "bob", "--listen", f"127.0.0.1:{port}", "--service", "http",
                                      "--mode", "relay"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
        processes.append(connector)
        assert line(connector, "listening").startswith("listening")
        started = time.monotonic()
        assert "hello through the relay" in fetch(port)
        assert "path=relay" in line(connector, "connected bob")
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
        # Data went through allocations made with two generations of alice's credentials.
        rows = sb.sql("select username from relay_usage where username like '%alice%' and packets_to_peer > 0;")
        expiries = {row.split(":")[0] for row in rows.split()}
        assert len(expiries) >= 2, rows
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        server.stop()
