"""Crash safety: signaling at a steady rate, `kill -9` in the middle of it, a restart on the
same data directory. Whatever the server acknowledged (201 for an offer, 204 for an answer)
is there afterwards, with the events it promised to deliver, and SQLite's integrity check
passes."""
import json
import threading
import time

from api_client import Client
from conftest import start_server

OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
ANSWER = OFFER.replace("o=- 1 1", "o=- 2 1")


def all_events(client):
    """Every event waiting for `client`, page by page (each page acknowledges the last)."""
    events, cursor = [], 0
    for _ in range(1000):
        status, _, _, body = client.request("GET", f"/v1/events?after={cursor}&wait=0")
        assert status == 200, body
        page = json.loads(body)
        if not page:
            return events
        events += page
        cursor = page[-1]["id"]
    raise AssertionError("events did not end")


def test_kill_9_mid_flight_loses_nothing_acknowledged(sb):
    alice_key = sb.ok("peer", "add", "alice", "--group", "home").stdout.strip()
    bob_key = sb.ok("peer", "add", "bob", "--group", "home").stdout.strip()
    server = start_server(sb, "--offer-ttl", "600", "--sessions-per-minute", "100000")
    alice = Client(server.base_url, timeout=5).login("alice", alice_key)
    bob = Client(server.base_url, timeout=5).login("bob", bob_key)

    offered, answered = [], []  # acknowledged by the server
    lock = threading.Lock()
    stop = threading.Event()

    def offers():
        while not stop.is_set():
            try:
                status, headers, _, _ = alice.request("POST", "/v1/peers/bob/sessions", OFFER,
                                                      {"Content-Type": "application/sdp"})
            except OSError:
                return  # the server is gone
            if status == 201:
                with lock:
                    offered.append(headers["Location"].rsplit("/", 1)[1])
            time.sleep(0.005)

    def answers():
        done = 0
        while not stop.is_set():
            with lock:
                waiting = offered[done:]
            if not waiting:
                time.sleep(0.005)
                continue
            session = waiting[0]
            try:
                status, _, _, _ = bob.request("PATCH", f"/v1/sessions/{session}", ANSWER,
                                              {"Content-Type": "application/sdp", "If-Match": '"1"'})
            except OSError:
                return
            if status == 204:
                with lock:
                    answered.append(session)
            done += 1

    threads = [threading.Thread(target=offers), threading.Thread(target=offers), threading.Thread(target=answers)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(answered) < 300 and time.monotonic() < deadline:  # steady traffic, well under way
        time.sleep(0.1)
    server.process.kill()  # SIGKILL, mid-flight
    server.process.wait()
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    assert len(offered) >= 300 and len(answered) >= 300, (len(offered), len(answered))

    assert sb.sql("PRAGMA integrity_check;").strip() == "ok"
    restarted = start_server(sb, "--offer-ttl", "600")
    try:
        states = dict(line.split("|") for line in sb.sql("SELECT id, state FROM sessions;").split())
        missing = [session for session in offered if session not in states]
        assert not missing, f"{len(missing)} acknowledged offers lost, e.g. {missing[:3]}"
        unanswered = [session for session in answered if states[session] != "answered"]
        assert not unanswered, f"{len(unanswered)} acknowledged answers lost, e.g. {unanswered[:3]}"

        # The events promised with each acknowledgement: bob's offers, alice's answers.
        alice.port = bob.port = int(restarted.base_url.rsplit(":", 1)[1])
        offers_seen = {event["data"]["session"] for event in all_events(bob) if event["type"] == "offer"}
        answers_seen = {event["data"]["session"] for event in all_events(alice) if event["type"] == "answer"}
        assert set(offered) <= offers_seen, f"{len(set(offered) - offers_seen)} offer events lost"
        assert set(answered) <= answers_seen, f"{len(set(answered) - answers_seen)} answer events lost"
        assert sb.sql("PRAGMA integrity_check;").strip() == "ok"
    finally:
        restarted.process.kill()
        restarted.process.wait()
