"""docs/openapi.yaml against the running server: schemathesis (PyPI) generates requests from
it and checks every response (no 5xx, declared status codes, content types, headers and
schemas, bad input refused, auth not ignored, 405 for other methods, deleted sessions gone);
the event stream, which schemathesis cannot drive, is checked against the same schemas here."""
import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import ROOT, free_port, start_server
from api_client import Client
from test_signaling import ANSWER, FRAG, OFFER, SSE

SPEC = ROOT / "docs" / "openapi.yaml"
ST = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "st"


@pytest.fixture
def api(sb):
    alice = sb.ok("peer", "add", "alice", "--group", "home").stdout.strip()
    bob = sb.ok("peer", "add", "bob", "--group", "home").stdout.strip()
    sb.ok("stream", "add", "cam", "--video-port", str(free_port()))  # registered, silent: WHEP answers 409
    server = start_server(sb)
    yield server, Client(server.base_url).login("alice", alice), Client(server.base_url).login("bob", bob)
    server.stop()


def test_the_served_document_is_the_one_in_docs(api):
    server, _, _ = api
    status, headers, body = server.get("/openapi.yaml")
    assert status == 200 and headers["Content-Type"] == "application/yaml"
    assert body == SPEC.read_text()


def test_schemathesis_finds_no_failure(api, tmp_path):
    server, alice, _ = api
    env = dict(os.environ, SCHEMATHESIS_HOOKS="schemathesis_hooks", PYTHONPATH=str(Path(__file__).parent))
    result = subprocess.run(
        [str(ST), "--config-file", str(Path(__file__).with_name("schemathesis.toml")), "run", server.base_url + "/openapi.yaml", "--url", server.base_url,
         "-H", f"Authorization: Bearer {alice.token}",
         "--checks", "all", "--max-examples", "50", "--workers", "1", "--request-timeout", "10",
         "--no-color", "--report", "junit", "--report-dir", str(tmp_path),
         # Streams (SSE, WebSocket) never end, and logout would revoke the token mid-run:
         # these are covered below and in test_signaling.py / test_login.py.
         "--exclude-path", "/v1/events", "--exclude-path", "/v1/ws", "--exclude-path", "/v1/logout"],
        capture_output=True, text=True, env=env, timeout=600)
    tail = result.stdout[-6000:]
    assert result.returncode == 0, tail
    assert " passed" in tail and "failure" not in tail.split("SUMMARY")[-1].lower(), tail
    # It really exercised the API: the operations were tested, not skipped.
    assert "Tested: 15" in tail or "Tested: 16" in tail, tail


def schema(name):
    document = yaml.safe_load(SPEC.read_text())
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", **document})


def test_events_and_their_problems_match_the_schema(api):
    server, alice, bob = api
    stream = SSE(bob)
    status, headers, _, body = alice.request(
        "POST", "/v1/peers/bob/sessions", OFFER,
        {"Content-Type": "application/sdp", "Switchboard-Connect-Desc": "schema"})
    assert status == 201
    schema("Session").validate(json.loads(body))
    location = headers["location"]
    assert bob.request("PATCH", location, ANSWER, {"Content-Type": "application/sdp"})[0] == 204
    assert bob.request("PATCH", location, FRAG, {"Content-Type": "application/trickle-ice-sdpfrag"})[0] == 204
    assert bob.request("DELETE", location)[0] == 204
    # The caller's long-poll: answer, candidates, closed, each a schema-valid Event.
    events = json.loads(alice.request("GET", "/v1/events?after=0&wait=5")[3])
    assert [e["type"] for e in events] == ["answer", "candidates", "closed"]
    for event in events:
        schema("Event").validate(event)
    # The callee's SSE stream carries the same shapes.
    (event_id, kind, data), = stream.wait_for(1)
    schema("Event").validate({"id": event_id, "type": kind, "data": data})
    schema("OfferEvent").validate(data)
    stream.close()
    # And errors are problem documents.
    for path in ["/v1/events?after=x", "/v1/events?wait=61"]:
        status, headers, _, body = alice.request("GET", path)
        assert status == 400 and headers["content-type"] == "application/problem+json"
        schema("Problem").validate(json.loads(body))
