"""An exposing agent bounds the peer connections it holds: past --max-per-peer from one peer ID
(or --max-peer-connections in all) an offer is hung up at once, the refused caller says so, and
other peers still connect."""
import socket
import subprocess
import sys
import time

from conftest import BIN, clean_env, free_port, start_server


def agent(server, key_file, peer, *argv):
    return subprocess.Popen([str(BIN), "agent", argv[0], "--server", server.base_url, "--peer-id", peer,
                             "--key-file", str(key_file), "--host-address", "127.0.0.1", *argv[1:]],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())


def fetch(port):
    with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
        client.sendall(b"GET /hello.txt HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer.decode(errors="replace")


def line(process, prefix, timeout=20):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        text = process.stdout.readline()
        if not text:
            break
        seen.append(text.strip())
        if text.startswith(prefix):
            return text.strip()
    raise AssertionError(f"no {prefix!r} line: {seen}")


def test_offers_past_the_per_peer_limit_are_hung_up_and_other_peers_still_connect(sb, tmp_path):
    keys = {}
    for peer in ("alice", "carol", "bob"):
        keys[peer] = tmp_path / f"{peer}.key"
        keys[peer].write_text(sb.ok("peer", "add", peer, "--group", "lab").stdout.strip())
    server = start_server(sb, "--allowed-peer", "127.0.0.0/8")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hello within the limits\n")
    web_port = free_port(socket.SOCK_STREAM)
    processes = [subprocess.Popen([sys.executable, "-m", "http.server", str(web_port), "--bind", "127.0.0.1",
                                   "--directory", str(tmp_path / "www")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        exposer = agent(server, keys["bob"], "bob", "expose", "--service", f"http=127.0.0.1:{web_port}",
                        "--max-per-peer", "1")
        processes.append(exposer)
        time.sleep(1.0)
        ports = {}
        connectors = {}
        for name, peer in (("first", "alice"), ("second", "alice"), ("other", "carol")):
            ports[name] = free_port(socket.SOCK_STREAM)
            connectors[name] = agent(server, keys[peer], peer, "connect", "bob", "--listen",
                                     f"127.0.0.1:{ports[name]}", "--service", "http")
            processes.append(connectors[name])
            assert line(connectors[name], "listening").startswith("listening")
        # alice's first agent holds its one peer connection; her second is turned away.
        assert "hello within the limits" in fetch(ports["first"])
        assert line(connectors["first"], "connected bob")
        refused = fetch(ports["second"])
        assert "hello" not in refused
        assert "hung up" in line(connectors["second"], "disconnected bob")
        # Another peer is not affected, and alice's first connection still works.
        assert "hello within the limits" in fetch(ports["other"])
        assert "hello within the limits" in fetch(ports["first"])
        assert exposer.poll() is None
        exposer.terminate()
        _, errors = exposer.communicate(timeout=15)
        assert "offer refused: too many peer connections" in errors and "from=alice" in errors, errors[-2000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        server.stop()
