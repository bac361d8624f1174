"""An aiortc viewer for a Janus streaming-plugin mountpoint, over the Janus REST API.

    janus_viewer.py [--url http://127.0.0.1:8088/janus] [--mountpoint 1] [--frames 30]
                    [--video-only] [--srtp all|cm80|gcm128|cm80+gcm128] [--timeout 20]
                    [--print-sdp] [--trace] [--ignore-stun-requests] [--host $VIEWER_ADDR]

Run it inside Benchmarks/janus/run-in-netns.sh. The exchange (what a load tool has to do):
  POST /janus                    {"janus":"create"}  -> data.id = session
  POST /janus/<session>          {"janus":"attach","plugin":"janus.plugin.streaming"} -> data.id = handle
  POST /janus/<session>/<handle> {"janus":"message","body":{"request":"watch","id":1}} -> "ack"
  GET  /janus/<session>?maxev=10 (long-poll) until an "event" whose "jsep" is the offer
  POST /janus/<session>/<handle> {"janus":"message","body":{"request":"start"},"jsep":<answer>}
Then we send STUN checks (USE-CANDIDATE) to Janus's host candidate; Janus (ICE-lite, libnice)
answers them, sends one STUN check of its own that MUST be answered, then does DTLS as server.

It keeps the session alive by long-polling in the background (and sends a keepalive every
--keepalive seconds, for Janus configs whose session_timeout is on), stops after --frames
decoded video frames, destroys the session, and prints a JSON report as the last line:
frames decoded, ms from the watch request to the offer / to connected / to the first decoded
frame, and the negotiated SRTP profile.
"""
import argparse
import asyncio
import json
import os
import random
import string
import sys
import threading
import time
import urllib.request

import aioice.ice
import aiortc.rtcdtlstransport
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError


def transaction():
    return "".join(random.choices(string.ascii_letters, k=12))


TRACE = False   # --trace: print every REST request and reply to stderr


def http(url, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    if TRACE:
        print(f">>> {'POST' if data else 'GET'} {url} {json.dumps(body) if data else ''}", file=sys.stderr)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if TRACE:
        print(f"<<< {json.dumps(reply)}", file=sys.stderr)
    return reply


class Janus:
    """The few Janus API calls a viewer needs, each run in a thread (urllib blocks)."""

    def __init__(self, url):
        self.url = url.rstrip("/")
        self.session = self.handle = None
        self.events = asyncio.Queue()   # plugin events / webrtcup / media / hangup, as they come

    async def call(self, path, body):
        body = {**body, "transaction": transaction()}
        reply = await asyncio.to_thread(http, self.url + path, body)
        if reply.get("janus") == "error":
            raise RuntimeError(f"Janus error: {reply['error']}")
        return reply

    async def create_and_attach(self):
        self.session = (await self.call("", {"janus": "create"}))["data"]["id"]
        self.handle = (await self.call(f"/{self.session}",
                                       {"janus": "attach", "plugin": "janus.plugin.streaming"}))["data"]["id"]

    async def message(self, body, jsep=None):
        request = {"janus": "message", "body": body}
        if jsep:
            request["jsep"] = jsep
        return await self.call(f"/{self.session}/{self.handle}", request)

    def start_polling(self):
        """Long-poll GET /janus/<session> in a daemon thread (Janus answers with events, or a
        keepalive after ~30 s idle); a daemon thread, so a pending poll never delays our exit."""
        loop = asyncio.get_running_loop()

        def poll():
            while True:
                try:
                    events = http(f"{self.url}/{self.session}?maxev=10", None, 40)
                except Exception as error:   # noqa: BLE001 - hand it to the waiter, then stop
                    loop.call_soon_threadsafe(self.events.put_nowait, {"janus": "poll-error", "error": str(error)})
                    return
                for event in events if isinstance(events, list) else [events]:
                    if event.get("janus") != "keepalive":
                        loop.call_soon_threadsafe(self.events.put_nowait, event)

        threading.Thread(target=poll, daemon=True).start()

    async def keepalive_forever(self, every):
        while True:
            await asyncio.sleep(every)
            await self.call(f"/{self.session}", {"janus": "keepalive"})

    async def destroy(self):
        if self.session is not None:
            await self.call(f"/{self.session}", {"janus": "destroy"})


async def play(args):
    janus = Janus(args.url)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    report = {"frames": 0, "first_frame_ms": None, "offer_ms": None, "connected_ms": None,
              "width": None, "height": None, "janus_events": []}
    enough = asyncio.Event()
    tasks = []

    async def read_video(track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            report["frames"] += 1
            report["width"], report["height"] = frame.width, frame.height
            if report["first_frame_ms"] is None:
                report["first_frame_ms"] = round((time.monotonic() - start) * 1000, 1)
            if report["frames"] >= args.frames:
                enough.set()

    async def drain_audio(track):
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return

    @pc.on("track")
    def on_track(track):
        tasks.append(asyncio.ensure_future(read_video(track) if track.kind == "video" else drain_audio(track)))

    @pc.on("connectionstatechange")
    def on_state():
        if pc.connectionState == "connected" and report["connected_ms"] is None:
            report["connected_ms"] = round((time.monotonic() - start) * 1000, 1)

    try:
        await janus.create_and_attach()
        report["session"], report["handle"] = janus.session, janus.handle
        janus.start_polling()
        tasks.append(asyncio.ensure_future(janus.keepalive_forever(args.keepalive)))

        start = time.monotonic()
        watch = {"request": "watch", "id": args.mountpoint}
        if args.video_only:
            watch["media"] = ["v"]   # mids of the legacy-style mountpoint: "a" audio, "v" video
        await janus.message(watch)   # "ack"; the offer comes as an event on the long-poll
        offer = None
        while offer is None:
            event = await asyncio.wait_for(janus.events.get(), args.timeout)
            report["janus_events"].append(event.get("plugindata", {}).get("data", event.get("janus")))
            if event.get("janus") == "poll-error" or "error" in event.get("plugindata", {}).get("data", {}):
                raise RuntimeError(f"watch failed: {event}")
            offer = event.get("jsep")
        report["offer_ms"] = round((time.monotonic() - start) * 1000, 1)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type=offer["type"]))
        await pc.setLocalDescription(await pc.createAnswer())   # aiortc: candidates inside the SDP
        answer = {"type": "answer", "sdp": pc.localDescription.sdp}
        if args.print_sdp:
            print("--- Janus offer ---\n" + offer["sdp"] + "--- aiortc answer ---\n" + answer["sdp"], file=sys.stderr)
        await janus.message({"request": "start"}, jsep=answer)

        async def log_events():
            while True:
                event = await janus.events.get()
                report["janus_events"].append(event.get("plugindata", {}).get("data", event.get("janus")))
        tasks.append(asyncio.ensure_future(log_events()))
        await asyncio.wait_for(enough.wait(), args.timeout)
        report["done_ms"] = round((time.monotonic() - start) * 1000, 1)
        ssl = getattr(pc.getTransceivers()[0].receiver.transport, "_ssl", None)   # aiortc internals
        report["srtp_profile"] = ssl.get_selected_srtp_profile().decode() if ssl else None
    except (asyncio.TimeoutError, RuntimeError, OSError) as error:
        report["error"] = repr(error)
    finally:
        report["connection"] = pc.connectionState
        await pc.close()
        for task in tasks:
            task.cancel()
        try:
            await janus.destroy()
        except Exception as error:   # noqa: BLE001 - report, do not mask the result
            report["destroy_error"] = repr(error)
    print(json.dumps(report))
    return 0 if report["frames"] >= args.frames else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8088/janus")
    parser.add_argument("--mountpoint", type=int, default=1)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=20, help="seconds to wait for the offer, then the frames")
    parser.add_argument("--keepalive", type=float, default=25, help="seconds between Janus keepalives")
    parser.add_argument("--video-only", action="store_true", help='watch with "media": ["v"] (no audio m-line)')
    parser.add_argument("--print-sdp", action="store_true", help="print Janus's offer and our answer to stderr")
    parser.add_argument("--srtp", choices=["all", "cm80", "gcm128", "cm80+gcm128"], default="all",
                        help="DTLS-SRTP profiles aiortc offers (all = AES-256-GCM, AES-128-GCM, CM-80)")
    parser.add_argument("--ignore-stun-requests", action="store_true",
                        help="never answer Janus's STUN checks, like a tool that only sends checks: "
                             "Janus then never completes ICE (libnice's ICE-lite still checks back)")
    parser.add_argument("--trace", action="store_true", help="print every REST request and reply to stderr")
    parser.add_argument("--host", default=os.environ.get("VIEWER_ADDR", "127.0.0.3"),
                        help="the only address aiortc gathers candidates on: one on Janus's ICE link "
                             "(run-in-netns.sh exports VIEWER_ADDR); 127.0.0.1 does not work")
    args = parser.parse_args()
    global TRACE
    TRACE = args.trace
    # Keep our candidates on the given address: never the machine's other interfaces.
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [args.host] if use_ipv4 else []
    dtls = aiortc.rtcdtlstransport
    profiles = {"cm80": [dtls.SRTP_AES128_CM_SHA1_80], "gcm128": [dtls.SRTP_AEAD_AES_128_GCM],
                "cm80+gcm128": [dtls.SRTP_AES128_CM_SHA1_80, dtls.SRTP_AEAD_AES_128_GCM]}
    if args.srtp in profiles:
        dtls.SRTP_PROFILES[:] = profiles[args.srtp]
    if args.ignore_stun_requests:
        aioice.ice.Connection.request_received = lambda self, message, addr, protocol: None
    sys.exit(asyncio.run(play(args)))


if __name__ == "__main__":
    main()
