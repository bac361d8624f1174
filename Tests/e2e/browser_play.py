"""Plays a Switchboard stream in headless Chromium through the /play page, all inside a
network namespace that has only loopback (so neither the browser nor anything else here
can reach a real network). Run under `unshare -n`:

    unshare -n -- python browser_play.py --bin SWITCHBOARD --work DIR

It brings `lo` up, starts `switchboard serve`, registers a stream, pushes ffmpeg testsrc
H.264 + Opus into it, opens http://127.0.0.1:PORT/play/cam in Chromium and reads the page's
`window.switchboard` (filled from RTCPeerConnection.getStats()) over the DevTools protocol
until framesDecoded > 0. The last stdout line is a JSON report.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

from websockets.sync.client import connect

from media_tools import ffmpeg_push_command


def wait_for_line(process, pattern, seconds):
    deadline = time.monotonic() + seconds
    lines = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise RuntimeError(f"no {pattern!r} in output:\n" + "".join(lines))


def devtools_page(port, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as response:
                for target in json.load(response):
                    if target.get("type") == "page":
                        return target["webSocketDebuggerUrl"]
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("Chromium's DevTools endpoint did not come up")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--timeout", type=float, default=40)
    args = parser.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)

    data = os.path.join(args.work, "data")
    processes = []
    report = {"framesDecoded": 0}
    try:
        subprocess.run([args.bin, "stream", "add", "cam", "--video-port", "25004", "--audio-port", "25006",
                        "--data-dir", data], check=True, capture_output=True)
        server = subprocess.Popen(
            [args.bin, "serve", "--data-dir", data, "--http-listen", "127.0.0.1:28080",
             "--turn-listen", "127.0.0.1:23478", "--media-listen", "127.0.0.1:28189"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        processes.append(server)
        wait_for_line(server, r"http\s+http://127\.0\.0\.1:28080", 30)
        processes.append(subprocess.Popen(ffmpeg_push_command(25004, 25006), stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
        profile = os.path.join(args.work, "chromium-profile")
        browser = subprocess.Popen(
            [shutil.which("chromium") or "chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
             "--no-first-run", "--mute-audio", "--allow-loopback-in-peer-connection",
             "--autoplay-policy=no-user-gesture-required",
             # Host candidates as plain IPs: mDNS names need multicast, which this namespace lacks.
             "--disable-features=WebRtcHideLocalIpsWithMdns", f"--user-data-dir={profile}",
             "--remote-debugging-port=29222", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        processes.append(browser)
        with connect(devtools_page(29222), max_size=None, open_timeout=20) as page:
            ids = iter(range(1, 1_000_000))

            def call(method, **params):
                number = next(ids)
                page.send(json.dumps({"id": number, "method": method, "params": params}))
                while True:
                    message = json.loads(page.recv(timeout=20))
                    if message.get("id") == number:
                        return message

            call("Page.navigate", url="http://127.0.0.1:28080/play/cam")
            started = time.monotonic()
            while time.monotonic() - started < args.timeout:
                time.sleep(0.5)
                result = call("Runtime.evaluate", expression="JSON.stringify(window.switchboard || null)",
                              returnByValue=True)
                value = result.get("result", {}).get("result", {}).get("value")
                if value and value != "null":
                    report = json.loads(value)
                    if report.get("framesDecoded", 0) > 0 and report.get("audioPackets", 0) > 0:
                        break
            report["seconds"] = round(time.monotonic() - started, 2)
            # The viewer as the server saw it, before the page goes away.
            with urllib.request.urlopen("http://127.0.0.1:28080/metrics", timeout=5) as response:
                metrics = response.read().decode()
            report["server_viewers"] = [line for line in metrics.splitlines()
                                        if line.startswith("switchboard_media_viewers ")]
            if os.environ.get("BROWSER_PLAY_DEBUG"):
                report["metrics"] = [line for line in metrics.splitlines() if line.startswith("switchboard_media")]
                offer = call("Runtime.evaluate", expression="pc && pc.localDescription.sdp", returnByValue=True)
                report["offer"] = offer.get("result", {}).get("result", {}).get("value")
                answer = call("Runtime.evaluate", expression="pc && pc.remoteDescription.sdp", returnByValue=True)
                report["answer"] = answer.get("result", {}).get("result", {}).get("value")
                stats = call("Runtime.evaluate", awaitPromise=True, returnByValue=True, expression=(
                    "pc.getStats().then(r => { const out = []; r.forEach(e => { if (/candidate|transport/.test(e.type))"
                    " out.push(e); }); return JSON.stringify(out); })"))
                report["stats"] = stats.get("result", {}).get("result", {}).get("value")
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
    print(json.dumps(report))
    return 0 if report.get("framesDecoded", 0) > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
