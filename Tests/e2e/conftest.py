"""End-to-end tests: the built `switchboard` binary driven as users and admins drive it,
with the real sqlite3 CLI reading and writing its live database."""
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = sorted(p.name for p in (ROOT / "Migrations").glob("*.sql"))
BIN = Path(os.environ.get("SWITCHBOARD_BIN", ROOT / ".build" / "debug" / "switchboard"))


def clean_env(extra=None):
    """The environment without any SWITCHBOARD_* the caller's shell may carry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env.update(extra or {})
    return env


class Switchboard:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        self.db = data_dir / "switchboard.db"

    def run(self, *args, env=None, cwd=None, data_dir=True, timeout=60):
        argv = [str(BIN), *args]
        if data_dir:
            argv += ["--data-dir", str(self.data_dir)]
        return subprocess.run(argv, capture_output=True, text=True, env=clean_env(env),
                              cwd=cwd, timeout=timeout)

    def ok(self, *args, **kwargs):
        result = self.run(*args, **kwargs)
        assert result.returncode == 0, f"{args}: rc={result.returncode} stderr={result.stderr!r}"
        return result

    def sql(self, query, *, timeout_ms=5000):
        """Runs a query with the sqlite3 CLI, as an admin would on the live file."""
        result = subprocess.run(["sqlite3", "-batch", str(self.db)],
                                input=f".timeout {timeout_ms}\n{query}\n",
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"sqlite3 failed: {result.stderr}"
        return result.stdout

    def dump(self):
        return self.sql(".dump")


class Server:
    def __init__(self, process, base_url, output):
        self.process = process
        self.base_url = base_url
        self.output = output

    def get(self, path):
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=10) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read().decode()

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


def free_port(kind=socket.SOCK_DGRAM, host="127.0.0.1"):
    """A port that is free for both UDP and TCP on `host` right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, kind) as first:
            first.bind((host, 0))
            port = first.getsockname()[1]
            other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
            try:
                with socket.socket(family, other) as second:
                    second.bind((host, port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def start_server(sb: Switchboard, *extra, env=None, cwd=None, turn_listen=None):
    """Starts `switchboard serve` on ephemeral ports and waits for its banner."""
    turn = turn_listen or [f"127.0.0.1:{free_port()}"]
    turn_args = [arg for address in turn for arg in ("--turn-listen", address)]
    # The media edge's one UDP port, unless the test picks it.
    media_port = None
    if "--media-listen" not in extra:
        media_port = free_port()
        turn_args += ["--media-listen", f"127.0.0.1:{media_port}"]
    process = subprocess.Popen(
        [str(BIN), "serve", "--data-dir", str(sb.data_dir), "--http-listen", "127.0.0.1:0", *turn_args, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env(env), cwd=cwd)
    http = re.compile(r"http\s+http://(127\.0\.0\.1:\d+)")
    lines = read_banner(process, lambda lines: any(map(http.search, lines)) and any(map(relay_line, lines)))
    server = Server(process, "http://" + next(filter(None, map(http.search, lines))).group(1), lines)
    server.turn = turn
    server.media_port = media_port
    return server


def relay_line(line):
    """The banner's last line: the relay is listening."""
    return line.strip().startswith("relay ")


def read_banner(process, ready, timeout=30):
    """Reads `switchboard serve`'s output (stdout, stderr joined) until `ready(lines)`, then
    keeps draining it into the returned list on a thread, so that a chatty log can never fill
    the pipe and stall the server. Kills the server and fails if it never got ready."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if ready(lines):
            threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
            return lines
    process.kill()
    raise AssertionError("server did not print its banner:\n" + "".join(lines))


@pytest.fixture
def sb(tmp_path):
    return Switchboard(tmp_path / "data")


@pytest.fixture
def server(sb):
    srv = start_server(sb)
    yield srv
    if srv.process.poll() is None:
        srv.process.kill()
        srv.process.wait()
