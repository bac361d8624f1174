"""Many streams over one peer connection between two agents on loopback: 100 TCP connections at
once (1 MiB each), 256 held open at once through `agent connect` to an echo service behind `agent expose`, each checked with
SHA-256; a reader that stops reading for a while: its writer is slowed, the agents' memory stays
bounded and the other streams complete; connections cut abruptly on either side without harming the
peer connection."""
import hashlib
import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN, clean_env, free_port, start_server


# Bytes each of the hundred concurrent streams moves (the 10 MB with SIZE=10000000).
SIZE = int(os.environ.get("SWITCHBOARD_STREAM_BYTES", 1 << 20))


def echo_server():
    """A threaded echo service that honours half-close (what it got back, then EOF)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(512)

    def serve(connection):
        with connection:
            try:
                while True:
                    data = connection.recv(65536)
                    if not data:
                        connection.shutdown(socket.SHUT_WR)
                        return
                    connection.sendall(data)
            except OSError:
                return

    def accept():
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener


def exchange(port, payload, timeout=60, read_after=None):
    """Sends payload, half-closes, reads everything back; returns the SHA-256 of what came back.
    With `read_after` (an Event), nothing is read until it is set (at most 120 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as client:
        writer = threading.Thread(target=lambda: (client.sendall(payload), client.shutdown(socket.SHUT_WR)))
        writer.start()
        if read_after is not None:
            read_after.wait(timeout=120)
        digest, total = hashlib.sha256(), 0
        while True:
            chunk = client.recv(262144)
            if not chunk:
                break
            digest.update(chunk)
            total += len(chunk)
        writer.join()
        return digest.hexdigest(), total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.fixture
def tunnel(sb, tmp_path):
    keys = {}
    for peer in ("alice", "bob"):
        keys[peer] = tmp_path / f"{peer}.key"
        keys[peer].write_text(sb.ok("peer", "add", peer, "--group", "lab").stdout.strip())
    server = start_server(sb, "--allowed-peer", "127.0.0.0/8")
    echo = echo_server()
    common = ["--server", server.base_url, "--host-address", "127.0.0.1"]
    exposer = subprocess.Popen([str(BIN), "agent", "expose", *common, "--peer-id", "bob", "--key-file", str(keys["bob"]),
                                "--service", f"echo=127.0.0.1:{echo.getsockname()[1]}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    time.sleep(1.0)
    port = free_port(socket.SOCK_STREAM)
    connector = subprocess.Popen([str(BIN), "agent", "connect", *common, "--peer-id", "alice", "--key-file",
                                  str(keys["alice"]), "bob", "--listen", f"127.0.0.1:{port}", "--service", "echo"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
    assert connector.stdout.readline().startswith("listening"), connector.stderr.read()
    yield port, connector, exposer
    for process in (connector, exposer):
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    echo.close()
    server.stop()


def test_a_hundred_concurrent_streams_each_arrive_intact(tunnel):
    port, connector, exposer = tunnel
    # The first stream makes the peer connection; the hundred share it.
    assert exchange(port, b"warm-up")[1] == 7
    # Each stream has its own window between the agents (docs/agent.md, flow control): with
    # the association's window alone, 2 of 100 streams of 1 MiB once stalled here.
    size = SIZE
    payloads = [os.urandom(size) for _ in range(100)]
    results = [None] * 100

    def run(index):
        results[index] = exchange(port, payloads[index])

    threads = [threading.Thread(target=run, args=(index,)) for index in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    for index, payload in enumerate(payloads):
        assert results[index] == (hashlib.sha256(payload).hexdigest(), size), index
    # One peer connection for all of them.
    assert connector.poll() is None and exposer.poll() is None


def test_two_hundred_fifty_six_streams_open_at_once_on_one_peer_connection(tunnel):
    """256 TCP connections held open at the same time (each one's echo read back only after
    all of them were connected), on one peer connection: 256 data channels at once."""
    port, connector, exposer = tunnel
    assert exchange(port, b"warm-up")[1] == 7
    clients = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(256)]
    try:
        payloads = [os.urandom(16384) for _ in clients]
        for client, payload in zip(clients, payloads):
            client.sendall(payload)
        for index, (client, payload) in enumerate(zip(clients, payloads)):
            received = b""
            while len(received) < len(payload):
                chunk = client.recv(65536)
                assert chunk, index
                received += chunk
            assert received == payload, index
    finally:
        for client in clients:
            client.close()
    assert connector.poll() is None and exposer.poll() is None


def test_a_slow_reader_slows_its_writer_and_memory_stays_bounded(tunnel):
    port, connector, exposer = tunnel
    assert exchange(port, b"warm-up")[1] == 7
    before = rss_kib(connector.pid), rss_kib(exposer.pid)
    payload = os.urandom(1 << 20) * 24
    slow = {}
    # The slow reader reads nothing until the other streams are done, and for 6 s at least.
    wake = threading.Event()
    slow_started = time.monotonic()
    slow_thread = threading.Thread(target=lambda: slow.update(result=exchange(port, payload, read_after=wake)))
    slow_thread.start()
    time.sleep(1.0)
    # Meanwhile other streams go through, each moving more than the association's whole receive
    # window (1 MiB), while the slow reader has not read a byte. Per-stream windows: the stalled
    # stream holds up only its own writer (with the association's window alone, these waited
    # for the slow reader, which waits for them: their 20 s socket timeout fails the test).
    try:
        for _ in range(5):
            other = os.urandom(1 << 20) * 2
            assert exchange(port, other, timeout=20) == (hashlib.sha256(other).hexdigest(), len(other))
    finally:
        time.sleep(max(0.0, 6.0 - (time.monotonic() - slow_started)))
        wake.set()
    slow_thread.join(timeout=120)
    assert slow["result"] == (hashlib.sha256(payload).hexdigest(), len(payload))
    after = rss_kib(connector.pid), rss_kib(exposer.pid)
    # 24 MiB went through a reader that waited at least 6 s: neither agent held it all.
    assert after[0] - before[0] < 16 * 1024 and after[1] - before[1] < 16 * 1024, (before, after)


def test_streams_cut_abruptly_leave_the_peer_connection_working(tunnel):
    port, connector, exposer = tunnel
    assert exchange(port, b"warm-up")[1] == 7
    for _ in range(10):
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.sendall(os.urandom(200_000))
        # RST instead of FIN: SO_LINGER 0, then close.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        client.close()
    time.sleep(0.5)
    payload = os.urandom(300_000)
    assert exchange(port, payload) == (hashlib.sha256(payload).hexdigest(), len(payload))
    assert connector.poll() is None and exposer.poll() is None
