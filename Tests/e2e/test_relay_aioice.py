"""The TURN relay with aioice's TURN client (PyPI), the one aiortc uses: allocate, send to
an echo peer through the relay, get the echo back; then the usage row in SQLite."""
import asyncio
import json
import subprocess
import time

import pytest
from aioice.turn import create_turn_endpoint

from conftest import start_server


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class Collector(asyncio.DatagramProtocol):
    def __init__(self):
        self.received = asyncio.Queue()

    def datagram_received(self, data, addr):
        self.received.put_nowait((data, addr))


async def relay_round_trips(turn_host, turn_port, username, password, transport, count=20):
    loop = asyncio.get_running_loop()
    echo_transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    peer = echo_transport.get_extra_info("sockname")
    relay_transport, collector = await asyncio.wait_for(create_turn_endpoint(
        Collector, server_addr=(turn_host, turn_port), username=username, password=password,
        transport=transport, channel_refresh_time=300), 10)
    relayed = relay_transport.get_extra_info("sockname")
    echoes = []
    try:
        for index in range(count):
            payload = f"packet {index} ".encode() * 10
            relay_transport.sendto(payload, peer)
            data, addr = await asyncio.wait_for(collector.received.get(), 5)
            echoes.append((data == payload, addr))
    finally:
        relay_transport.close()
        echo_transport.close()
        await asyncio.sleep(0.3)  # let the Refresh with lifetime 0 go out
    return relayed, peer, echoes


def credential(sb, name="aioice"):
    return json.loads(sb.ok("turn-credential", name, "--ttl", "600", "--json").stdout)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_aioice_allocates_and_relays_to_an_echo_peer(sb, transport):
    server = start_server(sb, "--allowed-peer", "127.0.0.0/8")
    try:
        host, port = server.turn[0].rsplit(":", 1)
        cred = credential(sb)
        relayed, peer, echoes = asyncio.run(
            relay_round_trips(host, int(port), cred["username"], cred["password"], transport))
        assert relayed[0] == "127.0.0.1"
        assert len(echoes) == 20 and all(ok for ok, _ in echoes)
        assert all(addr == peer for _, addr in echoes)

        # The allocation ended (Refresh lifetime 0): its usage row reaches SQLite within seconds.
        row = ""
        for _ in range(50):
            row = sb.sql("select username, client_transport, relayed_address, end_reason, packets_to_peer, "
                         "packets_to_client, bytes_to_peer = bytes_to_client from relay_usage;")
            if row:
                break
            time.sleep(0.1)
        fields = row.strip().split("|")
        assert fields[0] == cred["username"] and fields[1] == transport
        assert fields[2] == f"127.0.0.1:{relayed[1]}"
        assert fields[3] == "refresh-0"
        # aioice binds a channel after its first Send indication; every packet is counted either way.
        assert int(fields[4]) == 20 and int(fields[5]) == 20 and fields[6] == "1"
        assert sb.sql("select count(*) from relay_allocations;") == "0\n"
        assert sb.sql("select allocations from relay_usage_by_user;") == "1\n"
    finally:
        assert server.stop() == 0


def test_wrong_credentials_get_no_allocation(sb):
    server = start_server(sb, "--allowed-peer", "127.0.0.0/8")
    try:
        host, port = server.turn[0].rsplit(":", 1)
        cred = credential(sb)

        async def attempt():
            return await create_turn_endpoint(asyncio.DatagramProtocol, server_addr=(host, int(port)),
                                              username=cred["username"], password="wrong", transport="udp")
        with pytest.raises(Exception) as failure:
            asyncio.run(asyncio.wait_for(attempt(), 10))
        assert "401" in str(failure.value)
        assert sb.sql("select count(*) from relay_usage;") == "0\n"
    finally:
        assert server.stop() == 0


def test_an_expired_rest_credential_is_refused(sb):
    server = start_server(sb, "--allowed-peer", "127.0.0.0/8")
    try:
        host, port = server.turn[0].rsplit(":", 1)
        import base64, hashlib, hmac
        secret = (sb.data_dir / "turn-secret").read_text().strip()
        username = f"{int(time.time()) - 10}:late"
        password = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()

        async def attempt():
            return await create_turn_endpoint(asyncio.DatagramProtocol, server_addr=(host, int(port)),
                                              username=username, password=password, transport="udp")
        with pytest.raises(Exception) as failure:
            asyncio.run(asyncio.wait_for(attempt(), 10))
        assert "401" in str(failure.value)
    finally:
        assert server.stop() == 0


def test_sigterm_drains_then_records_the_allocation_as_shutdown(sb):
    server = start_server(sb, "--allowed-peer", "127.0.0.0/8", "--drain-seconds", "2")
    host, port = server.turn[0].rsplit(":", 1)
    cred = credential(sb)

    async def hold_then_try_again():
        allocation, _ = await create_turn_endpoint(
            asyncio.DatagramProtocol, server_addr=(host, int(port)), username=cred["username"],
            password=cred["password"], transport="udp")
        server.process.send_signal(15)
        await asyncio.sleep(0.5)
        # Draining: a new allocation is refused with 508 while the old one still lives.
        try:
            await create_turn_endpoint(asyncio.DatagramProtocol, server_addr=(host, int(port)),
                                       username=cred["username"], password=cred["password"], transport="udp")
            refused = None
        except Exception as error:  # aioice raises TransactionFailed
            refused = str(error)
        return refused

    refused = asyncio.run(asyncio.wait_for(hold_then_try_again(), 20))
    assert refused is not None and "508" in refused
    started = time.monotonic()
    assert server.process.wait(timeout=15) == 0
    assert time.monotonic() - started < 10
    assert sb.sql("select end_reason from relay_usage;") == "shutdown\n"
