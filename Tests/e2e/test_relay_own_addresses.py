"""The relay does not relay to its own services. In a network namespace where Switchboard
has a public-looking address (203.0.113.1, only inside the namespace) coturn's
turnutils_uclient tries to reach the server's TURN and HTTP ports through the relay (refused
and counted), while two clients of the same server still reach each other's relayed
addresses (what two relay-only peers need)."""
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import BIN, clean_env, read_banner, relay_line
from test_relay_coturn_tools import summary

pytestmark = [
    pytest.mark.skipif(shutil.which("turnutils_uclient") is None, reason="needs Debian coturn (make test installs it)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace"),
]

ADDRESS = "203.0.113.1"


@pytest.fixture
def namespace():
    name = f"sb-own-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", name, "ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name])


@pytest.fixture
def server(namespace, sb):
    process = subprocess.Popen(
        ["ip", "netns", "exec", namespace, str(BIN), "serve", "--data-dir", str(sb.data_dir),
         "--http-listen", f"{ADDRESS}:8080", "--turn-listen", f"{ADDRESS}:3478", "--media-listen", f"{ADDRESS}:8189",
         "--relay-ip", ADDRESS, "--relay-ports", "40000-40999"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env())
    read_banner(process, lambda lines: relay_line(lines[-1]))
    yield process
    process.kill()
    process.wait()


def run_in(namespace, *argv, timeout=60):
    result = subprocess.run(["ip", "netns", "exec", namespace, *argv], capture_output=True, text=True, timeout=timeout)
    return result.stdout + result.stderr


def own_address_drops(namespace):
    text = run_in(namespace, "curl", "-s", f"http://{ADDRESS}:8080/metrics")
    match = re.search(r"^switchboard_relay_own_address_drops_total (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_the_relay_refuses_its_own_ports_but_relays_between_its_clients(namespace, server, sb):
    secret = (sb.data_dir / "turn-secret").read_text().strip()
    credentials = ["-u", "alice", "-W", secret]

    # Two clients of this server, each sending to the other's relayed address: works.
    out = run_in(namespace, "turnutils_uclient", "-y", "-p", "3478", "-X", "-g", *credentials, ADDRESS)
    assert summary(out) == (0, 2000), out[-2000:]

    # The server's own TURN port as the peer: ChannelBind is refused (403), nothing arrives.
    out = run_in(namespace, "turnutils_uclient", "-p", "3478", "-e", ADDRESS, "-r", "3478", "-X", "-g", *credentials,
                 ADDRESS)
    assert "403" in out and summary(out)[1] == 0, out[-2000:]

    # Its HTTP port through Send indications: dropped and counted.
    before = own_address_drops(namespace)
    out = run_in(namespace, "turnutils_uclient", "-s", "-p", "3478", "-e", ADDRESS, "-r", "8080", "-X", "-g",
                 *credentials, ADDRESS)
    assert summary(out)[1] == 0, out[-2000:]
    time.sleep(1.5)  # the relay publishes its counters every second
    assert own_address_drops(namespace) > before
