"""Session brokering over HTTP with events over SSE and long-poll, driven by plain HTTP
clients (Python's http.client), the way a peer agent talks to Switchboard."""
import http.client
import json
import threading
import time

import pytest

from api_client import Client
from conftest import start_server

OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
ANSWER = OFFER.replace("o=- 1 1", "o=- 2 1")
FRAG = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\na=end-of-candidates\r\n"


class SSE:
    """Reads a text/event-stream in a thread, collecting (id, event, data)."""

    def __init__(self, client, last_event_id=None):
        self.events = []
        self.comments = []
        self.connection = http.client.HTTPConnection(client.host, client.port, timeout=60)
        headers = {"Authorization": f"Bearer {client.token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.connection.request("GET", "/v1/events", headers=headers)
        self.response = self.connection.getresponse()
        assert self.response.status == 200
        assert self.response.getheader("Content-Type").startswith("text/event-stream")
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        event = {}
        try:
            while True:
                line = self.response.readline()
                if not line:
                    return
                line = line.decode().rstrip("\n")
                if not line:
                    if "data" in event:
                        self.events.append((int(event["id"]), event["event"], json.loads(event["data"])))
                    event = {}
                elif line.startswith(":"):
                    self.comments.append((time.monotonic(), line))
                else:
                    name, _, value = line.partition(": ")
                    event[name] = value
        except Exception:
            return

    def wait_for(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.events) >= count, self.events
        return self.events

    def close(self):
        try:
            self.connection.sock.shutdown(2)
        except Exception:
            pass
        self.connection.close()


@pytest.fixture
def pair(sb):
    alice = sb.ok("peer", "add", "alice", "--group", "home").stdout.strip()
    bob = sb.ok("peer", "add", "bob", "--group", "home").stdout.strip()
    sb.ok("peer", "add", "mallory")
    server = start_server(sb, "--offer-ttl", "2")
    yield server, Client(server.base_url).login("alice", alice), Client(server.base_url).login("bob", bob)
    server.stop()


def test_offer_answer_trickle_close_over_sse_and_long_poll(pair, sb):
    server, alice, bob = pair
    stream = SSE(bob)
    status, headers, link, body = alice.request(
        "POST", "/v1/peers/bob/sessions", OFFER,
        {"Content-Type": "application/sdp", "Switchboard-Connect-Mode": "relay", "Switchboard-Connect-Desc": "door cam"})
    assert status == 201, body
    location = headers["location"]
    assert location.startswith("/v1/sessions/") and headers["etag"] == '"1"'
    assert 'rel="ice-server"' in link and "turn:" in link and "stun:" not in link
    session = json.loads(body)
    assert session["state"] == "offered" and session["ice_transport_policy"] == "relay"

    _, kind, data = stream.wait_for(1)[0]
    assert kind == "offer" and data["from"] == "alice" and data["sdp"] == OFFER and data["desc"] == "door cam"
    assert data["ice_transport_policy"] == "relay"
    assert all("turn" in url for server_entry in data["ice_servers"] for url in server_entry["urls"])
    assert data["ice_servers"][0]["username"].endswith(":bob")

    status, headers, _, _ = bob.request("PATCH", location, ANSWER, {"Content-Type": "application/sdp", "If-Match": '"1"'})
    assert status == 204 and headers["etag"] == '"2"'
    status, _, _, body = alice.request("GET", "/v1/events?after=0&wait=5")
    events = json.loads(body)
    assert [e["type"] for e in events] == ["answer"] and events[0]["data"]["sdp"] == ANSWER
    cursor = events[-1]["id"]

    assert alice.request("PATCH", location, FRAG, {"Content-Type": "application/trickle-ice-sdpfrag"})[0] == 204
    assert stream.wait_for(2)[1][1] == "candidates" and stream.events[1][2]["sdpfrag"] == FRAG
    assert bob.request("PATCH", location, FRAG, {"Content-Type": "application/trickle-ice-sdpfrag"})[0] == 204
    events = json.loads(alice.request("GET", f"/v1/events?after={cursor}&wait=5")[3])
    assert [e["type"] for e in events] == ["candidates"]
    cursor = events[-1]["id"]

    status, _, _, body = bob.request("GET", location)
    assert status == 200 and json.loads(body)["state"] == "answered" and json.loads(body)["answer"] == ANSWER
    assert alice.request("DELETE", location)[0] == 204
    assert stream.wait_for(3)[2][1] == "closed"
    stream.close()
    assert sb.sql("select state, mode, description from sessions;") == "closed|relay|door cam\n"


def test_a_reconnecting_stream_misses_nothing(pair):
    server, alice, bob = pair
    first = SSE(bob)
    for _ in range(2):
        assert alice.request("POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp"})[0] == 201
    seen = first.wait_for(2)
    first.close()
    # While bob is away, two more offers arrive.
    for _ in range(2):
        assert alice.request("POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp"})[0] == 201
    second = SSE(bob, last_event_id=seen[1][0])
    events = second.wait_for(2)
    time.sleep(0.3)
    assert len(second.events) == 2
    assert all(e[0] > seen[1][0] for e in events)
    assert len({e[2]["session"] for e in seen + events}) == 4
    second.close()


def test_an_unanswered_offer_expires(pair):
    server, alice, bob = pair
    status, headers, _, _ = alice.request("POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp"})
    assert status == 201
    events = json.loads(alice.request("GET", "/v1/events?after=0&wait=10")[3])
    assert [e["type"] for e in events] == ["expired"]
    assert json.loads(bob.request("GET", headers["location"])[3])["state"] == "expired"


def test_bad_requests_get_problems_and_store_nothing(pair, sb):
    server, alice, bob = pair
    cases = [
        ("POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "text/plain"}, 415),
        ("POST", "/v1/peers/bob/sessions", "hello", {"Content-Type": "application/sdp"}, 400),
        ("POST", "/v1/peers/bob/sessions", "v=0\r\ns=-\r\n", {"Content-Type": "application/sdp"}, 400),
        ("POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp", "Switchboard-Connect-Mode": "warp"}, 400),
        ("POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp", "Switchboard-Connect-Desc": "x" * 257}, 400),
        ("POST", "/v1/peers/mallory/sessions", OFFER, {"Content-Type": "application/sdp"}, 404),
        ("POST", "/v1/peers/nobody/sessions", OFFER, {"Content-Type": "application/sdp"}, 404),
        ("POST", "/v1/peers/alice/sessions", OFFER, {"Content-Type": "application/sdp"}, 404),
        ("POST", "/v1/peers/bob/sessions", "v=0\r\n" + "a=x\r\n" * 20000, {"Content-Type": "application/sdp"}, 413),
        ("GET", "/v1/sessions/does-not-exist", None, {}, 404),
        ("GET", "/v1/events?after=-1", None, {}, 400),
        ("GET", "/v1/events?wait=999", None, {}, 400),
    ]
    for method, path, body, headers, expected in cases:
        status, response_headers, _, text = alice.request(method, path, body, headers)
        assert status == expected, (method, path, status, text)
        assert response_headers["content-type"] == "application/problem+json"
    assert sb.sql("select count(*) from sessions;") == "0\n"
    assert sb.sql("select count(*) from events;") == "0\n"

    # A session that is not yours is not found; the wrong version is 412; the caller cannot answer.
    status, headers, _, _ = alice.request("POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp"})
    location = headers["location"]
    mallory_key = sb.ok("peer", "rotate-key", "mallory").stdout.strip()
    mallory = Client(server.base_url).login("mallory", mallory_key)
    assert mallory.request("GET", location)[0] == 404
    assert mallory.request("DELETE", location)[0] == 404
    assert bob.request("PATCH", location, ANSWER, {"Content-Type": "application/sdp", "If-Match": '"7"'})[0] == 412
    assert alice.request("PATCH", location, ANSWER, {"Content-Type": "application/sdp"})[0] == 409
    assert bob.request("PATCH", location, "garbage", {"Content-Type": "application/trickle-ice-sdpfrag"})[0] == 400
    assert json.loads(bob.request("GET", location)[3])["state"] == "offered"


def ws_connect(client, query="", token_in_query=False):
    """A WebSocket event stream with the `websockets` client library."""
    from websockets.sync.client import connect
    url = f"ws://{client.host}:{client.port}/v1/ws"
    params = [query] if query else []
    headers = {}
    if token_in_query:
        params.append(f"access_token={client.token}")
    elif client.token:
        headers["Authorization"] = f"Bearer {client.token}"
    if params:
        url += "?" + "&".join(params)
    return connect(url, additional_headers=headers, open_timeout=10)


def ws_events(socket, count, timeout=10):
    events = []
    deadline = time.monotonic() + timeout
    while len(events) < count:
        events.append(json.loads(socket.recv(timeout=max(0.01, deadline - time.monotonic()))))
    return events


def test_one_side_on_websocket_the_other_on_long_poll(pair, sb):
    server, alice, bob = pair
    with ws_connect(bob) as socket:
        status, headers, _, body = alice.request("POST", "/v1/peers/bob/sessions", OFFER,
                                                 {"Content-Type": "application/sdp", "Switchboard-Connect-Mode": "p2p"})
        assert status == 201, body
        location = headers["location"]
        [offer] = ws_events(socket, 1)
        assert set(offer) == {"id", "type", "data"} and offer["type"] == "offer"
        assert offer["data"]["from"] == "alice" and offer["data"]["mode"] == "p2p"
        assert all("turn" not in url for entry in offer["data"]["ice_servers"] for url in entry["urls"])
        # Bob holds a WebSocket: alice sees him online.
        assert json.loads(alice.request("GET", "/v1/peers/bob")[3])["online"] is True

        assert bob.request("PATCH", location, ANSWER, {"Content-Type": "application/sdp"})[0] == 204
        assert bob.request("PATCH", location, FRAG, {"Content-Type": "application/trickle-ice-sdpfrag"})[0] == 204
        events, cursor = [], 0
        deadline = time.monotonic() + 10
        while len(events) < 2 and time.monotonic() < deadline:
            batch = json.loads(alice.request("GET", f"/v1/events?after={cursor}&wait=5")[3])
            events += batch
            cursor = batch[-1]["id"] if batch else cursor
        assert [e["type"] for e in events] == ["answer", "candidates"]
        assert events[1]["data"]["sdpfrag"] == FRAG

        assert alice.request("PATCH", location, FRAG, {"Content-Type": "application/trickle-ice-sdpfrag"})[0] == 204
        assert alice.request("DELETE", location)[0] == 204
        candidates, closed = ws_events(socket, 2)
        assert candidates["type"] == "candidates" and closed["type"] == "closed"
        assert closed["data"] == {"session": location.rsplit("/", 1)[1]}
        assert candidates["id"] < closed["id"]
        # Acknowledged events are dropped from the store; the rest wait for delivery.
        socket.send(json.dumps({"ack": closed["id"]}))
        deadline = time.monotonic() + 5
        while sb.sql("select count(*) from events where peer_id = 'bob';") != "0\n" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sb.sql("select count(*) from events where peer_id = 'bob';") == "0\n"
        # Something that is not an ack gets an error message, and the stream goes on.
        socket.send("hello")
        error = json.loads(socket.recv(timeout=5))
        assert error["type"] == "error" and error["data"]["status"] == 400


def test_one_streams_acknowledgement_keeps_what_another_stream_of_the_peer_has_not(pair, sb):
    """Two clients logged in as one peer (two agents, or an agent and a browser) each get every
    event: an acknowledgement on one deletes only what the other open stream has acknowledged
    too. It used to delete up to its own cursor, and the other stream, not yet that far, lost
    what lay between (a hang-up: a tunnel then waited for ever)."""
    server, alice, bob = pair
    count = "select count(*) from events where peer_id = 'bob';"
    with ws_connect(bob) as socket:
        other = SSE(bob)
        assert alice.request("POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp"})[0] == 201
        [offer] = ws_events(socket, 1)
        socket.send(json.dumps({"ack": offer["id"]}))
        assert other.wait_for(1)[0][0] == offer["id"]
        # A long-poll's after= is an acknowledgement too, bounded the same way.
        assert json.loads(alice.request("GET", "/v1/peers/bob")[3])["online"] is True
        status, _, _, body = bob.request("GET", f"/v1/events?after={offer['id']}")
        assert status == 200 and json.loads(body) == []
        time.sleep(0.3)
        assert sb.sql(count) == "1\n"
        # Once the other stream is gone, the next acknowledgement deletes it.
        other.close()
        deadline = time.monotonic() + 5
        while sb.sql(count) != "0\n" and time.monotonic() < deadline:
            socket.send(json.dumps({"ack": offer["id"]}))
            time.sleep(0.1)
        assert sb.sql(count) == "0\n"


def test_a_websocket_resumes_after_a_cursor_and_refuses_bad_tokens(pair):
    from websockets.exceptions import ConnectionClosedError
    server, alice, bob = pair
    for _ in range(3):
        assert alice.request("POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp"})[0] == 201
    with ws_connect(bob, token_in_query=True) as socket:
        first = ws_events(socket, 3)
    with ws_connect(bob, query=f"after={first[0]['id']}") as socket:
        again = ws_events(socket, 2)
        assert [e["id"] for e in again] == [e["id"] for e in first[1:]]
        with pytest.raises(TimeoutError):
            socket.recv(timeout=0.5)

    for client, query, code in [(Client(server.base_url, token="nope"), "", 4401),
                                (Client(server.base_url), "", 4401),
                                (bob, "after=-3", 4400)]:
        with ws_connect(client, query=query) as socket:
            error = json.loads(socket.recv(timeout=5))
            assert error["type"] == "error" and error["data"]["status"] == code - 4000
            with pytest.raises(ConnectionClosedError) as closed:
                socket.recv(timeout=5)
            assert closed.value.rcvd.code == code


def test_streams_end_cleanly_on_shutdown_and_other_paths_refuse_upgrades(pair):
    from websockets.exceptions import ConnectionClosedOK, InvalidStatus
    from websockets.sync.client import connect
    server, alice, bob = pair
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://{bob.host}:{bob.port}/v1/events", open_timeout=5)
    assert refused.value.response.status_code == 400
    with ws_connect(bob) as socket:
        stream = SSE(alice)
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 10
        with pytest.raises(ConnectionClosedOK) as closed:
            socket.recv(timeout=5)
        assert closed.value.rcvd.code == 1001
    stream.thread.join(timeout=5)
    assert not stream.thread.is_alive()


def read_until(sock, marker, timeout=10):
    """Bytes from a raw socket until `marker` has arrived."""
    sock.settimeout(timeout)
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_sse_streams_are_served_from_the_pipeline_and_the_rest_goes_to_the_router(pair, sb):
    """SSE streams with a good token are taken over by the connection's pipeline handler;
    what it passes on (bad tokens, bad cursors, a request pipelined behind another) is
    answered by the routed handler, with the same results."""
    import socket
    server, alice, bob = pair
    # The fast path: headers, the opening comment, an event, and a request counted in the metrics.
    stream = SSE(bob)
    assert stream.response.getheader("Cache-Control") == "no-store"
    assert alice.request("POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp"})[0] == 201
    offer = stream.wait_for(1)[0]
    assert offer[1] == "offer" and offer[2]["from"] == "alice"
    assert json.loads(alice.request("GET", "/v1/peers/bob")[3])["online"] is True
    stream.close()
    metrics = Client(server.base_url).request("GET", "/metrics")[3]
    assert 'http_route="/v1/events"' in metrics and 'http_response_status_code="200"' in metrics, metrics

    # Refusals come from the router as problem documents.
    for headers, expected in [({"Authorization": "Bearer nope"}, 401), ({}, 401),
                              ({"Authorization": f"Bearer {bob.token}", "Last-Event-ID": "soon"}, 400)]:
        connection = http.client.HTTPConnection(bob.host, bob.port, timeout=10)
        connection.request("GET", "/v1/events", headers=headers)
        response = connection.getresponse()
        assert response.status == expected
        assert response.getheader("Content-Type") == "application/problem+json"
        connection.close()

    # Two requests in one write: the stream behind an unanswered request goes to the router,
    # and both are answered in order on the one connection.
    with socket.create_connection((bob.host, bob.port), timeout=10) as sock:
        auth = f"Authorization: Bearer {bob.token}\r\nHost: x\r\n"
        sock.sendall((f"GET /v1/ice-servers HTTP/1.1\r\n{auth}\r\n"
                      f"GET /v1/events HTTP/1.1\r\n{auth}Accept: text/event-stream\r\n\r\n").encode())
        data = read_until(sock, b": switchboard events for bob")
        first, _, rest = data.partition(b"\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200") and b"application/json" in first.lower()
        assert b"HTTP/1.1 200" in rest and b"text/event-stream" in rest.lower()
        assert rest.index(b"text/event-stream") < rest.index(b": switchboard events for bob")
        assert alice.request("POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp"})[0] == 201
        assert b"event: offer" in read_until(sock, b"event: offer")


def test_offers_posted_at_once_reach_the_stream_once_each_in_order(pair):
    """Offers stored from several connections at once are announced to the callee's stream
    concurrently (the hub hands each stored event over, to be sent as is when nothing can
    be missing before it): the stream still gets every one exactly once, in id order."""
    _, alice, bob = pair
    stream = SSE(bob)
    statuses = []

    def post_some():
        client = Client(f"http://{alice.host}:{alice.port}", token=alice.token)
        for _ in range(8):
            statuses.append(client.request("POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp"})[0])

    threads = [threading.Thread(target=post_some) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201] * 40
    events = stream.wait_for(40)
    time.sleep(0.3)  # nothing more, no repeats, arrives later
    ids = [event[0] for event in stream.events]
    assert len(ids) == 40 and ids == sorted(ids) and len(set(ids)) == 40
    assert len({event[2]["session"] for event in events}) == 40
    stream.close()


def test_a_silent_stream_gets_keepalives(sb):
    """--event-keepalive: an SSE stream with nothing to say gets a comment that often."""
    key = sb.ok("peer", "add", "carol").stdout.strip()
    server = start_server(sb, "--event-keepalive", "1")
    try:
        carol = Client(server.base_url).login("carol", key)
        stream = SSE(carol)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and len([c for c in stream.comments if c[1] == ": keepalive"]) < 2:
            time.sleep(0.05)
        keepalives = [at for at, text in stream.comments if text == ": keepalive"]
        assert len(keepalives) >= 2, stream.comments
        # One period apart (the first comes at the stream's tick within the first period).
        assert 0.5 <= keepalives[1] - keepalives[0] <= 2.5, keepalives
        assert stream.events == []
        stream.close()
    finally:
        server.stop()


def test_sessions_are_deleted_after_the_retention(sb):
    """--session-retention: a session unchanged that long is deleted (here one that was
    closed), once it is also older than the minute the session limit counts; the API and
    the sqlite3 CLI both stop seeing it, and a waiting offer stays."""
    alice_key = sb.ok("peer", "add", "alice", "--group", "home").stdout.strip()
    bob_key = sb.ok("peer", "add", "bob", "--group", "home").stdout.strip()
    server = start_server(sb, "--session-retention", "1")
    try:
        alice = Client(server.base_url).login("alice", alice_key)
        Client(server.base_url).login("bob", bob_key)
        post = lambda: alice.request("POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp"})
        status, headers, _, body = post()
        assert status == 201, body
        closed = headers["location"]
        assert alice.request("DELETE", closed)[0] == 204
        status, headers, _, body = post()
        assert status == 201, body
        waiting = headers["location"]
        # An admin backdates both by an hour with the sqlite3 CLI, as if they were old.
        sb.sql("update sessions set created_at = created_at - 3600, updated_at = updated_at - 3600;")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and sb.sql("select count(*) from sessions;") != "1\n":
            time.sleep(0.2)
        assert sb.sql("select id from sessions;") == waiting.rsplit("/", 1)[1] + "\n"
        status, headers, _, body = alice.request("GET", closed)
        assert status == 404 and headers["content-type"] == "application/problem+json", body
        assert alice.request("GET", waiting)[0] == 200  # an offer nobody answered yet is kept
    finally:
        server.stop()
