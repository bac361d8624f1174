"""aiortc's SCTP stack (RTCSctpTransport) as the far end of SCTPAssociationInteropTests.

No DTLS: SCTP packets travel over stdin/stdout, each framed by a 2-byte big-endian length.
aiortc plays the DTLS server (odd stream ids). It echoes every message it receives on the
channel the Swift side opens, and opens its own channel "from-aiortc" (protocol "p") on which it
sends "hello" and then 100000 bytes of binary data.
"""
import asyncio
import struct
import sys

from aiortc.rtcdatachannel import RTCDataChannel, RTCDataChannelParameters
from aiortc.rtcsctptransport import RTCSctpCapabilities, RTCSctpTransport


class Pipe:
    state = "connected"
    _role = "server"

    def __init__(self):
        self._data_receiver = None

    def _register_data_receiver(self, receiver):
        self._data_receiver = receiver

    def _unregister_data_receiver(self, receiver):
        self._data_receiver = None

    async def _send_data(self, data):
        sys.stdout.buffer.write(struct.pack("!H", len(data)) + data)
        sys.stdout.buffer.flush()


async def main():
    loop = asyncio.get_event_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    pipe = Pipe()
    sctp = RTCSctpTransport(pipe)

    @sctp.on("datachannel")
    def on_channel(channel):
        @channel.on("message")
        def on_message(message):
            channel.send(message)

    await sctp.start(RTCSctpCapabilities(maxMessageSize=262144), 5000)

    async def open_own():
        while sctp.state != "connected":
            await asyncio.sleep(0.01)
        own = RTCDataChannel(sctp, RTCDataChannelParameters(label="from-aiortc", protocol="p"))

        @own.on("open")
        def on_open():  # after our DCEP ACK
            own.send("hello")
            own.send(bytes(i % 251 for i in range(100000)))

    asyncio.ensure_future(open_own())
    while True:
        try:
            header = await reader.readexactly(2)
            data = await reader.readexactly(struct.unpack("!H", header)[0])
        except asyncio.IncompleteReadError:
            return
        if pipe._data_receiver is not None:
            await pipe._data_receiver._handle_data(data)


asyncio.run(main())
