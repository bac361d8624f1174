"""WHEP playback end to end: ffmpeg pushes RTP into a registered stream, real WebRTC
players (aiortc, headless Chromium) play it through ICE-lite, DTLS and SRTP."""
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN, free_port, start_server
from media_tools import ffmpeg_push_command

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
OFFER = (HERE.parents[1] / "docs" / "examples" / "aiortc-whep-offer.sdp").read_text()


def request(url, method="GET", body=None, headers=None):
    req = urllib.request.Request(url, data=body.encode() if isinstance(body, str) else body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def post_offer(server, name, sdp=OFFER, headers=None):
    return request(f"{server.base_url}/whep/{name}", "POST", sdp,
                   {"Content-Type": "application/sdp", **(headers or {})})


def wait_for_status(server, name, status, seconds=15):
    """The server reads the stream list every 2 s: wait until it answers `status`."""
    deadline = time.monotonic() + seconds
    while True:
        result = post_offer(server, name)
        if result[0] == status or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def metric(server, name):
    return metric_sum(server.get("/metrics")[2], name + " ")


def viewer(url, *args, timeout=60):
    result = subprocess.run([PYTHON, str(HERE / "whep_viewer.py"), url, *args], capture_output=True, text=True,
                            timeout=timeout)
    assert result.stdout.strip(), f"viewer printed nothing; stderr: {result.stderr[-2000:]}"
    return result.returncode, json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def live(sb):
    """A server with stream `cam` registered (video + audio ports) and ffmpeg pushing into it."""
    video, audio = free_port(), free_port()
    while audio == video:
        audio = free_port()
    sb.ok("stream", "add", "cam", "--video-port", str(video), "--audio-port", str(audio))
    server = start_server(sb)
    server.ingest = (video, audio)
    processes = []

    def push():
        process = subprocess.Popen(ffmpeg_push_command(video, audio), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        processes.append(process)
        return process

    server.push = push
    yield server
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


def test_aiortc_viewer_decodes_video_and_audio_from_ffmpeg(live, sb, capsys):
    # Registered but silent: 409 with Retry-After, as a problem document.
    status, headers, body = wait_for_status(live, "cam", 409)
    assert status == 409, body
    assert headers["Retry-After"] == "1"
    assert headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["status"] == 409

    live.push()
    code, report = viewer(f"{live.base_url}/whep/cam", "--frames", "30", "--timeout", "20")
    assert code == 0 and report["status"] == 201, report
    assert report["frames"] >= 30 and report["audio_frames"] >= 10, report
    assert (report["width"], report["height"]) == (640, 360)
    assert report["done_ms"] <= 5000, report  # ≥ 30 frames and audio within 5 s of the POST
    assert report["delete_status"] == 204
    with capsys.disabled():
        print(f"\n  aiortc WHEP viewer: first decoded frame {report['first_frame_ms']} ms after POST, "
              f"first audio {report['first_audio_ms']} ms, 30 frames + audio in {report['done_ms']} ms")

    # The ended viewer is in the history, with what it was sent; the overview adds it up.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows = sb.sql("SELECT end_reason, packets_sent, bytes_sent FROM media_viewer_history WHERE stream = 'cam';")
        if rows.strip():
            break
        time.sleep(0.5)
    reason, packets, sent = rows.strip().splitlines()[0].split("|")
    assert reason == "deleted" and int(packets) > 30 and int(sent) > 10_000, rows
    overview = sb.sql("SELECT name, viewers, bytes_sent > 0 FROM streams_overview;").strip()
    assert overview in ("cam|0|1", "cam|1|1"), overview
    assert metric(live, "switchboard_media_viewers_started_total") >= 1
    assert metric(live, "switchboard_media_packets_sent_total") > 30


def test_a_viewer_joining_mid_gop_decodes_from_the_cached_keyframe(live, capsys):
    # A 4 s GOP (ffmpeg's -g 120 at 30 fps): a viewer that joins between IDRs still gets a
    # picture at once, because the edge sends the last keyframe first.
    live.push()
    assert wait_for_status(live, "cam", 201)[0] == 201
    time.sleep(1.5)  # well past the first IDR, before the next
    code, report = viewer(f"{live.base_url}/whep/cam", "--frames", "5", "--timeout", "10")
    assert code == 0 and report["frames"] >= 5, report
    assert report["first_frame_ms"] < 1500, report
    time.sleep(0.6)
    assert metric(live, "switchboard_media_keyframes_sent_total") >= 1, (report, live.get("/metrics")[2])
    with capsys.disabled():
        print(f"\n  mid-GOP join (4 s GOP): first decoded frame {report['first_frame_ms']} ms after POST")


def test_viewers_survive_an_ingest_restart(live):
    first = live.push()
    assert wait_for_status(live, "cam", 201)[0] == 201
    url = f"{live.base_url}/whep/cam"
    process = subprocess.Popen([PYTHON, str(HERE / "whep_viewer.py"), url, "--duration", "10"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3.5)
    first.terminate()
    first.wait(timeout=10)
    time.sleep(1)
    live.push()  # a new ffmpeg: new SSRC, new sequence numbers and timestamps
    out, err = process.communicate(timeout=60)
    report = json.loads(out.strip().splitlines()[-1])
    samples = report["per_second"]
    assert len(samples) >= 9, report
    before = samples[2][0]
    after = samples[-1][0] - samples[5][0]
    assert before > 30, report
    assert after > 60, f"frames stopped after the restart: {report}"


def test_bad_input_is_refused_without_harm_to_viewers(live):
    live.push()
    assert wait_for_status(live, "cam", 201)[0] == 201

    status, headers, body = post_offer(live, "nosuch")
    assert status == 404 and headers["Content-Type"] == "application/problem+json"
    status, _, _ = request(f"{live.base_url}/whep/cam", "POST", OFFER, {"Content-Type": "text/plain"})
    assert status == 415
    status, _, body = post_offer(live, "cam", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")
    assert status == 400 and "m=" in json.loads(body)["detail"]
    vp8_only = "\r\n".join(line for line in OFFER.splitlines()
                           if not any(f":{pt} " in line or line.startswith(f"a=rtpmap:{pt}") for pt in range(99, 103))
                           and "opus" not in line).replace(" 97 98 99 100 101 102", " 97 98").replace(" 96 9 0 8", " 9 0 8")
    status, _, body = post_offer(live, "cam", vp8_only + "\r\n")
    assert status == 406, body
    status, _, _ = request(f"{live.base_url}/whep/cam/nosuchviewer", "DELETE")
    assert status == 404
    status, _, _ = request(f"{live.base_url}/whep/cam/nosuchviewer", "PATCH", "a=ice-ufrag:x\r\n",
                           {"Content-Type": "application/trickle-ice-sdpfrag"})
    assert status == 404
    status, headers, _ = request(f"{live.base_url}/whep/cam", "OPTIONS")
    assert status == 204 and headers["Access-Control-Allow-Origin"] == "*" and "POST" in headers["Allow"]

    # A viewer the attacks below must not disturb.
    url = f"{live.base_url}/whep/cam"
    process = subprocess.Popen([PYTHON, str(HERE / "whep_viewer.py"), url, "--duration", "6"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # An offer whose answer gives us a real ufrag, for a check with the wrong password.
    status, headers, answer = post_offer(live, "cam")
    assert status == 201
    ufrag = next(line.split(":", 1)[1] for line in answer.splitlines() if line.startswith("a=ice-ufrag:"))
    resource = headers["Location"]
    status, headers, _ = request(live.base_url + resource, "PATCH",
                                 "a=ice-ufrag:d0N5\r\na=ice-pwd:SqRrl7mwLocSxrwZXP9Zeo\r\n"
                                 "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n",
                                 {"Content-Type": "application/trickle-ice-sdpfrag", "If-Match": headers["ETag"]})
    assert status == 204
    status, _, _ = request(live.base_url + resource, "PATCH", "a=ice-ufrag:other\r\n",
                           {"Content-Type": "application/trickle-ice-sdpfrag"})
    assert status == 422
    media = ("127.0.0.1", live.media_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for index in range(200):
            sock.sendto(os.urandom(1 + index % 300), media)  # garbage of every first byte
        sock.sendto(stun_binding(f"{ufrag}:d0N5", key=b"wrong password"), media)
        sock.sendto(stun_binding("nobody:d0N5", key=b"x"), media)
        sock.sendto(bytes([0x16, 0xFE, 0xFD]) + os.urandom(40), media)  # DTLS from nowhere
        sock.sendto(bytes([0x80, 0xC8]) + os.urandom(40), media)  # SRTCP from nowhere
    out, err = process.communicate(timeout=60)
    report = json.loads(out.strip().splitlines()[-1])
    assert report["frames"] > 90, f"the viewer suffered: {report} {err[-1000:]}"
    status, _, _ = request(live.base_url + resource, "DELETE")
    assert status == 204
    time.sleep(2.5)  # metrics are published at each sync
    _, _, text = live.get("/metrics")
    assert 'switchboard_media_dropped_total{reason="stun_integrity"} 1' in text, text
    assert 'switchboard_media_dropped_total{reason="stun_unknown_user"} 1' in text, text
    assert metric_sum(text, 'switchboard_media_dropped_total{reason="unknown_source"}') >= 2
    assert metric_sum(text, 'switchboard_media_dropped_total{reason="malformed"}') >= 1
    assert live.process.poll() is None


def metric_sum(text, prefix):
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def stun_binding(username, key):
    """A STUN Binding request with USERNAME and a MESSAGE-INTEGRITY made with `key`."""
    import hashlib
    import hmac
    name = username.encode()
    attribute = struct.pack("!HH", 0x0006, len(name)) + name + b"\0" * (-len(name) % 4)
    header = struct.pack("!HHI", 0x0001, len(attribute) + 24, 0x2112A442) + os.urandom(12)
    mac = hmac.new(key, header + attribute, hashlib.sha1).digest()
    return header + attribute + struct.pack("!HH", 0x0008, 20) + mac


def test_a_viewer_with_the_wrong_certificate_gets_no_media(live):
    live.push()
    assert wait_for_status(live, "cam", 201)[0] == 201
    code, report = viewer(f"{live.base_url}/whep/cam", "--tamper-fingerprint", "--duration", "4")
    assert report["status"] == 201
    assert report["frames"] == 0 and report["audio_frames"] == 0, report
    time.sleep(2.5)
    _, _, text = live.get("/metrics")
    assert metric_sum(text, 'switchboard_media_dtls_failures_total{reason="fingerprint"}') >= 1, text


def test_a_stream_with_a_token_needs_it(sb):
    server = start_server(sb)
    try:
        result = sb.ok("stream", "add", "private", "--video-port", str(free_port()), "--token")
        token = result.stdout.split("token: ")[1].strip()
        assert sb.sql("SELECT count(*) FROM streams WHERE token_sha256 IS NOT NULL;").strip() == "1"
        assert token not in sb.dump()
        status, headers, _ = wait_for_status(server, "private", 401)
        assert status == 401 and "Bearer" in headers["WWW-Authenticate"]
        status, _, _ = post_offer(server, "private", headers={"Authorization": "Bearer wrong"})
        assert status == 401
        status, _, _ = post_offer(server, "private", headers={"Authorization": f"Bearer {token}"})
        assert status == 409  # let in; nothing is streaming yet
        sb.ok("stream", "remove", "private")
        assert wait_for_status(server, "private", 404)[0] == 404
    finally:
        server.process.kill()
        server.process.wait()


def test_streams_from_the_config_file_are_registered_at_start(sb, tmp_path):
    port = free_port()
    config = tmp_path / "switchboard.json"
    config.write_text(json.dumps({"streams": [f"lobby:{port}"]}))
    server = start_server(sb, "--config", str(config))
    try:
        listed = json.loads(sb.ok("stream", "list", "--json").stdout)
        assert [(s["name"], s["video_port"], s.get("audio_port")) for s in listed] == [("lobby", port, None)]
        assert wait_for_status(server, "lobby", 409)[0] == 409  # known to the edge, waiting for media
        assert "stream.add" in sb.sql("SELECT action FROM audit_log WHERE actor = 'system';")
    finally:
        server.process.kill()
        server.process.wait()


def test_chromium_plays_the_play_page(tmp_path, capsys):
    """Headless Chromium opens /play/cam; getStats() reports decoded frames. Server, ffmpeg
    and browser share a network namespace with only loopback."""
    result = subprocess.run(["unshare", "-n", "--", PYTHON, str(HERE / "browser_play.py"), "--bin", str(BIN),
                             "--work", str(tmp_path)], capture_output=True, text=True, timeout=180, cwd=HERE)
    assert result.stdout.strip(), result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 0, report
    assert report["framesDecoded"] > 0 and report["audioPackets"] > 0, report
    assert report["state"] == "connected", report
    with capsys.disabled():
        print(f"\n  chromium /play page: {report['framesDecoded']} frames decoded after {report['seconds']} s")
