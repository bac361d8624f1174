"""Login limits over real HTTP from several loopback source addresses: wrong keys for a
peer from many addresses never lock the peer out, and only the source that keeps failing
is throttled (429 + Retry-After), not its neighbours."""
import json

from api_client import Client
from conftest import start_server


def login(server, source, peer_id, key):
    client = Client(server.base_url, source=source, timeout=10)
    return client.request("POST", "/v1/login", json.dumps({"peer_id": peer_id, "key": key}),
                          {"Content-Type": "application/json"})


def test_wrong_keys_from_many_addresses_do_not_lock_the_peer_out(sb):
    key = sb.ok("peer", "add", "alice").stdout.strip()
    server = start_server(sb)
    try:
        for n in range(2, 14):
            status, headers, _, _ = login(server, f"127.0.0.{n}", "alice", f"wrong-{n}")
            assert status == 401
            assert headers["Content-Type"] == "application/problem+json"
        status, _, _, body = login(server, "127.0.0.99", "alice", key)
        assert status == 200, body
        assert len(json.loads(body)["token"]) == 43
        # Audited per (peer, source): twelve addresses, one failure each.
        assert sb.sql("select count(*), sum(failures) from login_failures_24h where peer_id = 'alice';") == "12|12\n"
    finally:
        assert server.stop() == 0


def test_a_failing_source_is_throttled_and_its_neighbours_are_not(sb):
    key = sb.ok("peer", "add", "alice").stdout.strip()
    sb.ok("peer", "add", "bob")
    server = start_server(sb)
    try:
        statuses = [login(server, "127.0.0.2", "bob", "guess")[0] for _ in range(20)]
        assert statuses == [401] * 20
        status, headers, _, body = login(server, "127.0.0.2", "bob", "guess")
        assert status == 429
        assert headers["Content-Type"] == "application/problem+json"
        assert 1 <= int(headers["Retry-After"]) <= 5
        assert json.loads(body)["status"] == 429
        # Its own source is throttled whatever key it sends...
        assert login(server, "127.0.0.2", "alice", key)[0] == 429
        # ...while another address fails and succeeds as usual.
        assert login(server, "127.0.0.3", "bob", "guess")[0] == 401
        assert login(server, "127.0.0.3", "alice", key)[0] == 200
    finally:
        assert server.stop() == 0
