"""The TURN relay driven by coturn's own test tools (Debian `coturn`): turnutils_uclient
as the client and turnutils_peer as the echo peer, the way coturn's users test a server."""
import re
import shutil
import subprocess
import time

import pytest

from conftest import free_port, start_server

pytestmark = pytest.mark.skipif(shutil.which("turnutils_uclient") is None,
                                reason="needs Debian coturn (make test installs it)")


def summary(output):
    """uclient exits 0 even at 100% loss, so its closing summary is the verdict:
    (lost packets, bytes received) from its last lines, or (None, 0) without them."""
    lost = re.search(r"Total lost packets (\d+)", output)
    totals = re.findall(r"start_mclient: tot_send_bytes ~ (\d+), tot_recv_bytes ~ (\d+)", output)
    received = int(totals[-1][1]) if totals else 0
    return (int(lost.group(1)) if lost else None), received


@pytest.fixture
def echo_peer():
    host = "127.0.0.1"
    port = free_port()
    process = subprocess.Popen(["turnutils_peer", "-L", host, "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    yield host, port
    process.kill()
    process.wait()


@pytest.fixture
def relay(sb):
    server = start_server(sb, "--allowed-peer", "127.0.0.0/8", "--relay-ports", "40000-44999")
    yield server
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


def uclient(*args, timeout=60):
    result = subprocess.run(["turnutils_uclient", *args], capture_output=True, text=True, timeout=timeout)
    return result.stdout + result.stderr


def turn_port(server):
    return server.turn[0].rsplit(":", 1)[1]


@pytest.mark.parametrize("mode", [[], ["-t"], ["-s"], ["-t", "-s"]], ids=["udp", "tcp", "send-indications", "tcp-send"])
def test_rest_credentials_relay_every_packet(relay, sb, echo_peer, mode):
    secret = (sb.data_dir / "turn-secret").read_text().strip()
    out = uclient(*mode, "-p", turn_port(relay), "-e", echo_peer[0], "-r", str(echo_peer[1]),
                  "-X", "-g", "-u", "alice", "-W", secret, "127.0.0.1")
    assert summary(out) == (0, 1000), out[-2000:]


@pytest.mark.parametrize("mode", [[], ["-t"]], ids=["udp", "tcp"])
def test_client_to_client(relay, sb, mode):
    secret = (sb.data_dir / "turn-secret").read_text().strip()
    out = uclient(*mode, "-y", "-p", turn_port(relay), "-X", "-g", "-u", "alice", "-W", secret, "127.0.0.1")
    # Two clients send 5 RTP and 5 RTCP packets of 100 bytes each to each other.
    assert summary(out) == (0, 2000), out[-2000:]


def test_static_user_relays_and_a_wrong_password_is_refused(relay, sb, echo_peer):
    sb.ok("turn-user", "add", "carol", "--password", "s3cret-pass")
    assert sb.sql("select name, realm, length(key_md5) from turn_users;") == "carol|switchboard|32\n"
    assert "s3cret-pass" not in sb.dump()
    time.sleep(2.5)  # the relay reloads static users every 2 s
    out = uclient("-p", turn_port(relay), "-e", echo_peer[0], "-r", str(echo_peer[1]), "-X", "-g",
                  "-u", "carol", "-w", "s3cret-pass", "127.0.0.1")
    assert summary(out) == (0, 1000), out[-2000:]
    wrong = uclient("-p", turn_port(relay), "-e", echo_peer[0], "-r", str(echo_peer[1]), "-X", "-g",
                    "-u", "carol", "-w", "not-the-password", "127.0.0.1")
    assert "Cannot complete Allocation" in wrong
    assert "tot_recv_bytes ~ 1000" not in wrong


def test_a_wrong_secret_is_refused_like_coturn_refuses_it(relay, sb, echo_peer):
    out = uclient("-p", turn_port(relay), "-e", echo_peer[0], "-r", str(echo_peer[1]), "-X", "-g",
                  "-u", "alice", "-W", "not-the-secret", "127.0.0.1")
    # coturn's uclient prints exactly this against coturn with a wrong secret.
    assert "Cannot complete Allocation" in out
    time.sleep(1.2)  # counters reach swift-metrics once a second
    body = relay.get("/metrics")[2]
    failures = re.search(r"^switchboard_relay_auth_failures_total (\d+)", body, re.M)
    assert failures and int(failures.group(1)) >= 1


def test_a_forbidden_peer_is_refused_with_403(relay, sb):
    secret = (sb.data_dir / "turn-secret").read_text().strip()
    # The metadata address is denied by default; nothing is ever sent to it.
    out = uclient("-p", turn_port(relay), "-e", "169.254.169.254", "-r", "3480", "-X", "-g",
                  "-u", "alice", "-W", secret, "127.0.0.1")
    assert "error 403 (Forbidden IP)" in out
    assert "tot_recv_bytes ~ 1000" not in out


def test_tls(sb, tmp_path, echo_peer):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    tls_port = free_port()
    server = start_server(sb, "--allowed-peer", "127.0.0.0/8", "--turn-tls-listen", f"127.0.0.1:{tls_port}",
                          "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert f"tls://127.0.0.1:{tls_port}" in "".join(server.output)
        secret = (sb.data_dir / "turn-secret").read_text().strip()
        out = uclient("-t", "-S", "-p", str(tls_port), "-e", echo_peer[0], "-r", str(echo_peer[1]), "-X", "-g",
                      "-u", "alice", "-W", secret, "127.0.0.1")
        assert summary(out) == (0, 1000), out[-2000:]
    finally:
        assert server.stop() == 0


def test_ipv6_on_loopback(sb):
    turn = f"[::1]:{free_port(host='::1')}"
    peer_port = free_port(host="::1")
    peer = subprocess.Popen(["turnutils_peer", "-L", "::1", "-p", str(peer_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = start_server(sb, "--allowed-peer", "::1/128", "--relay-ip", "::1", turn_listen=[turn])
    try:
        time.sleep(0.3)
        secret = (sb.data_dir / "turn-secret").read_text().strip()
        out = uclient("-x", "-p", turn.rsplit(":", 1)[1], "-e", "::1", "-r", str(peer_port), "-g",
                      "-u", "alice", "-W", secret, "::1")
        assert summary(out) == (0, 1000), out[-2000:]
    finally:
        peer.kill()
        assert server.stop() == 0
