"""TURN over TCP and TLS against slowloris and connection floods: a connection that does not
authenticate in time is closed, one without an allocation is closed once idle, and a source
over its cap is refused at accept while other sources still connect. Raw sockets and a
small STUN client here, so the test controls every byte; loopback addresses only."""
import hashlib
import hmac
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import time

import pytest

from conftest import start_server

MAGIC = 0x2112A442
ALLOCATE, REFRESH, BINDING = 0x0003, 0x0004, 0x0001


def attribute(kind, value):
    return struct.pack("!HH", kind, len(value)) + value + b"\0" * (-len(value) % 4)


def request(method, attributes=(), key=None):
    transaction = os.urandom(12)
    body = b"".join(attributes)
    if key is not None:
        # MESSAGE-INTEGRITY covers the header with the length up to and including itself.
        header = struct.pack("!HHI", method, len(body) + 24, MAGIC) + transaction
        body += attribute(0x0008, hmac.new(key, header + body, hashlib.sha1).digest())
    return struct.pack("!HHI", method, len(body), MAGIC) + transaction + body


def read_message(sock, timeout=5):
    """(message type, {attribute type: value}) of the next STUN message on a stream."""
    sock.settimeout(timeout)
    header = read_exactly(sock, 20)
    kind, length = struct.unpack("!HH", header[:4])
    body = read_exactly(sock, length)
    attributes, offset = {}, 0
    while offset + 4 <= len(body):
        attr, size = struct.unpack("!HH", body[offset:offset + 4])
        attributes[attr] = body[offset + 4:offset + 4 + size]
        offset += 4 + size + (-size % 4)
    return kind, attributes


def read_exactly(sock, count):
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed by the server")
        data += chunk
    return data


def authenticate(sock, method, username, password, extra=()):
    """Sends `method` unauthenticated, takes the 401's realm and nonce, sends it again with
    MESSAGE-INTEGRITY; returns the answer's message type."""
    sock.sendall(request(method, extra))
    kind, attributes = read_message(sock)
    assert kind == 0x0110 | method, hex(kind)  # 401 error response
    realm, nonce = attributes[0x0014], attributes[0x0015]
    key = hashlib.md5(f"{username}:{realm.decode()}:{password}".encode()).digest()
    sock.sendall(request(method, [attribute(0x0006, username.encode()), attribute(0x0014, realm),
                                  attribute(0x0015, nonce), *extra], key=key))
    return read_message(sock)[0]


def binding_answered(sock):
    """True when the connection still answers a Binding request."""
    try:
        sock.sendall(request(BINDING))
        return read_message(sock, timeout=2)[0] == 0x0101
    except (ConnectionError, OSError):
        return False


def seconds_until_closed(sock, limit):
    """Waits (at most `limit` s) for the server to close; returns the seconds waited."""
    start = time.monotonic()
    sock.settimeout(limit)
    try:
        while time.monotonic() - start < limit:
            if not sock.recv(4096):
                break
    except (ConnectionResetError, socket.timeout, ssl.SSLError, OSError):
        pass
    return time.monotonic() - start


def connect(port, source="127.0.0.1"):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def credential(sb, name):
    data = json.loads(sb.ok("turn-credential", name, "--ttl", "600", "--json").stdout)
    return data["username"], data["password"]


def metric(server, name, labels):
    _, _, text = server.get("/metrics")
    match = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


def turn_port(server):
    return int(server.turn[0].rsplit(":", 1)[1])


@pytest.fixture
def stop_after():
    servers = []
    yield servers.append
    for server in servers:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()


def test_connections_that_do_not_authenticate_are_closed_at_the_deadline(sb, stop_after):
    server = start_server(sb, "--turn-auth-timeout", "2")
    stop_after(server)
    port = turn_port(server)
    silent, half, binding_only = connect(port), connect(port), connect(port)
    half.sendall(request(BINDING)[:10])  # half a STUN header, then nothing
    assert binding_answered(binding_only)  # answered, but a Binding proves nothing
    start = time.monotonic()
    waited = [seconds_until_closed(sock, 6) for sock in (silent, half, binding_only)]
    total = time.monotonic() - start
    # Opened together, so each is closed 2 s after its accept (+ the 250 ms sweep).
    assert 1.5 <= waited[0] <= 3.0, waited
    assert total <= 3.0, waited
    for sock in (silent, half, binding_only):
        sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and metric(
            server, "switchboard_relay_connections_closed_total", 'reason="auth_timeout"') != 3:
        time.sleep(0.2)
    assert metric(server, "switchboard_relay_connections_closed_total", 'reason="auth_timeout"') == 3


def test_the_default_deadline_is_five_seconds(sb, stop_after):
    server = start_server(sb)
    stop_after(server)
    sock = connect(turn_port(server))
    waited = seconds_until_closed(sock, 10)
    sock.close()
    assert 4.9 <= waited <= 6.0, waited


def test_authenticated_connections_stay_until_idle_without_an_allocation(sb, stop_after):
    server = start_server(sb, "--allowed-peer", "127.0.0.0/8", "--turn-auth-timeout", "2",
                          "--turn-idle-timeout", "4")
    stop_after(server)
    port = turn_port(server)
    username, password = credential(sb, "conn")
    idle, allocated = connect(port), connect(port)
    # A Refresh with no allocation is authenticated and answered 437: proof enough, no allocation.
    assert authenticate(idle, REFRESH, username, password) == 0x0114
    authenticated_at = time.monotonic()
    assert authenticate(allocated, ALLOCATE, username, password,
                        [attribute(0x0019, b"\x11\0\0\0")]) == 0x0103
    time.sleep(2.5)  # past the 2 s authentication deadline
    assert binding_answered(idle)
    assert binding_answered(allocated)
    # Bindings do not count as use: the idle one goes 4 s after its authenticated request.
    seconds_until_closed(idle, 6)
    closed_at = time.monotonic() - authenticated_at
    assert 3.8 <= closed_at <= 5.0, closed_at
    # The one with an allocation is still served well past both deadlines.
    assert binding_answered(allocated)
    idle.close()
    allocated.close()


def test_tls_handshakes_that_do_not_finish_are_closed_at_the_deadline(sb, tmp_path, stop_after):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    tls_port = _free_tcp_port()
    server = start_server(sb, "--turn-tls-listen", f"127.0.0.1:{tls_port}", "--tls-cert", str(cert),
                          "--tls-key", str(key), "--turn-auth-timeout", "2")
    stop_after(server)
    no_hello = connect(tls_port)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    handshaken = context.wrap_socket(connect(tls_port), server_hostname="localhost")
    handshaken.sendall(request(BINDING)[:10])
    waited = [seconds_until_closed(no_hello, 6), seconds_until_closed(handshaken, 6)]
    assert 1.5 <= waited[0] <= 3.0, waited
    assert waited[1] <= 1.0, waited  # closed at the same deadline, opened just after
    no_hello.close()
    handshaken.close()


def _free_tcp_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_source_over_its_cap_is_refused_at_accept_and_others_still_connect(sb, stop_after):
    server = start_server(sb, "--turn-connections-per-source", "4")
    stop_after(server)
    port = turn_port(server)
    kept = [connect(port) for _ in range(4)]
    for sock in kept:
        assert binding_answered(sock)
    excess = [connect(port) for _ in range(3)]
    for sock in excess:
        assert seconds_until_closed(sock, 3) < 1.0
        sock.close()
    neighbour = connect(port, source="127.0.0.2")
    assert binding_answered(neighbour)
    # A place freed is a place taken again.
    kept.pop().close()
    time.sleep(0.3)
    again = connect(port)
    assert binding_answered(again)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and metric(
            server, "switchboard_relay_connections_refused_total", 'reason="per_source"') != 3:
        time.sleep(0.2)
    assert metric(server, "switchboard_relay_connections_refused_total", 'reason="per_source"') == 3
    for sock in [*kept, neighbour, again]:
        sock.close()


def with_fingerprint(message, damage=False):
    """Appends FINGERPRINT (RFC 8489 §14.7), wrong by one bit if `damage`."""
    import zlib
    length = struct.unpack("!H", message[2:4])[0] + 8
    covered = message[:2] + struct.pack("!H", length) + message[4:]
    value = (zlib.crc32(covered) ^ 0x5354554E) ^ (1 if damage else 0)
    return covered + attribute(0x8028, struct.pack("!I", value))


def test_a_message_with_a_wrong_fingerprint_is_dropped_unanswered(sb, stop_after):
    server = start_server(sb)
    stop_after(server)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1)
        sock.sendto(with_fingerprint(request(BINDING), damage=True), ("127.0.0.1", turn_port(server)))
        with pytest.raises(socket.timeout):
            sock.recvfrom(2048)
        sock.sendto(with_fingerprint(request(BINDING)), ("127.0.0.1", turn_port(server)))
        assert struct.unpack("!H", sock.recvfrom(2048)[0][:2])[0] == 0x0101
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and metric(
            server, "switchboard_relay_dropped_total", 'reason="bad_fingerprint"') != 1:
        time.sleep(0.2)
    assert metric(server, "switchboard_relay_dropped_total", 'reason="bad_fingerprint"') == 1
