"""The peer agent in the NAT lab: `switchboard agent expose` behind router B offers an HTTPS
server (`openssl s_server`) and a plain HTTP server; `switchboard agent connect` behind router A
listens on 127.0.0.1:8443 and curl, in A's namespace, reaches them by peer ID — directly behind
two home NATs, through Switchboard's relay behind symmetric ones or in relay mode, never in p2p
mode between symmetric NATs (a clear failure instead). Asserted from what the agent prints and
what the server recorded (relay usage rows)."""
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, clean_env
from natlab import SERVER, Lab, start_lab_server

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs Debian nftables (make test installs it)"),
]

BASE_URL = f"http://{SERVER}:8080"


class Agent:
    """A `switchboard agent …` process in a lab namespace; its stdout lines land in a queue."""

    def __init__(self, lab, side, key_file, *argv):
        self.process = subprocess.Popen(
            lab.argv(side, str(BIN), "agent", *argv[:1], "--server", BASE_URL, "--key-file", str(key_file),
                     *argv[1:]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
        self.lines = queue.Queue()
        self.seen = []
        self.errors = []
        threading.Thread(target=self._read, args=(self.process.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._collect, args=(self.process.stderr,), daemon=True).start()

    @staticmethod
    def _read(stream, lines):
        for line in stream:
            lines.put(line.rstrip("\n"))

    def _collect(self, stream):
        for line in stream:
            self.errors.append(line)

    def wait_for(self, prefix, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no {prefix!r} line; stdout: {self.seen}; stderr: {''.join(self.errors)[-3000:]}")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def drain(agent):
    """The lines an agent printed that nobody waited for yet."""
    lines = []
    while not agent.lines.empty():
        lines.append(agent.lines.get())
    return lines


def fields(line):
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


@pytest.fixture
def certificate(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=device-b"],
                   check=True, capture_output=True)
    return key, cert


def start_services(lab, certificate, tmp_path):
    """In B's namespace: openssl s_server -www on :4433 and Python's http.server on :8000."""
    key, cert = certificate
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hello from behind NAT B\n")
    https = subprocess.Popen(lab.argv("b", "openssl", "s_server", "-accept", "127.0.0.1:4433", "-www", "-key", str(key),
                                      "-cert", str(cert), "-quiet"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    http = subprocess.Popen(lab.argv("b", "python3", "-m", "http.server", "8000", "--bind", "127.0.0.1",
                                     "--directory", str(tmp_path / "www")),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return [https, http]


def curl(lab, url, timeout=20):
    return lab.exec("a", "curl", "-sk", "--max-time", str(timeout), url, check=False)


def relayed_packets(sb):
    return int(sb.sql("select coalesce(sum(packets_to_peer + packets_to_client), 0) from relay_usage;"))


class Scene:
    """A NAT lab with Switchboard on its WAN, the HTTPS and HTTP services behind B, peers alice
    and bob with key files; agents started through it are stopped on exit."""

    def __init__(self, sb, certificate, tmp_path, kinds, *server_args):
        self.sb, self.certificate, self.tmp_path = sb, certificate, tmp_path
        self.kinds, self.server_args = kinds, server_args
        self.keys, self.agents = {}, []

    def __enter__(self):
        for peer in ("alice", "bob"):
            self.keys[peer] = self.tmp_path / f"{peer}.key"
            self.keys[peer].write_text(self.sb.ok("peer", "add", peer, "--group", "lab").stdout.strip())
        self.lab = Lab(self.kinds).__enter__()
        try:
            self.server = start_lab_server(self.lab, self.sb, *self.server_args)
            self.services = start_services(self.lab, self.certificate, self.tmp_path)
        except BaseException:
            self.lab.close()
            raise
        return self

    def expose(self, *services, extra=()):
        argv = [arg for service in services for arg in ("--service", service)]
        agent = Agent(self.lab, "b", self.keys["bob"], "expose", "--peer-id", "bob", *argv, *extra)
        self.agents.append(agent)
        return agent

    def connect(self, *argv):
        agent = Agent(self.lab, "a", self.keys["alice"], "connect", "--peer-id", "alice", "bob",
                      "--listen", "127.0.0.1:8443", *argv)
        self.agents.append(agent)
        agent.wait_for("listening")
        time.sleep(0.5)  # the exposing agent logs in and holds its event stream
        return agent

    def __exit__(self, *_):
        for agent in self.agents:
            agent.stop()
        for process in self.services:
            process.terminate()
        self.server.terminate()
        self.server.wait(timeout=15)
        self.lab.close()


def expected_path(kind_a, kind_b, mode):
    """Direct between two home NATs (unless relay mode); a symmetric NAT on either side needs
    the relay, which p2p mode refuses."""
    if mode == "relay":
        return "relay"
    direct = kind_a == "home" and kind_b == "home"
    if mode == "p2p":
        return "direct" if direct else None
    return "direct" if direct else "relay"


@pytest.mark.parametrize("kind_a,kind_b,mode,path", [
    (a, b, mode, expected_path(a, b, mode))
    for a in ("home", "symmetric") for b in ("home", "symmetric") for mode in ("auto", "p2p", "relay")
])
def test_curl_reaches_a_service_behind_nat_by_peer_id(sb, certificate, tmp_path, kind_a, kind_b, mode, path):
    with Scene(sb, certificate, tmp_path, {"a": kind_a, "b": kind_b}) as scene:
        exposer = scene.expose("https=127.0.0.1:4433", "http=127.0.0.1:8000")
        connector = scene.connect("--service", "https", "--mode", mode)
        started = time.monotonic()
        page = curl(scene.lab, "https://127.0.0.1:8443/", timeout=15)
        if path is None:
            line = connector.wait_for("disconnected", timeout=15)
            assert "no direct path" in line, line
            assert time.monotonic() - started < 12
            assert "s_server" not in page.stdout
            return
        assert "s_server" in page.stdout, (page.stdout[-500:], page.stderr, connector.seen, exposer.seen,
                                           "".join(connector.errors)[-2000:], "".join(exposer.errors)[-2000:])
        line = connector.wait_for("connected bob")
        assert fields(line)["path"] == path, line
        answered = exposer.wait_for("connected alice")
        assert fields(answered)["path"] == path, answered
    # What the server saw: relayed bytes only when the path was the relay.
    packets = relayed_packets(sb)
    if path == "relay":
        assert packets > 10, packets
    else:
        assert packets < 40, packets


@pytest.mark.parametrize("kind_a,transport", [("udp-blocked", "tcp"), ("tls-only", "tls")])
def test_where_udp_is_blocked_the_agent_relays_over_turn_tcp_or_tls(sb, certificate, tmp_path, kind_a, transport):
    key, cert = certificate
    with Scene(sb, certificate, tmp_path, {"a": kind_a, "b": "home"}, "--turn-tls-listen", f"{SERVER}:5349",
               "--tls-cert", str(cert), "--tls-key", str(key)) as scene:
        scene.expose("https=127.0.0.1:4433")
        connector = scene.connect("--service", "https")
        page = curl(scene.lab, "https://127.0.0.1:8443/", timeout=20)
        assert "s_server" in page.stdout, (page.stderr, connector.seen, "".join(connector.errors)[-2000:])
        line = connector.wait_for("connected bob")
        assert fields(line)["path"] == "relay" and fields(line).get("relay") == transport, line


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_the_connecting_side_reports_a_restarted_exposing_agent_and_recovers(sb, certificate, tmp_path, stop):
    with Scene(sb, certificate, tmp_path, {"a": "home", "b": "home"}) as scene:
        exposer = scene.expose("https=127.0.0.1:4433")
        connector = scene.connect("--service", "https")
        assert "s_server" in curl(scene.lab, "https://127.0.0.1:8443/").stdout
        connector.wait_for("connected bob")

        # Stopped: politely (DTLS close_notify, seen at once) or killed (consent runs out).
        if stop == "sigterm":
            exposer.process.terminate()
        else:
            exposer.process.kill()
        exposer.process.wait(timeout=10)
        started = time.monotonic()
        line = connector.wait_for("disconnected bob", timeout=30)
        waited = time.monotonic() - started
        assert waited < (3 if stop == "sigterm" else 25), (line, waited)

        # A new exposing agent; the next connection makes a new peer connection to it.
        scene.expose("https=127.0.0.1:4433")
        time.sleep(1.0)
        assert "s_server" in curl(scene.lab, "https://127.0.0.1:8443/").stdout, connector.seen
        assert fields(connector.wait_for("connected bob"))["path"] == "direct"


PACED = str(Path(__file__).parent / "paced_stream.py")


class PacedTransfer:
    """15 MiB from a paced source behind B (one 64 KiB block every 25 ms: about 6 s) through
    an exposing agent in B and a connecting agent in A (`connect_args` added) to a reader in A,
    started at once; `finish` checks that every byte arrived and returns the reader's report
    (bytes, intact, longest_gap)."""
    BLOCKS = 240

    def __init__(self, scene, *connect_args):
        scene.services.append(subprocess.Popen(
            scene.lab.argv("b", "python3", PACED, "serve", "9000", str(self.BLOCKS), "0.025"),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        scene.expose("paced=127.0.0.1:9000")
        self.connector = scene.connect("--service", "paced", *connect_args)
        self.reader = subprocess.Popen(scene.lab.argv("a", "python3", PACED, "fetch", "8443"), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)

    def finish(self):
        out, err = self.reader.communicate(timeout=90)
        assert self.reader.returncode == 0, err
        result = json.loads(out)
        assert result["bytes"] == self.BLOCKS * 65536 and result["intact"], \
            (result, "".join(self.connector.errors)[-3000:])
        # One peer connection throughout.
        seen = self.connector.seen + drain(self.connector)
        assert not any(line.startswith("disconnected") for line in seen), seen
        return result


@pytest.mark.parametrize("mode,path", [("auto", "direct"), ("relay", "relay")])
def test_a_transfer_survives_both_nats_forgetting_their_mappings(sb, certificate, tmp_path, mode, path):
    """Both routers' connection tracking is flushed in the middle of a 6 s transfer (what a
    router reboot does to its NAT table): the transfer stalls for less than 3 s and every byte
    arrives, on the same peer connection."""
    with Scene(sb, certificate, tmp_path, {"a": "home", "b": "home"}) as scene:
        transfer = PacedTransfer(scene, "--mode", mode)
        assert fields(transfer.connector.wait_for("connected bob"))["path"] == path
        time.sleep(2.0)
        for side in ("a", "b"):
            scene.lab.flush_conntrack(side)
        result = transfer.finish()
        assert result["longest_gap"] < 3.0, (result, transfer.connector.seen)


@pytest.mark.parametrize("mode,path", [("auto", "direct"), ("relay", "relay")])
def test_a_transfer_resumes_at_once_after_a_four_second_outage(sb, certificate, tmp_path, mode, path):
    """Router A forwards nothing at all for 4 s mid-transfer (UDP, the TURN server's TCP, the
    event stream: an uplink that drops out). That is more SCTP timeouts in a row than usrsctp's
    default Path.Max.Retrans: it used to mark the one path unreachable and send nothing new
    on it until a heartbeat 30 s later, so the reader timed out. Now the transfer goes on
    within 1.5 s of the link's return, every byte arrives, on the same peer connection."""
    with Scene(sb, certificate, tmp_path, {"a": "home", "b": "home"}) as scene:
        transfer = PacedTransfer(scene, "--mode", mode)
        assert fields(transfer.connector.wait_for("connected bob"))["path"] == path
        time.sleep(1.5)
        scene.lab.exec("ra", "nft", "-f", "-", input="""
table inet outage {
    chain forward {
        type filter hook forward priority -10; policy drop;
    }
}
""")
        time.sleep(4.0)
        scene.lab.exec("ra", "nft", "delete", "table", "inet", "outage")
        result = transfer.finish()
        print(f"  4 s outage ({path}): longest stall {result['longest_gap']} s")
        assert 4.0 <= result["longest_gap"] < 5.5, (result, transfer.connector.seen)


@pytest.mark.parametrize("kind,path,rebound", [
    ("home", "direct", ("a",)), ("home", "direct", ("b",)), ("home", "direct", ("a", "b")),
    ("symmetric", "relay", ("a",)), ("symmetric", "relay", ("a", "b")),
])
def test_after_a_nat_rebinding_ice_restarts_and_the_transfer_goes_on(sb, certificate, tmp_path, kind, path, rebound):
    """A NAT rebinding mid-transfer: the router(s) forget every mapping and map each flow to a
    new outside port, so the selected pair leads nowhere. The agents notice the silence, restart
    ICE through signaling (new credentials in a trickle fragment, new server-reflexive
    candidates, new relay allocations: TURN binds an allocation to the client's address) and
    carry on over the new pair: the paced transfer stalls under 3 s, every byte arrives, and no
    new peer connection was made."""
    with Scene(sb, certificate, tmp_path, {"a": kind, "b": kind}) as scene:
        transfer = PacedTransfer(scene)
        assert fields(transfer.connector.wait_for("connected bob"))["path"] == path
        time.sleep(2.0)
        for side in rebound:
            scene.lab.rebind(side)
        result = transfer.finish()
        print(f"  NAT rebinding of {'+'.join(rebound)} ({path}): longest stall {result['longest_gap']} s")
        assert result["longest_gap"] < 3.0, (result, transfer.connector.seen)


def test_a_relayed_connection_moves_to_a_direct_path_once_one_opens(sb, certificate, tmp_path):
    """At first router A drops UDP between the two routers (the server stays reachable), so
    auto mode connects through the relay; then the block goes, ICE's checks still under way
    on the direct pairs get through, and the connection moves to the direct path (a
    `path bob direct` line) without dropping the transfer running over it."""
    with Scene(sb, certificate, tmp_path, {"a": "home", "b": "home"}) as scene:
        other = scene.lab.router_address("b")
        scene.lab.exec("ra", "nft", "-f", "-", input=f"""
table inet gate {{
    chain forward {{
        type filter hook forward priority -10; policy accept;
        ip daddr {other} meta l4proto udp counter drop
        ip saddr {other} meta l4proto udp counter drop
    }}
}}
""")
        transfer = PacedTransfer(scene)
        connector = transfer.connector
        assert fields(connector.wait_for("connected bob"))["path"] == "relay"
        time.sleep(1.0)
        scene.lab.exec("ra", "nft", "delete", "table", "inet", "gate")
        moved = fields(connector.wait_for("path bob", timeout=20))
        assert moved["path"] == "direct" and moved["remote"] in ("srflx", "prflx"), moved
        result = transfer.finish()
        assert result["longest_gap"] < 1.0, result
