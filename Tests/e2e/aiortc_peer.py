"""A WebRTC peer built on aiortc that signals through Switchboard, as a device or app would.

Run as its own process by the end-to-end tests:

    aiortc_peer.py --base-url URL --peer ID --key KEY --role caller --target ID --events sse|ws|poll
    aiortc_peer.py --base-url URL --peer ID --key KEY --role callee --events sse|ws|poll

Both sides log in, the caller posts an offer (Switchboard-Connect-Mode from --mode) and
trickles its candidates with PATCH; the callee gets the offer from its event stream, answers
with PATCH and trickles back. The caller sends an audio track and data-channel pings; the
callee echoes the pings and counts audio frames. The last line on stdout is a JSON report.
"""
import argparse
import asyncio
import http.client
import json
import sys
import threading
import time

import aioice.ice
from aiortc import (RTCConfiguration, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnection,
                    RTCSessionDescription)
from aiortc.mediastreams import AudioStreamTrack
from aiortc.sdp import candidate_from_sdp

from api_client import Client

# Keep every candidate on loopback (or, in the NAT lab, the peer's one inside address, from
# --host-address): the machine's other interfaces are not for tests.


class Signaling:
    """Switchboard's HTTP API, with events from SSE, WebSocket or long-poll into a queue."""

    def __init__(self, base_url, kind):
        self.client = Client(base_url)
        self.host, self.port = self.client.host, self.client.port
        self.kind = kind
        self.events = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.stopping = False

    @property
    def token(self):
        return self.client.token

    async def request(self, method, path, body=None, headers=None, expect=(200,)):
        status, headers, _, data = await asyncio.to_thread(self.client.request, method, path, body, headers)
        if status not in expect:
            raise RuntimeError(f"{method} {path}: {status} {data}")
        return headers, data

    async def login(self, peer, key):
        await asyncio.to_thread(self.client.login, peer, key)

    def start_events(self):
        if self.kind == "sse":
            threading.Thread(target=self._sse, daemon=True).start()
        elif self.kind == "ws":
            self.task = asyncio.ensure_future(self._ws())
        else:
            self.task = asyncio.ensure_future(self._poll())

    def _deliver(self, kind, data):
        self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, data))

    def _sse(self):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=120)
        connection.request("GET", "/v1/events", headers={"Authorization": f"Bearer {self.token}"})
        response = connection.getresponse()
        assert response.status == 200, response.status
        event = {}
        while not self.stopping:
            line = response.readline()
            if not line:
                return
            line = line.decode().rstrip("\n")
            if not line:
                if "data" in event:
                    self._deliver(event["event"], json.loads(event["data"]))
                event = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                event[name] = value

    async def _ws(self):
        from websockets.asyncio.client import connect
        async with connect(f"ws://{self.host}:{self.port}/v1/ws",
                           additional_headers={"Authorization": f"Bearer {self.token}"}) as socket:
            async for message in socket:
                event = json.loads(message)
                await self.events.put((event["type"], event["data"]))
                await socket.send(json.dumps({"ack": event["id"]}))

    async def _poll(self):
        cursor = 0
        while not self.stopping:
            _, body = await self.request("GET", f"/v1/events?after={cursor}&wait=5")
            for event in json.loads(body):
                cursor = event["id"]
                await self.events.put((event["type"], event["data"]))

    async def next(self, kind, timeout=30):
        while True:
            got, data = await asyncio.wait_for(self.events.get(), timeout)
            if got == kind:
                return data
            if got in ("closed", "expired"):
                raise RuntimeError(f"session {got} while waiting for {kind}")


def split_candidates(sdp):
    """The description without candidate lines, and the candidates as a trickle fragment
    (RFC 8840): ufrag/pwd, then per media section its mid and candidates, then end-of-candidates."""
    lines = [line for line in sdp.splitlines() if line]
    kept = [line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates"))]
    fragment = [line for line in lines if line.startswith(("a=ice-ufrag:", "a=ice-pwd:"))][:2]
    mid = None
    for line in lines:
        if line.startswith("m="):
            fragment.append(line)
        elif line.startswith("a=mid:"):
            mid = line
            fragment.append(line)
        elif line.startswith("a=candidate:") and mid:
            fragment.append(line)
    fragment.append("a=end-of-candidates")
    return "\r\n".join(kept) + "\r\n", "\r\n".join(fragment) + "\r\n"


async def add_fragment(pc, fragment):
    """Adds the candidates of a trickle fragment's first media section (the BUNDLE tag, which
    every bundled section shares); returns their types.

    The others are skipped: aiortc gives every section of its offer the same ICE credentials
    and a transport of its own, closes all but the first once BUNDLE is accepted, and the
    answerer's ICE could otherwise settle on a pair with a transport (and TURN allocation) that
    is gone a moment later: the CI failure where no audio came back though pings did."""
    types = []
    mid = None
    first = None
    for line in fragment.splitlines():
        if line.startswith("a=mid:"):
            mid = line[6:]
            first = mid if first is None else first
        elif line.startswith("a=candidate:") and mid != first:
            continue
        elif line.startswith("a=candidate:"):
            candidate = candidate_from_sdp(line[2:])
            candidate.sdpMid = mid
            types.append(candidate.type)
            await pc.addIceCandidate(candidate)
        elif line == "a=end-of-candidates":
            await pc.addIceCandidate(None)
    return types


def count_audio(pc, wanted, counter, done):
    """Counts decoded frames of the remote audio track until `wanted`."""
    @pc.on("track")
    def on_track(track):
        async def count():
            while counter[0] < wanted:
                await track.recv()
                counter[0] += 1
            done.set()
        asyncio.ensure_future(count())


def configuration(ice_servers, policy):
    servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
               for s in ice_servers]
    # aiortc's max-bundle advertises a transport it then closes; balanced gathers (and
    # allocates) per media section and keeps the first once the answer accepts BUNDLE.
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=(
        RTCIceTransportPolicy.RELAY if policy == "relay" else RTCIceTransportPolicy.ALL))


async def caller(args, signaling, report):
    _, body = await signaling.request("GET", "/v1/ice-servers")
    servers = json.loads(body)
    if args.mode == "relay":
        servers = [s for s in servers if any(u.startswith("turn") for u in s["urls"])]
    pc = RTCPeerConnection(configuration(servers, args.mode))
    OPEN.append(pc)
    channel = pc.createDataChannel("chat")
    pc.addTrack(AudioStreamTrack())
    pongs = []
    audio_frames, enough_audio = [0], asyncio.Event()
    count_audio(pc, args.audio_frames, audio_frames, enough_audio)
    opened = asyncio.Event()
    done = asyncio.Event()
    channel.on("open", opened.set)

    @channel.on("message")
    def on_message(message):
        pongs.append(message)
        if len(pongs) == args.messages:
            done.set()

    await pc.setLocalDescription(await pc.createOffer())
    offer, fragment = split_candidates(pc.localDescription.sdp)
    started = time.monotonic()
    headers, body = await signaling.request(
        "POST", f"/v1/peers/{args.target}/sessions", offer,
        {"Content-Type": "application/sdp", "Switchboard-Connect-Mode": args.mode,
         "Switchboard-Connect-Desc": "aiortc e2e"}, expect=(201,))
    location = headers["Location"]
    report["links"] = headers.get_all("Link") or []
    report["session"] = json.loads(body)
    await signaling.request("PATCH", location, fragment, {"Content-Type": "application/trickle-ice-sdpfrag"},
                            expect=(204,))
    report["local_candidate_types"] = sorted({line.split()[7] for line in fragment.splitlines()
                                              if line.startswith("a=candidate:")})
    report["stage"] = "answer"
    answer = await signaling.next("answer")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    report["stage"] = "remote candidates"
    remote = await signaling.next("candidates")
    report["remote_candidate_types"] = sorted(set(await add_fragment(pc, remote["sdpfrag"])))
    report["stage"] = "data channel open"
    await asyncio.wait_for(opened.wait(), 30)
    report["connect_seconds"] = round(time.monotonic() - started, 3)
    for n in range(args.messages):
        channel.send(f"ping {n}")
        await asyncio.sleep(0.02)
    report["stage"] = "pongs"
    await asyncio.wait_for(done.wait(), 30)
    report["pongs"] = len(pongs)
    report["pongs_in_order"] = pongs == [f"pong {n}" for n in range(args.messages)]
    report["stage"] = "audio"
    await asyncio.wait_for(enough_audio.wait(), 60)
    report["audio_frames"] = audio_frames[0]
    report["selected_pair"] = selected_pair(pc)
    # The callee hangs up once it has counted its audio.
    report["stage"] = "closed event"
    await signaling.next("closed", timeout=60)
    await pc.close()


async def callee(args, signaling, report):
    report["stage"] = "offer"
    offer = await signaling.next("offer")
    report["offer_from"] = offer["from"]
    report["offer_mode"] = offer["mode"]
    report["offer_policy"] = offer["ice_transport_policy"]
    pc = RTCPeerConnection(configuration(offer["ice_servers"], offer["ice_transport_policy"]))
    OPEN.append(pc)
    audio_frames, enough_audio = [0], asyncio.Event()
    count_audio(pc, args.audio_frames, audio_frames, enough_audio)
    messages = 0

    @pc.on("datachannel")
    def on_datachannel(channel):
        @channel.on("message")
        def on_message(message):
            nonlocal messages
            messages += 1
            channel.send(message.replace("ping", "pong"))

    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
    pc.addTrack(AudioStreamTrack())  # audio both ways
    await pc.setLocalDescription(await pc.createAnswer())
    answer, fragment = split_candidates(pc.localDescription.sdp)
    location = f"/v1/sessions/{offer['session']}"
    await signaling.request("PATCH", location, answer, {"Content-Type": "application/sdp"}, expect=(204,))
    await signaling.request("PATCH", location, fragment, {"Content-Type": "application/trickle-ice-sdpfrag"},
                            expect=(204,))
    report["local_candidate_types"] = sorted({line.split()[7] for line in fragment.splitlines()
                                              if line.startswith("a=candidate:")})
    report["stage"] = "remote candidates"
    remote = await signaling.next("candidates")
    report["remote_candidate_types"] = sorted(set(await add_fragment(pc, remote["sdpfrag"])))
    report["stage"] = "audio"
    await asyncio.wait_for(enough_audio.wait(), 60)
    report["audio_frames"] = audio_frames[0]
    report["messages"] = messages
    report["selected_pair"] = selected_pair(pc)
    await signaling.request("DELETE", location, expect=(204,))
    await pc.close()


# Peer connections to close however the run ends, so TURN allocations are released.
OPEN = []


def selected_pair(pc):
    """The candidate types of the ICE pair in use, from aioice's connection."""
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport.iceGatherer._connection
        pair = connection._nominated.get(1)
        if pair:
            return [pair.local_candidate.type, pair.remote_candidate.type]
    return None


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--role", choices=["caller", "callee"], required=True)
    parser.add_argument("--target")
    parser.add_argument("--events", choices=["sse", "ws", "poll"], default="sse")
    parser.add_argument("--mode", choices=["auto", "p2p", "relay"], default="relay")
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--audio-frames", type=int, default=100)
    parser.add_argument("--host-address", default="127.0.0.1",
                        help="the one host candidate address (a NAT lab peer's inside address)")
    args = parser.parse_args()
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [args.host_address] if use_ipv4 else []
    signaling = Signaling(args.base_url, args.events)
    await signaling.login(args.peer, args.key)
    signaling.start_events()
    report = {"peer": args.peer, "role": args.role}
    try:
        await (caller if args.role == "caller" else callee)(args, signaling, report)
        report["ok"] = True
    except Exception as error:  # the report says what failed; the test asserts on it
        report["ok"] = False
        report["error"] = f"{type(error).__name__} at {report.get('stage')}: {error}"
    for pc in OPEN:
        await pc.close()
    signaling.stopping = True
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
