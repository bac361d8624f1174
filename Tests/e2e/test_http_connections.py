"""The HTTP server against slowloris and connection floods: a request's head and body must
arrive within --http-request-timeout, a kept-alive connection may be silent only
--http-idle-timeout, one source may hold only --http-connections-per-source connections,
and none of it cuts an event stream (SSE, WebSocket, long-poll) being answered. Raw sockets
for the attacks, the API's own clients for the streams; loopback addresses only."""
import json
import re
import socket
import threading
import time
import urllib.parse

import pytest

from api_client import Client
from conftest import start_server
from test_signaling import OFFER, SSE, ws_connect, ws_events


def connect(server, source="127.0.0.1"):
    parts = urllib.parse.urlsplit(server.base_url)
    return socket.create_connection((parts.hostname, parts.port), timeout=5, source_address=(source, 0))


def seconds_until_closed(sock, limit, trickle=None):
    """Waits (at most `limit` s) for the server to close, sending `trickle` a byte a second
    if given; returns the seconds waited."""
    start = time.monotonic()
    sent = 0
    while time.monotonic() - start < limit:
        sock.settimeout(1.0)
        try:
            data = sock.recv(4096)
            if not data:
                break
        except socket.timeout:
            pass
        except (ConnectionResetError, OSError):
            break
        if trickle is not None and sent < len(trickle):
            try:
                sock.sendall(trickle[sent:sent + 1])
            except OSError:
                break
            sent += 1
    return time.monotonic() - start


def read_response(sock):
    """Reads one small HTTP response (headers and Content-Length body)."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(4096)
    return head.split(b"\r\n")[0]


def metric(client, name, labels):
    text = client.request("GET", "/metrics")[3]
    match = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else None


@pytest.fixture
def timed(sb):
    server = start_server(sb, "--http-request-timeout", "2", "--http-idle-timeout", "4")
    yield server
    server.stop()


def test_a_header_sent_a_byte_a_second_is_cut_at_the_request_timeout(timed):
    loris = connect(timed)
    loris.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    silent = connect(timed)
    results = {}
    thread = threading.Thread(target=lambda: results.update(silent=seconds_until_closed(silent, 8)))
    thread.start()
    waited = seconds_until_closed(loris, 8, trickle=b"X-Slow: " + b"a" * 20)
    thread.join(10)
    # 2 s from the accept, though a byte came every second.
    assert 1.8 <= waited <= 3.0, waited
    assert 1.8 <= results["silent"] <= 3.0, results
    loris.close()
    silent.close()
    client = Client(timed.base_url)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and metric(
            client, "switchboard_http_connections_closed_total", 'reason="request_timeout"') != 2:
        time.sleep(0.2)
    assert metric(client, "switchboard_http_connections_closed_total", 'reason="request_timeout"') == 2


def test_a_kept_alive_connection_is_closed_after_the_idle_timeout_and_a_late_request_is_timed_from_its_first_byte(timed):
    idle, late = connect(timed), connect(timed)
    for sock in (idle, late):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock) == b"HTTP/1.1 200 OK"
    answered = time.monotonic()
    results = {}
    thread = threading.Thread(target=lambda: results.update(idle=seconds_until_closed(idle, 8)))
    thread.start()
    # The second starts a request 1 s in and trickles it: 2 s from that first byte, not 4 from the answer.
    time.sleep(1)
    late.sendall(b"G")
    waited = seconds_until_closed(late, 8, trickle=b"ET /healthz HTTP/1.1\r\n")
    late_closed = time.monotonic() - answered
    thread.join(10)
    assert 3.8 <= results["idle"] <= 5.0, results
    assert 2.8 <= late_closed <= 3.8, late_closed
    idle.close()
    late.close()


def test_a_connection_in_use_is_not_cut(timed):
    # Requests on one connection, each under the timeouts, for longer than both together.
    sock = connect(timed)
    start = time.monotonic()
    for _ in range(4):
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(sock) == b"HTTP/1.1 200 OK"
        time.sleep(1.8)
    assert time.monotonic() - start > 6
    sock.close()


def test_event_streams_outlive_both_timeouts(sb):
    keys = {name: sb.ok("peer", "add", name, "--group", "home").stdout.strip()
            for name in ("alice", "bob", "carol", "dave")}
    server = start_server(sb, "--http-request-timeout", "2", "--http-idle-timeout", "3", "--event-keepalive", "60")
    try:
        clients = {name: Client(server.base_url).login(name, key) for name, key in keys.items()}
        sse = SSE(clients["bob"])
        results = {}

        def long_poll():
            response = clients["dave"].request("GET", "/v1/events?after=0&wait=9")
            results["poll"] = (time.monotonic(), response)

        with ws_connect(clients["carol"]) as websocket:
            poller = threading.Thread(target=long_poll)
            poller.start()
            time.sleep(5.5)  # past the request and idle timeouts, nothing sent or received
            offered = time.monotonic()
            for peer in ("bob", "carol", "dave"):
                status, _, _, body = clients["alice"].request(
                    "POST", f"/v1/peers/{peer}/sessions", OFFER, {"Content-Type": "application/sdp"})
                assert status == 201, body
            assert sse.wait_for(1)[0][1] == "offer"
            assert ws_events(websocket, 1)[0]["type"] == "offer"
            poller.join(10)
            at, (status, _, _, body) = results["poll"]
            assert status == 200 and [event["type"] for event in json.loads(body)] == ["offer"]
            assert at >= offered
        sse.close()
    finally:
        server.stop()


def test_a_source_over_its_cap_is_refused_at_accept_and_others_still_connect(sb):
    server = start_server(sb, "--http-connections-per-source", "3")
    try:
        held = [connect(server) for _ in range(3)]
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(sock) == b"HTTP/1.1 200 OK"
        excess = [connect(server) for _ in range(2)]
        for sock in excess:
            assert seconds_until_closed(sock, 3) < 1.0
            sock.close()
        neighbour = Client(server.base_url, source="127.0.0.2")
        assert neighbour.request("GET", "/healthz")[0] == 200
        held.pop().close()
        time.sleep(0.3)
        again = connect(server)
        again.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(again) == b"HTTP/1.1 200 OK"
        assert metric(neighbour, "switchboard_http_connections_refused_total", 'reason="per_source"') == 2
        for sock in [*held, again]:
            sock.close()
    finally:
        server.stop()
