"""Peer login over HTTP, and the TURN credentials it hands out working on the relay
(aioice as the client), the way a peer agent will use them."""
import asyncio
import json

from aioice.turn import create_turn_endpoint

from api_client import Client
from conftest import start_server


def test_login_then_relay_with_the_ice_servers_it_returns(sb):
    key = sb.ok("peer", "add", "cam-1", "--group", "cams").stdout.strip()
    server = start_server(sb, "--allowed-peer", "127.0.0.0/8")
    try:
        client = Client(server.base_url)
        status, _, _, body = client.request("POST", "/v1/login", json.dumps({"peer_id": "cam-1", "key": key}),
                                            {"Content-Type": "application/json"})
        assert status == 200, body
        login = json.loads(body)
        turn_host, turn_port = server.turn[0].rsplit(":", 1)
        urls = [url for entry in login["ice_servers"] for url in entry["urls"]]
        assert f"stun:{turn_host}:{turn_port}" in urls
        assert f"turn:{turn_host}:{turn_port}?transport=udp" in urls
        turn = next(entry for entry in login["ice_servers"] if "username" in entry)
        assert turn["username"].endswith(":cam-1")

        client.token = login["token"]
        status, _, _, body = client.request("GET", "/v1/ice-servers")
        assert status == 200 and json.loads(body)[-1]["username"].endswith(":cam-1")

        async def allocate():
            transport, _ = await asyncio.wait_for(create_turn_endpoint(
                asyncio.DatagramProtocol, server_addr=(turn_host, int(turn_port)),
                username=turn["username"], password=turn["credential"], transport="udp"), 10)
            relayed = transport.get_extra_info("sockname")
            transport.close()
            await asyncio.sleep(0.2)
            return relayed
        relayed = asyncio.run(allocate())
        assert relayed[0] == "127.0.0.1"

        assert sb.sql("select action, peer_id from audit_log where action like 'login%';") == "login.ok|cam-1\n"
        assert sb.sql("select last_login is not null from peers_overview where id = 'cam-1';") == "1\n"
        assert key not in sb.dump() and login["token"] not in sb.dump()

        assert client.request("POST", "/v1/logout", b"")[0] == 204
        assert client.request("GET", "/v1/ice-servers")[0] == 401
    finally:
        assert server.stop() == 0


def test_failed_logins_are_refused_audited_and_limited(sb):
    sb.ok("peer", "add", "cam-2")
    server = start_server(sb)
    try:
        client = Client(server.base_url)
        statuses = []
        for _ in range(22):
            status, headers, _, body = client.request("POST", "/v1/login", json.dumps({"peer_id": "cam-2", "key": "guess"}),
                                                      {"Content-Type": "application/json"})
            statuses.append(status)
            assert headers["Content-Type"] == "application/problem+json"
        # 20 failures from one address, then that address waits (see test_login_limits.py).
        assert statuses[:20] == [401] * 20 and statuses[20:] == [429, 429]
        assert sb.sql("select count(*) from login_failures_24h where peer_id = 'cam-2';") != "0\n"
        assert sb.sql("select failures from login_failures_24h;") == "20\n"
        status = client.request("POST", "/v1/login", "peer_id=cam-2",
                                {"Content-Type": "application/x-www-form-urlencoded"})[0]
        assert status == 415
    finally:
        assert server.stop() == 0
