"""Agents on loopback for the e2e tests: peers alice, carol and bob (group lab) with key
files, a Switchboard that lets 127.0.0.0/8 through, `switchboard agent …` processes and a web
service, all stopped on exit.

    with LoopbackAgents(sb, tmp_path, *server_args) as lab:
        port = lab.web("hello\\n")                   # http.server serving /hello.txt
        exposer = lab.agent("bob", "expose", "--service", f"http=127.0.0.1:{port}")
        wait_line(exposer, "connected")"""
import socket
import subprocess
import sys
import time

from conftest import BIN, clean_env, free_port, start_server


class LoopbackAgents:
    PEERS = ("alice", "carol", "bob")

    def __init__(self, sb, tmp_path, *server_args):
        self.sb, self.tmp_path, self.server_args = sb, tmp_path, server_args
        self.keys, self.processes = {}, []

    def __enter__(self):
        for peer in self.PEERS:
            self.keys[peer] = self.tmp_path / f"{peer}.key"
            self.keys[peer].write_text(self.sb.ok("peer", "add", peer, "--group", "lab").stdout.strip())
        self.server = start_server(self.sb, "--allowed-peer", "127.0.0.0/8", *self.server_args)
        return self

    def __exit__(self, failure, *_):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        if failure is not None:
            # What each agent logged, for the failure's report (pytest shows captured stderr).
            for process in self.processes:
                if process.stderr is not None:
                    print(f"--- {' '.join(process.args[1:3])} {process.args[6] if len(process.args) > 6 else ''} stderr:\n"
                          f"{process.stderr.read()[-3000:]}", file=sys.stderr)
        self.server.stop()

    def key(self, peer):
        return self.keys[peer].read_text().strip()

    def agent(self, peer, command, *argv):
        """`switchboard agent COMMAND` as `peer`, host candidates on 127.0.0.1."""
        process = subprocess.Popen([str(BIN), "agent", command, "--server", self.server.base_url, "--peer-id", peer,
                                    "--key-file", str(self.keys[peer]), "--host-address", "127.0.0.1", *argv],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())
        self.processes.append(process)
        return process

    def web(self, text):
        """Python's http.server serving `text` as /hello.txt; returns its port."""
        directory = self.tmp_path / "www"
        directory.mkdir(exist_ok=True)
        (directory / "hello.txt").write_text(text)
        port = free_port(socket.SOCK_STREAM)
        self.processes.append(subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                                "--directory", str(directory)],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return port


def wait_line(process, prefix, timeout=15):
    """The first line of `process`'s stdout that starts with `prefix`."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line.strip())
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"no {prefix!r} line: {seen}; stderr: {process.stderr.read()[-2000:] if process.poll() is not None else ''}")


def fetch(port):
    """GET /hello.txt over a plain TCP connection to `port`; the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as client:
        client.sendall(b"GET /hello.txt HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := client.recv(65536):
            answer += chunk
        return answer.decode(errors="replace")
