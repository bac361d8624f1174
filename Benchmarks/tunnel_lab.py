"""The lab half of Benchmarks/tunnel.sh (run that, not this): the agent's TCP tunnel in the NAT
lab of Tests/e2e/natlab.py, beside an OpenSSH `ssh -L` forward over the same NAT path.

One lab with two home NATs. In B's namespace: Switchboard's exposing agent (services iperf and
http), iperf3 servers, a tiny HTTP server and sshd on 10.0.2.2:2222; router B forwards TCP 2222
(sshd) and 5202 (plain iperf3) from its WAN address to B. In A's namespace: connecting agents
(`--mode auto`, which goes direct here, and `--mode relay`), `ssh -N -L` to B, and the
clients. For each path it measures
  1. one iperf3 TCP stream through the agent, through `ssh -L` and plain TCP through router B's
     port forward (the ceiling), one after the other in this run;
  2. time from a new local TCP connection to the first byte of an HTTP answer from the service:
     the first connection of a fresh connecting agent (a new peer connection) and further
     streams on that peer connection (median of 20);
and then the exposing agent's RSS growth per idle peer connection, over N connecting agents
with their own peer IDs that each carried one request.

`python3 tunnel_lab.py probe PORT COUNT` is the HTTP client it runs inside A's namespace.
"""
import argparse
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "e2e"))

SERVICE_IPERF = 5201      # iperf3 in B on 127.0.0.1, exposed by the agent and reached by ssh -L
PLAIN_IPERF = 5202        # iperf3 in B on 10.0.2.2, reached through router B's port forward
HTTP_PORT = 8000          # the tiny HTTP server in B on 127.0.0.1
SSH_PORT = 2222
SSH_IPERF_LOCAL = 6201    # ssh -L ports in A
SSH_HTTP_LOCAL = 6800
AGENT_PORTS = {"direct": (7201, 7800), "relay": (7202, 7801)}  # (iperf, http) listen ports in A
MEMORY_BASE_PORT = 7900
FURTHER_STREAMS = 20


# ---------------------------------------------------------------------------------------------
# The HTTP client (runs in A's namespace as `tunnel_lab.py probe PORT COUNT`).

def probe(port, count, timeout):
    """Connects COUNT times, one after the other, sends a GET and times the first answer byte;
    prints a JSON list of milliseconds (or {"error": …} with what it had)."""
    times = []
    for _ in range(count):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(timeout)
                started = time.perf_counter()
                sock.connect(("127.0.0.1", port))
                sock.sendall(b"GET /hello.txt HTTP/1.0\r\nHost: device-b\r\n\r\n")
                first = sock.recv(1)
                elapsed = time.perf_counter() - started
                answer = first
                while chunk := sock.recv(65536):
                    answer += chunk
        except OSError as error:
            print(json.dumps({"error": f"{type(error).__name__}: {error}", "times_ms": times}))
            return 1
        if not answer.startswith(b"HTTP/1."):
            print(json.dumps({"error": f"not an HTTP answer: {answer[:200]!r}", "times_ms": times}))
            return 1
        times.append(elapsed * 1000)
    print(json.dumps(times))
    return 0


# ---------------------------------------------------------------------------------------------
# Processes

class Proc:
    """A process in a lab namespace whose stdout lines land in a queue (stderr in a file)."""

    def __init__(self, name, argv, log_dir, env=None, stdout_to_log=False):
        self.name = name
        self.stderr_path = Path(log_dir) / f"{name}.{'log' if stdout_to_log else 'stderr'}"
        self.stderr_file = open(self.stderr_path, "w")
        self.process = subprocess.Popen(argv, stdout=self.stderr_file if stdout_to_log else subprocess.PIPE,
                                        stderr=self.stderr_file, stdin=subprocess.DEVNULL, text=True, env=env)
        self.lines = queue.Queue()
        self.seen = []
        if not stdout_to_log:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    @property
    def pid(self):
        return self.process.pid

    def stderr_tail(self, size=1500):
        try:
            return self.stderr_path.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def wait_for(self, prefix, timeout):
        """The next stdout line starting with `prefix`, waiting at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.process.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line
        state = "running" if self.process.poll() is None else f"exited {self.process.returncode}"
        raise RuntimeError(f"{self.name} ({state}): no {prefix!r} line in {timeout} s; stdout {self.seen[-5:]}; "
                           f"stderr {self.stderr_tail()!r}")

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.stderr_file.close()


def fields(line):
    return dict(part.split("=", 1) for part in line.split() if "=" in part)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def median(values):
    return statistics.median(values) if values else None


def log(message):
    print(f"[tunnel] {message}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work)
        self.bin = str(Path(args.bin).resolve())
        self.procs = []
        self.lab = None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        self.results = {"benchmark": "tunnel", "binary": self.bin, "iperf_seconds": args.seconds,
                        "lab": "two home NATs (nftables masquerade), veth, no added delay"}

    # -- plumbing ---------------------------------------------------------------------------

    def spawn(self, name, side, *argv):
        proc = Proc(name, self.lab.argv(side, *argv), self.work, env=self.env)
        self.procs.append(proc)
        return proc

    def run_in(self, side, *argv, timeout):
        return subprocess.run(self.lab.argv(side, *argv), capture_output=True, text=True, timeout=timeout,
                              env=self.env, stdin=subprocess.DEVNULL)

    def wait_until(self, what, condition, timeout, proc=None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if proc is not None and proc.process.poll() is not None:
                raise RuntimeError(f"{proc.name} exited {proc.process.returncode} before {what}: "
                                   f"{proc.stderr_tail()!r}")
            time.sleep(0.1)
        raise RuntimeError(f"timed out after {timeout} s waiting for {what}"
                           + (f"; {proc.name} stderr {proc.stderr_tail()!r}" if proc else ""))

    def sockets(self, side, *filter_argv):
        result = self.run_in(side, "ss", "-Htn", *filter_argv, timeout=10)
        return [line for line in result.stdout.splitlines() if line.strip()]

    def wait_listening(self, side, port, proc, timeout=20):
        self.wait_until(f"port {port} listening in {self.lab.ns(side)}",
                        lambda: self.sockets(side, "state", "listening", f"sport = :{port}"), timeout, proc)

    def cleanup(self):
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as error:  # keep cleaning
                log(f"stopping {proc.name}: {error}")
        if self.lab is not None:
            # Whatever is still in our namespaces (sshd's session children, say) is ours too.
            for name in list(self.lab.created):
                pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
                for pid in pids:
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
            self.lab.close()
            self.lab = None

    # -- setup ------------------------------------------------------------------------------

    def add_peer(self, peer):
        result = subprocess.run([self.bin, "peer", "add", peer, "--group", "lab", "--data-dir", str(self.work / "data")],
                                capture_output=True, text=True, timeout=60, env=self.env, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise RuntimeError(f"peer add {peer}: rc={result.returncode} {result.stderr.strip()}")
        key_file = self.work / f"{peer}.key"
        key_file.write_text(result.stdout.strip() + "\n")
        key_file.chmod(0o600)
        return key_file

    def start_server(self):
        """`switchboard serve` in the WAN namespace as natlab.start_lab_server starts it (that one
        imports the pytest conftest), its output in a log file."""
        from natlab import SERVER
        proc = Proc("server", self.lab.argv("wan", self.bin, "serve", "--data-dir", str(self.work / "data"),
                                            "--http-listen", f"{SERVER}:8080", "--turn-listen", f"{SERVER}:3478",
                                            "--media-listen", f"{SERVER}:8189", "--relay-ip", SERVER,
                                            "--relay-ports", "40000-40999"),
                    self.work, env=self.env, stdout_to_log=True)
        self.procs.append(proc)

        def banner():
            return any(line.strip().startswith("relay ") for line in proc.stderr_tail(1 << 20).splitlines())
        self.wait_until("the server's banner", banner, 60, proc)

    def start_services(self):
        www = self.work / "www"
        www.mkdir()
        (www / "hello.txt").write_text("hello from behind NAT B\n")
        for name, address, port in (("iperf3-service", "127.0.0.1", SERVICE_IPERF),
                                    ("iperf3-plain", self.lab.address("b"), PLAIN_IPERF)):
            self.procs.append(Proc(name, self.lab.argv("b", "iperf3", "-s", "-B", address, "-p", str(port)),
                                   self.work, env=self.env, stdout_to_log=True))
        http = self.spawn("http", "b", sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", "127.0.0.1",
                          "--directory", str(www))
        for port in (SERVICE_IPERF, PLAIN_IPERF):
            self.wait_listening("b", port, None)
        self.wait_listening("b", HTTP_PORT, http)

    def start_sshd(self):
        """sshd in B on 10.0.2.2:2222 with throwaway keys, and router B forwarding TCP 2222 and
        5202 from its WAN address to B (a DNAT in a prerouting chain, let through its forward
        chain): A reaches B over the same NAT path the agents' direct path takes."""
        keys = self.work / "ssh"
        keys.mkdir(mode=0o700)
        for name in ("host_key", "user_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"tunnel-bench-{name}",
                            "-f", str(keys / name)], check=True, capture_output=True, timeout=30)
        shutil.copy(keys / "user_key.pub", keys / "authorized_keys")
        config = keys / "sshd_config"
        config.write_text(f"""Port {SSH_PORT}
ListenAddress {self.lab.address("b")}
HostKey {keys / "host_key"}
PidFile {keys / "sshd.pid"}
AuthorizedKeysFile {keys / "authorized_keys"}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
LogLevel ERROR
""")
        sshd = ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)]
        if not os.path.isdir("/run/sshd"):
            # sshd wants its privilege separation directory; give it one on a tmpfs /run in a
            # private mount namespace rather than creating it on the host.
            sshd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                    'mount -t tmpfs -o mode=0755 tunnel-bench-run /run && mkdir -m 0755 /run/sshd && exec "$@"',
                    "sshd", *sshd]
        proc = self.spawn("sshd", "b", *sshd)
        self.wait_listening("b", SSH_PORT, proc)
        forward = f"""
table ip nat {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "wan0" tcp dport {{ {SSH_PORT}, {PLAIN_IPERF} }} dnat to {self.lab.address("b")}
    }}
}}
table inet filter {{
    chain forward {{
        iifname "wan0" oifname "lan0" ct status dnat accept
    }}
}}
"""
        self.lab.exec("rb", "nft", "-f", "-", input=forward)
        self.ssh_key = keys / "user_key"

    def start_ssh_forward(self):
        proc = self.spawn("ssh", "a", "ssh", "-v", "-N", "-F", "/dev/null",
                          "-L", f"127.0.0.1:{SSH_IPERF_LOCAL}:127.0.0.1:{SERVICE_IPERF}",
                          "-L", f"127.0.0.1:{SSH_HTTP_LOCAL}:127.0.0.1:{HTTP_PORT}",
                          "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
                          "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                          "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15",
                          "-i", str(self.ssh_key), "-p", str(SSH_PORT), f"root@{self.lab.router_address('b')}")
        for port in (SSH_IPERF_LOCAL, SSH_HTTP_LOCAL):
            self.wait_listening("a", port, proc)
        cipher = None
        for line in proc.stderr_tail(1 << 20).splitlines():
            if "kex: client->server cipher:" in line:
                cipher = line.split("cipher:", 1)[1].split()[0]
        self.results["ssh_cipher"] = cipher

    def agent(self, name, side, peer, *argv):
        from natlab import SERVER
        return self.spawn(name, side, self.bin, "agent", argv[0], "--server", f"http://{SERVER}:8080",
                          "--peer-id", peer, "--key-file", str(self.keys[peer]), *argv[1:])

    def start_exposer(self):
        from natlab import SERVER
        self.exposer = self.agent("expose-bob", "b", "bob", "expose", "--service", f"iperf=127.0.0.1:{SERVICE_IPERF}",
                                  "--service", f"http=127.0.0.1:{HTTP_PORT}")
        # It prints nothing until a peer connects: wait for its connection to the server (the
        # event stream), then a moment for it to subscribe.
        self.wait_until("the exposing agent's connection to the server",
                        lambda: self.sockets("b", "state", "established", f"dst {SERVER}:8080"), 30, self.exposer)
        time.sleep(1.0)

    # -- measurements -------------------------------------------------------------------------

    def wait_iperf_idle(self, port):
        """Waits (at most 30 s) until the iperf3 server on `port` in B has no connection left from
        the previous run: a tunnel that closes late would otherwise make it refuse as busy."""
        started = time.monotonic()
        while self.sockets("b", "state", "established", f"sport = :{port}"):
            if time.monotonic() - started > 30:
                log(f"iperf3 server :{port} still has connections after 30 s")
                return
            time.sleep(0.2)
        waited = time.monotonic() - started
        if waited > 0.5:
            log(f"iperf3 server :{port} had connections for {waited:.1f} s after the previous run")
            self.results.setdefault("notes", []).append(
                f"the iperf3 server :{port} kept a connection {waited:.1f} s after the previous run ended")

    def iperf(self, port, host="127.0.0.1"):
        """Mbit/s received over one TCP stream (iperf3 client in A), or None with the reason logged."""
        for attempt in range(3):
            self.wait_iperf_idle(SERVICE_IPERF if host == "127.0.0.1" else PLAIN_IPERF)
            try:
                result = self.run_in("a", "iperf3", "-c", host, "-p", str(port), "-t", str(self.args.seconds), "-J",
                                     "--connect-timeout", "20000", timeout=self.args.seconds + 60)
            except subprocess.TimeoutExpired:
                log(f"iperf3 to {host}:{port} timed out")
                return None
            try:
                report = json.loads(result.stdout)
            except json.JSONDecodeError:
                log(f"iperf3 to {host}:{port}: rc={result.returncode} {result.stdout[-500:]} {result.stderr[-500:]}")
                return None
            if "error" not in report:
                return report["end"]["sum_received"]["bits_per_second"] / 1e6
            log(f"iperf3 to {host}:{port}: {report['error']}")
            if "busy" not in report["error"]:
                return None
            time.sleep(2)  # the server still finishing the previous test: try again
        return None

    def probe(self, side, port, count):
        """Milliseconds to the first answer byte for COUNT connections made one after the other."""
        timeout = 30
        result = self.run_in(side, sys.executable, str(Path(__file__).resolve()), "probe", str(port), str(count),
                             "--timeout", str(timeout), timeout=count * timeout + 30)
        try:
            answer = json.loads(result.stdout)
        except json.JSONDecodeError:
            raise RuntimeError(f"probe to {port}: rc={result.returncode} {result.stdout!r} {result.stderr[-800:]!r}")
        if isinstance(answer, dict):
            raise RuntimeError(f"probe to {port}: {answer['error']} (after {len(answer['times_ms'])} answers)")
        return answer

    def measure_path(self, label, mode):
        """Time to first byte and throughput through connecting agents in `mode`; ssh -L and
        plain TCP measured right after the agent's iperf3 run."""
        iperf_port, http_port = AGENT_PORTS[label]
        out = self.results[label] = {"mode": mode}
        if not self.args.no_agents:
            # time to first byte: a fresh agent's first connection, then further streams
            http_agent = self.agent(f"connect-http-{label}", "a", f"carol-{label}", "connect", "bob",
                                    "--listen", f"127.0.0.1:{http_port}", "--service", "http", "--mode", mode)
            http_agent.wait_for("listening", 60)
            first = self.probe("a", http_port, 1)[0]
            connected = http_agent.wait_for("connected", 30)
            out["path"] = fields(connected).get("path")
            out["relay_transport"] = fields(connected).get("relay")
            out["connected_rtt_ms"] = int(fields(connected)["rtt_ms"]) if "rtt_ms" in fields(connected) else None
            out["first_byte_new_peer_connection_ms"] = round(first, 2)
            further = self.probe("a", http_port, FURTHER_STREAMS)
            out["first_byte_further_stream_ms_median"] = round(median(further), 3)
            out["first_byte_further_stream_ms_min"] = round(min(further), 3)
            log(f"{label}: {connected}; first byte {first:.1f} ms new, {median(further):.2f} ms further (median)")

            # throughput through the agent (its own peer connection, made by iperf3's first connection)
            iperf_agent = self.agent(f"connect-iperf-{label}", "a", f"alice-{label}", "connect", "bob",
                                     "--listen", f"127.0.0.1:{iperf_port}", "--service", "iperf", "--mode", mode)
            iperf_agent.wait_for("listening", 60)
            out["agent_mbit_s"] = self.iperf(iperf_port)
            try:
                out["iperf_path"] = fields(iperf_agent.wait_for("connected", 10)).get("path")
            except RuntimeError as error:
                log(str(error))
                out["iperf_path"] = None
            log(f"{label}: agent {fmt(out['agent_mbit_s'])} Mbit/s (path {out['iperf_path']})")
        # then ssh -L and plain TCP through router B's port forward, over the direct NAT path
        out["ssh_mbit_s"] = self.iperf(SSH_IPERF_LOCAL)
        log(f"{label}: ssh -L {fmt(out['ssh_mbit_s'])} Mbit/s")
        out["plain_mbit_s"] = self.iperf(PLAIN_IPERF, self.lab.router_address("b"))
        log(f"{label}: plain TCP {fmt(out['plain_mbit_s'])} Mbit/s")
        if out.get("agent_mbit_s") and out["ssh_mbit_s"]:
            out["agent_to_ssh"] = round(out["agent_mbit_s"] / out["ssh_mbit_s"], 3)
        for key in ("agent_mbit_s", "ssh_mbit_s", "plain_mbit_s"):
            if out.get(key) is not None:
                out[key] = round(out[key], 1)
        if not self.args.no_agents and not out.get("agent_mbit_s"):
            raise RuntimeError(f"no throughput through the agent on the {label} path")

    def measure_references(self):
        """Further-stream first byte over ssh -L, and of the service itself inside B."""
        ssh = self.probe("a", SSH_HTTP_LOCAL, FURTHER_STREAMS)
        local = self.probe("b", HTTP_PORT, FURTHER_STREAMS)
        self.results["ssh_further_stream_ms_median"] = round(median(ssh), 3)
        self.results["service_in_b_ms_median"] = round(median(local), 3)

    def measure_memory(self):
        count = self.args.memory_peers
        with open(f"/proc/{self.exposer.pid}/comm") as comm:  # `ip netns exec` execs, it does not fork
            assert comm.read().strip() == "switchboard", "the exposing agent's PID is not switchboard's"
        time.sleep(2)
        before = rss_kib(self.exposer.pid)
        agents, firsts = [], []
        for index in range(count):
            peer = f"mem-{index:02d}"
            agents.append(self.agent(f"connect-{peer}", "a", peer, "connect", "bob", "--listen",
                                     f"127.0.0.1:{MEMORY_BASE_PORT + index}", "--service", "http", "--mode", "auto"))
        for index, agent in enumerate(agents):
            agent.wait_for("listening", 60)
        for index, agent in enumerate(agents):
            firsts.append(self.probe("a", MEMORY_BASE_PORT + index, 1)[0])
            agent.wait_for("connected", 30)
        time.sleep(3)  # idle
        after = rss_kib(self.exposer.pid)
        connector_rss = [rss_kib(agent.pid) for agent in agents]
        self.results["memory"] = {
            "idle_peer_connections": count,
            "exposer_rss_before_kib": before,
            "exposer_rss_after_kib": after,
            "per_idle_peer_connection_kib": round((after - before) / count, 1),
            "connecting_agent_rss_kib_median": round(median(connector_rss)),
            "first_byte_new_peer_connection_ms_median": round(median(firsts), 2),
            "first_byte_new_peer_connection_ms_max": round(max(firsts), 2),
        }
        log(f"memory: exposer {before} -> {after} KiB over {count} idle peer connections")

    # -- the run ------------------------------------------------------------------------------

    def run(self):
        from natlab import Lab
        if self.args.no_agents:
            self.args.memory_peers = 0
        peers = [] if self.args.no_agents else ["bob", "alice-direct", "alice-relay", "carol-direct", "carol-relay"]
        peers += [f"mem-{index:02d}" for index in range(self.args.memory_peers)]
        log(f"adding {len(peers)} peers")
        self.keys = {peer: self.add_peer(peer) for peer in peers}
        self.lab = Lab({"a": "home", "b": "home"}, tag=self.args.tag)
        self.lab.__enter__()
        log(f"lab {self.args.tag}-* up; starting the server, services, sshd and ssh -L")
        if not self.args.no_agents:
            self.start_server()
        self.start_services()
        self.start_sshd()
        self.start_ssh_forward()
        if not self.args.no_agents:
            self.start_exposer()
        self.measure_references()
        phases = [(f"{label} path", lambda label=label, mode=mode: self.measure_path(label, mode))
                  for label, mode in (("direct", "auto"), ("relay", "relay"))]
        if self.args.memory_peers > 0:
            phases.append(("memory", self.measure_memory))
        for name, phase in phases:
            try:
                phase()
            except Exception as error:  # the other phases still run
                log(f"{name} FAILED: {error}")
                self.results.setdefault("errors", []).append(f"{name}: {error}")


def fmt(value, digits=1):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def report(results):
    direct, relay = results.get("direct", {}), results.get("relay", {})
    rows = [
        ("path the agent reported", lambda r: r.get("path") and (r["path"] + (f" ({r['relay_transport']})"
                                                                  if r.get("relay_transport") else "")), None),
        ("iperf3, one TCP stream (Mbit/s):", None, None),
        ("  through the agent", lambda r: r.get("agent_mbit_s"), 1),
        ("  through ssh -L", lambda r: r.get("ssh_mbit_s"), 1),
        ("  agent / ssh", lambda r: r.get("agent_to_ssh"), 2),
        ("  plain TCP (ceiling)", lambda r: r.get("plain_mbit_s"), 1),
        ("first byte from the service (ms):", None, None),
        ("  new peer connection", lambda r: r.get("first_byte_new_peer_connection_ms"), 1),
        ("    (agent's connected rtt_ms)", lambda r: r.get("connected_rtt_ms"), 0),
        (f"  further stream, median of {FURTHER_STREAMS}", lambda r: r.get("first_byte_further_stream_ms_median"), 2),
    ]
    lines = [f"tunnel benchmark: {results['lab']}; iperf3 {results['iperf_seconds']} s per run",
             f"binary {results['binary']}; ssh cipher {results.get('ssh_cipher') or '?'}",
             "(ssh -L and plain TCP take the direct NAT path in both columns)", "",
             f"{'':44}{'direct':>14}{'relay':>14}"]
    for title, get, digits in rows:
        if get is None:
            lines.append(title)
            continue
        values = [get(r) if r else None for r in (direct, relay)]
        lines.append(f"{title:44}" + "".join(f"{fmt(v, digits) if digits is not None else (v or '-'):>14}"
                                              for v in values))
    lines.append(f"{'  further stream through ssh -L, median':44}{fmt(results.get('ssh_further_stream_ms_median'), 2):>14}")
    lines.append(f"{'  the service itself in B, median':44}{fmt(results.get('service_in_b_ms_median'), 2):>14}")
    memory = results.get("memory")
    if memory:
        lines += ["", f"memory, {memory['idle_peer_connections']} idle peer connections (direct) to the exposing agent:",
                  f"{'  exposing agent RSS before / after (KiB)':44}"
                  f"{memory['exposer_rss_before_kib']:>14}{memory['exposer_rss_after_kib']:>14}",
                  f"{'  per idle peer connection (KiB)':44}{fmt(memory['per_idle_peer_connection_kib']):>14}",
                  f"{'  one connecting agent, RSS median (KiB)':44}{fmt(memory['connecting_agent_rss_kib_median']):>14}",
                  f"{'  their first byte, median / max (ms)':44}"
                  f"{fmt(memory['first_byte_new_peer_connection_ms_median']):>14}"
                  f"{fmt(memory['first_byte_new_peer_connection_ms_max']):>14}"]
    for note in results.get("notes", []):
        lines.append(f"note: {note}")
    for error in results.get("errors", []):
        lines.append(f"ERROR {error}")
    print("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench")
    bench.add_argument("--bin", required=True)
    bench.add_argument("--work", required=True, help="an empty scratch directory (the caller removes it)")
    bench.add_argument("--tag", required=True, help="namespace prefix of the lab")
    bench.add_argument("--seconds", type=int, default=5)
    bench.add_argument("--memory-peers", type=int, default=10)
    bench.add_argument("--no-agents", action="store_true",
                       help="only the lab, sshd, ssh -L and plain TCP (checks the lab without Switchboard)")
    client = sub.add_parser("probe")
    client.add_argument("port", type=int)
    client.add_argument("count", type=int)
    client.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    if args.command == "probe":
        return probe(args.port, args.count, args.timeout)

    def stop(signum, _frame):
        raise SystemExit(128 + signum)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(signum, stop)

    bench_run = Bench(args)
    try:
        bench_run.run()
    except Exception as error:
        log(f"FAILED: {error}")
        bench_run.results.setdefault("errors", []).append(str(error))
    finally:
        # Cleanup first, with further signals ignored so that it is not cut short.
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)
        bench_run.cleanup()
    report(bench_run.results)
    print(json.dumps(bench_run.results, sort_keys=True))
    return 1 if bench_run.results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
