"""Another WebRTC stack as a peer of the agent: aiortc (aiortc_tunnel_peer.py) speaks the
tunnel protocol of docs/agent.md on a plain data channel. An aiortc peer offers a channel to an
exposing agent and gets an HTTP answer from the service behind it; a connecting agent carries a
TCP connection to an aiortc peer that answers and echoes it back upper-cased, with half-close
both ways."""
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import free_port
from loopback_agents import LoopbackAgents, wait_line

TUNNEL_PEER = Path(__file__).with_name("aiortc_tunnel_peer.py")


@pytest.fixture
def lab(sb, tmp_path):
    with LoopbackAgents(sb, tmp_path) as lab:
        yield lab


def test_an_aiortc_peer_sends_an_http_request_through_an_exposing_agent(lab):
    port = lab.web("hello from the exposed service\n")
    exposer = lab.agent("bob", "expose", "--service", f"http=127.0.0.1:{port}")
    time.sleep(1.0)  # logged in, event stream held, web server up
    result = subprocess.run([sys.executable, str(TUNNEL_PEER), "--base-url", lab.server.base_url, "--peer", "carol",
                             f"--key={lab.key('carol')}", "--role", "offer", "--target", "bob",
                             "--service", "http", "--request", "GET /hello.txt HTTP/1.0\r\n\r\n"],
                            capture_output=True, text=True, timeout=90)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"], (report, result.stderr[-2000:])
    assert report["answer"].startswith("HTTP/1.0 200"), report
    assert report["answer"].endswith("hello from the exposed service\n"), report
    line = wait_line(exposer, "connected carol")
    assert "path=direct" in line

    # An unknown service is refused with a reason aiortc reads from the channel.
    result = subprocess.run([sys.executable, str(TUNNEL_PEER), "--base-url", lab.server.base_url, "--peer", "carol",
                             f"--key={lab.key('carol')}", "--role", "offer", "--target", "bob",
                             "--service", "ssh"], capture_output=True, text=True, timeout=90)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] and report.get("refused") == "unknown service ssh", report


def test_a_connecting_agent_reaches_an_aiortc_peer_that_answers(lab):
    answerer = subprocess.Popen([sys.executable, str(TUNNEL_PEER), "--base-url", lab.server.base_url, "--peer", "carol",
                                 f"--key={lab.key('carol')}", "--role", "answer"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lab.processes.append(answerer)
    time.sleep(1.0)
    port = free_port(socket.SOCK_STREAM)
    connector = lab.agent("alice", "connect", "carol", "--listen", f"127.0.0.1:{port}", "--service", "echo")
    wait_line(connector, "listening")
    payload = b"hello through a data channel\n" * 1000
    with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)  # half-close: the echo still comes back
        received = b""
        while True:
            chunk = client.recv(65536)
            if not chunk:
                break
            received += chunk
    assert received == payload.upper()
    line = wait_line(connector, "connected carol")
    assert "path=direct" in line
    out, err = answerer.communicate(timeout=40)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["ok"], (report, err[-2000:])
    assert report["streams"] == [{"label": "echo", "protocol": "switchboard-tcp", "bytes": len(payload)}], report


def test_a_peer_that_sends_past_its_credit_loses_that_stream_and_nothing_else(lab):
    """A broken agent (aiortc, claiming per-stream credit in its offer) floods 8 MiB on one
    stream to a service that reads nothing, never waiting for a grant: the exposing agent
    holds at most the window for that stream, then closes it; a new stream on the same peer
    connection still gets its HTTP answer, and the agent stays up."""
    port = lab.web("hello after the flood\n")
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(4)  # accepts (the kernel does) and never reads
    exposer = lab.agent("bob", "expose", "--service", f"http=127.0.0.1:{port}",
                        "--service", f"sink=127.0.0.1:{sink.getsockname()[1]}")
    time.sleep(1.0)
    result = subprocess.run([sys.executable, str(TUNNEL_PEER), "--base-url", lab.server.base_url, "--peer", "carol",
                             f"--key={lab.key('carol')}", "--role", "offer", "--target", "bob",
                             "--service", "http", "--request", "GET /hello.txt HTTP/1.0\r\n\r\n",
                             "--flood", str(8 << 20), "--flood-service", "sink"],
                            capture_output=True, text=True, timeout=120)
    sink.close()
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"], (report, result.stderr[-2000:])
    assert report["flood_closed"], report
    assert "hello after the flood" in report["answer"], report
    assert exposer.poll() is None
    exposer.terminate()
    _, errors = exposer.communicate(timeout=15)
    # Closed for breaking the credit rules, not for anything else.
    assert "the peer broke its flow control" in errors and "past its credit" in errors, errors[-2000:]
