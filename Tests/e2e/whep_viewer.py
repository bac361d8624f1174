"""A WHEP player built on aiortc: what a viewer app does to play a Switchboard stream.

    whep_viewer.py URL [--token T] [--frames N] [--audio-frames N] [--duration S] [--timeout S]
                   [--tamper-fingerprint]

It offers recvonly video + audio, POSTs the offer to URL (retrying while the server answers
409 + Retry-After, as WHEP players do), applies the answer, and decodes what arrives. It
stops after --frames decoded video frames and --audio-frames audio frames (default 10), or after --duration seconds when
given, then DELETEs the viewer. The last stdout line is a JSON report: frames, audio frames,
ms from POST to the first decoded frame, and the frame counts per second.

--tamper-fingerprint changes the offer's a=fingerprint, so the DTLS certificate the viewer
presents does not match what it announced: the server must refuse to send it media.
"""
import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

# Keep every candidate on loopback: the machine's other interfaces are not for tests.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"] if use_ipv4 else []


def post(url, body, token=None, method="POST"):
    headers = {"Content-Type": "application/sdp"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body.encode() if body is not None else None, headers=headers,
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def tamper(sdp):
    lines = []
    for line in sdp.splitlines():
        if line.startswith("a=fingerprint:sha-256 "):
            head, value = line.rsplit(" ", 1)
            first = "00" if value[:2] != "00" else "11"
            line = f"{head} {first}{value[2:]}"
        lines.append(line)
    return "\r\n".join(lines) + "\r\n"


async def play(args):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    report = {"frames": 0, "audio_frames": 0, "first_frame_ms": None, "per_second": [], "status": None,
              "width": None, "height": None, "connection": None, "first_audio_ms": None}
    done = asyncio.Event()
    start = None

    async def read_video(track):
        nonlocal start
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            report["frames"] += 1
            report["width"], report["height"] = frame.width, frame.height
            if report["first_frame_ms"] is None:
                report["first_frame_ms"] = round((time.monotonic() - start) * 1000, 1)
            if args.duration is None and report["frames"] >= args.frames and report["audio_frames"] >= args.audio_frames:
                report.setdefault("done_ms", round((time.monotonic() - start) * 1000, 1))
                done.set()

    async def read_audio(track):
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            report["audio_frames"] += 1
            if report["first_audio_ms"] is None:
                report["first_audio_ms"] = round((time.monotonic() - start) * 1000, 1)
            if args.duration is None and report["frames"] >= args.frames and report["audio_frames"] >= args.audio_frames:
                report.setdefault("done_ms", round((time.monotonic() - start) * 1000, 1))
                done.set()

    tasks = []

    @pc.on("track")
    def on_track(track):
        tasks.append(asyncio.ensure_future(read_video(track) if track.kind == "video" else read_audio(track)))

    @pc.on("connectionstatechange")
    def on_state():
        report["connection"] = pc.connectionState
        if pc.connectionState == "connected":
            report.setdefault("connected_ms", round((time.monotonic() - start) * 1000, 1))

    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    if args.tamper_fingerprint:
        offer = tamper(offer)
    deadline = time.monotonic() + args.timeout
    while True:
        start = time.monotonic()
        status, headers, body = await asyncio.to_thread(post, args.url, offer, args.token)
        if status != 409 or time.monotonic() > deadline:
            break
        await asyncio.sleep(float(headers.get("Retry-After", "1")))
    report["status"] = status
    if status != 201:
        report["error"] = body
        print(json.dumps(report))
        await pc.close()
        return 2
    location = urllib.parse.urljoin(args.url, headers["Location"])
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

    async def sample():
        while True:
            await asyncio.sleep(1)
            report["per_second"].append([report["frames"], report["audio_frames"]])

    sampler = asyncio.ensure_future(sample())
    try:
        await asyncio.wait_for(done.wait(), timeout=args.duration if args.duration is not None else args.timeout)
    except asyncio.TimeoutError:
        pass
    sampler.cancel()
    status, _, _ = await asyncio.to_thread(post, location, None, args.token, "DELETE")
    report["delete_status"] = status
    for task in tasks:
        task.cancel()
    await pc.close()
    print(json.dumps(report))
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--token")
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--audio-frames", type=int, default=10)
    parser.add_argument("--duration", type=float)
    parser.add_argument("--timeout", type=float, default=20)
    parser.add_argument("--tamper-fingerprint", action="store_true")
    args = parser.parse_args()
    sys.exit(asyncio.run(play(args)))


if __name__ == "__main__":
    main()
