"""An admin holding SQLite's write lock with the real sqlite3 CLI on the live database
(BEGIN IMMEDIATE for ~4 s) slows only the requests that write: /healthz keeps answering at
once, a login waits for the lock or, past --write-timeout, gets 503 + Retry-After, and
everything a client was told succeeded is stored."""
import json
import subprocess
import threading
import time

from api_client import Client
from conftest import start_server

OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
HOLD = 4.0


class AdminTransaction:
    """sqlite3 in BEGIN IMMEDIATE with one write, until commit()."""

    def __init__(self, db):
        self.process = subprocess.Popen(["sqlite3", "-batch", str(db)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # .timeout as admins use it (docs/admin.md): the server's own short writes (presence,
        # purges, viewer rows) may hold the lock for a moment when the CLI asks for it.
        self.process.stdin.write(".timeout 5000\n"
                                 "BEGIN IMMEDIATE;\n"
                                 "INSERT INTO audit_log (at, actor, action) VALUES (0, 'cli', 'admin.hold');\n"
                                 "SELECT 'held';\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline().strip() == "held"
        self.taken = time.monotonic()

    def commit(self):
        out, err = self.process.communicate("COMMIT;\n", timeout=10)
        assert self.process.returncode == 0, err
        return time.monotonic()


def in_background(work):
    result = {}

    def run():
        started = time.monotonic()
        result["value"] = work()
        result["took"] = time.monotonic() - started
    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def health_times_during(server, until):
    times = []
    client = Client(server.base_url, timeout=10)
    while time.monotonic() < until:
        started = time.monotonic()
        status = client.request("GET", "/healthz")[0]
        times.append(time.monotonic() - started)
        assert status == 200
        time.sleep(0.2)
    return times


def login(server, peer_id, key):
    return Client(server.base_url, timeout=30).request(
        "POST", "/v1/login", json.dumps({"peer_id": peer_id, "key": key}), {"Content-Type": "application/json"})


def peers(sb):
    alice = sb.ok("peer", "add", "alice", "--group", "home").stdout.strip()
    sb.ok("peer", "add", "bob", "--group", "home")
    return alice


def test_a_held_lock_slows_only_writes_and_they_complete_when_it_goes(sb):
    key = peers(sb)
    server = start_server(sb, "--write-timeout", "10")
    try:
        caller = Client(server.base_url).login("alice", key)
        admin = AdminTransaction(sb.db)
        logging_in, login_result = in_background(lambda: login(server, "alice", key))
        offering, offer_result = in_background(lambda: caller.request(
            "POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp"}))
        times = health_times_during(server, admin.taken + HOLD - 0.3)
        released = admin.commit()
        logging_in.join(15)
        offering.join(15)

        assert len(times) >= 10 and max(times) < 0.050, times
        status, _, _, body = login_result["value"]
        assert status == 200, body
        assert offer_result["value"][0] == 201, offer_result["value"]
        # They finished once the lock went, not before.
        assert time.monotonic() - released < 2 and login_result["took"] > HOLD - 1
        token = json.loads(body)["token"]
        assert Client(server.base_url, token=token).request("GET", "/v1/ice-servers")[0] == 200
        session = offer_result["value"][1]["Location"].rsplit("/", 1)[1]
        assert sb.sql(f"select state from sessions where id = '{session}';") == "offered\n"
        assert sb.sql("select count(*) from audit_log where action = 'admin.hold';") == "1\n"
    finally:
        assert server.stop() == 0


def test_a_lock_held_past_the_write_timeout_gets_503_with_retry_after(sb):
    key = peers(sb)
    server = start_server(sb, "--write-timeout", "1")
    try:
        caller = Client(server.base_url).login("alice", key)
        sessions_before = sb.sql("select count(*) from sessions;")
        admin = AdminTransaction(sb.db)
        logging_in, login_result = in_background(lambda: login(server, "alice", key))
        offering, offer_result = in_background(lambda: caller.request(
            "POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp"}))
        times = health_times_during(server, admin.taken + HOLD - 0.3)
        logging_in.join(15)
        offering.join(15)
        admin.commit()

        assert len(times) >= 10 and max(times) < 0.050, times
        for result in (login_result, offer_result):
            status, headers, _, body = result["value"]
            assert status == 503, body
            assert headers["Content-Type"] == "application/problem+json"
            assert int(headers["Retry-After"]) >= 1
            assert json.loads(body)["status"] == 503
            assert 0.9 < result["took"] < 2.5
        # Refused means not stored; once the lock is gone the same requests go through.
        assert sb.sql("select count(*) from sessions;") == sessions_before
        assert login(server, "alice", key)[0] == 200
        assert caller.request("POST", "/v1/peers/bob/sessions", OFFER, {"Content-Type": "application/sdp"})[0] == 201
    finally:
        assert server.stop() == 0
