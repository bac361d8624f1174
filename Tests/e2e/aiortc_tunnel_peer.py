"""An aiortc peer that speaks the agent's tunnel protocol (docs/agent.md) on a data channel,
to show that another WebRTC stack can be a peer of `switchboard agent`.

    aiortc_tunnel_peer.py --base-url URL --peer ID --key KEY --role offer --target AGENT --service NAME --request TEXT
        offers a data channel labelled NAME (protocol switchboard-tcp) to an exposing agent,
        sends TEXT as bytes and an end marker, and reads the answer until the agent's end
        marker or the channel closes.
        With --flood BYTES --flood-service SINK it first plays a broken agent: its offer claims
        per-stream credit (a=x-switchboard-stream-window), and it sends BYTES on a channel to
        SINK without waiting for any grant; the report says whether the agent closed that
        channel, then the request above goes on a new channel of the same connection.
    aiortc_tunnel_peer.py --base-url URL --peer ID --key KEY --role answer
        answers an agent's offer and echoes every stream back, upper-cased, honouring the
        end marker.

The last line on stdout is a JSON report."""
import argparse
import asyncio
import json
import logging
import os
import sys

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from aiortc_peer import Signaling, add_fragment, split_candidates


def configuration(ice_servers):
    return RTCConfiguration(iceServers=[RTCIceServer(urls=s["urls"], username=s.get("username"),
                                                     credential=s.get("credential")) for s in ice_servers])


async def offer(args, signaling, report):
    _, body = await signaling.request("GET", "/v1/ice-servers")
    pc = RTCPeerConnection(configuration(json.loads(body)))
    flood = pc.createDataChannel(args.flood_service, protocol="switchboard-tcp") if args.flood else None
    channel = flood or pc.createDataChannel(args.service, protocol="switchboard-tcp")
    answer_bytes = bytearray()
    done = asyncio.Event()
    opened = asyncio.Event()
    channel.on("open", opened.set)

    @channel.on("message")
    def on_message(message):
        if isinstance(message, str) and message.startswith('{"credit"'):
            report["grants"] = report.get("grants", 0) + 1  # the agent's per-stream grants
        elif isinstance(message, str):
            report["refused"] = message
            done.set()
        elif len(message) == 0:
            done.set()
        else:
            answer_bytes.extend(message)

    channel.on("close", done.set)
    await pc.setLocalDescription(await pc.createOffer())
    sdp, fragment = split_candidates(pc.localDescription.sdp)
    if args.flood:
        sdp += "a=x-switchboard-stream-window:1048576\r\n"
    headers, body = await signaling.request(
        "POST", f"/v1/peers/{args.target}/sessions", sdp,
        {"Content-Type": "application/sdp", "Switchboard-Connect-Desc": args.service}, expect=(201,))
    location = headers["Location"]
    await signaling.request("PATCH", location, fragment, {"Content-Type": "application/trickle-ice-sdpfrag"},
                            expect=(204,))
    answer = await signaling.next("answer")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    report["stage"] = "candidates"
    while not opened.is_set():
        try:
            remote = await asyncio.wait_for(signaling.next("candidates"), 5)
            await add_fragment(pc, remote["sdpfrag"])
        except asyncio.TimeoutError:
            break
    report["stage"] = "open"
    await asyncio.wait_for(opened.wait(), 20)
    if flood:
        report["stage"] = "flood"
        chunk = b"\x00" * 65536
        for _ in range(args.flood // len(chunk)):
            if flood.readyState != "open":
                break
            flood.send(chunk)
            await asyncio.sleep(0)
        try:
            await asyncio.wait_for(done.wait(), 20)
        except asyncio.TimeoutError:
            pass
        report["flood_closed"] = flood.readyState in ("closing", "closed")
        # The same peer connection goes on: a new, well-behaved stream.
        report["stage"] = "open after the flood"
        done.clear()
        opened.clear()
        channel = pc.createDataChannel(args.service, protocol="switchboard-tcp")
        channel.on("open", opened.set)
        channel.on("message", on_message)
        channel.on("close", done.set)
        await asyncio.wait_for(opened.wait(), 20)
    if not done.is_set() and channel.readyState == "open":  # a refusal may already have closed it
        channel.send(args.request.encode())
        channel.send(b"")  # end marker: the request is complete
    report["stage"] = "answer bytes"
    await asyncio.wait_for(done.wait(), 20)
    report["answer"] = answer_bytes.decode(errors="replace")
    await signaling.request("DELETE", location, expect=(204, 404))
    await pc.close()


async def answer(args, signaling, report):
    offer = await signaling.next("offer", timeout=60)
    report["offer_from"] = offer["from"]
    report["service"] = offer.get("desc")
    pc = RTCPeerConnection(configuration(offer["ice_servers"]))
    finished = asyncio.Event()
    streams = []

    @pc.on("datachannel")
    def on_datachannel(channel):
        streams.append({"label": channel.label, "protocol": channel.protocol, "bytes": 0})
        stream = streams[-1]

        @channel.on("message")
        def on_message(message):
            if isinstance(message, bytes) and len(message) == 0:
                channel.send(b"")  # our end marker after the echo
                finished.set()
            elif isinstance(message, bytes):
                stream["bytes"] += len(message)
                channel.send(message.upper())

    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    sdp, fragment = split_candidates(pc.localDescription.sdp)
    location = f"/v1/sessions/{offer['session']}"
    await signaling.request("PATCH", location, sdp, {"Content-Type": "application/sdp"}, expect=(204,))
    await signaling.request("PATCH", location, fragment, {"Content-Type": "application/trickle-ice-sdpfrag"},
                            expect=(204,))
    report["stage"] = "candidates"
    while not streams:
        try:
            remote = await asyncio.wait_for(signaling.next("candidates"), 2)
            await add_fragment(pc, remote["sdpfrag"])
        except asyncio.TimeoutError:
            pass
        except RuntimeError:
            break
    report["stage"] = "stream"
    await asyncio.wait_for(finished.wait(), 30)
    await asyncio.sleep(0.5)
    report["streams"] = streams
    await pc.close()


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--role", choices=["offer", "answer"], required=True)
    parser.add_argument("--target")
    parser.add_argument("--service", default="http")
    parser.add_argument("--request", default="GET / HTTP/1.0\r\n\r\n")
    parser.add_argument("--host-address", default="127.0.0.1")
    parser.add_argument("--flood", type=int, default=0)
    parser.add_argument("--flood-service", default="sink")
    args = parser.parse_args()
    if os.environ.get("AIORTC_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: [args.host_address] if use_ipv4 else []
    signaling = Signaling(args.base_url, "ws")
    await signaling.login(args.peer, args.key)
    signaling.start_events()
    report = {"peer": args.peer, "role": args.role}
    try:
        await (offer if args.role == "offer" else answer)(args, signaling, report)
        report["ok"] = True
    except Exception as error:  # the report says what failed; the test asserts on it
        report["ok"] = False
        report["error"] = f"{type(error).__name__} at {report.get('stage')}: {error}"
    signaling.stopping = True
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
