import FuzzSupport
import NIOCore
import Wire

/// libFuzzer entry point. Whatever STUN, ChannelData or RTP parses must re-encode to a message
/// that parses to the same value; RTCP, whose writer normalizes (padding, lists), must reach a
/// fixed point after one round; nothing may crash, and typed readers must only throw.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    let buffer = ByteBuffer(bytes: bytes)

    if let message = try? STUNMessage(datagram: buffer) {
        // Exercise every typed reader; each may throw, none may trap.
        _ = try? message.xorAddresses(.xorPeerAddress)
        _ = try? message.xorAddress(.xorMappedAddress)
        _ = try? message.address(.mappedAddress)
        _ = try? message.errorCode()
        _ = try? message.unknownAttributes()
        for type in [STUNAttributeType.username, .realm, .nonce, .software] { _ = try? message.text(type) }
        _ = try? message.lifetime()
        _ = try? message.requestedTransport()
        _ = try? message.channelNumber()
        _ = try? message.evenPort()
        _ = try? message.addressFamily(.requestedAddressFamily)
        _ = try? message.reservationToken()
        _ = message.verifyIntegrity(key: [1, 2, 3])
        _ = message.verifyIntegritySHA256(key: [1, 2, 3])
        _ = message.fingerprintIsValid
        _ = message.unknownComprehensionRequired(known: [])

        // Re-encode property: the attributes that count survive a round trip unchanged.
        let plain = STUNMessage(type: message.type, transactionID: message.transactionID,
                                attributes: message.attributes.filter {
                                    $0.type != .messageIntegrity && $0.type != .messageIntegritySHA256
                                        && $0.type != .fingerprint
                                })
        guard let again = try? STUNMessage(bytes: plain.encoded()), again == plain else {
            fatalError("STUN message did not survive re-encoding: \(bytes)")
        }
    }

    if let channelData = try? ChannelData(datagram: buffer, range: ChannelData.rfc5766ChannelRange) {
        var out = ByteBuffer()
        channelData.write(to: &out, padded: false)
        guard let again = try? ChannelData(datagram: out, range: ChannelData.rfc5766ChannelRange),
              again == channelData else {
            fatalError("ChannelData did not survive re-encoding: \(bytes)")
        }
    }

    if let rtp = try? RTPPacket(datagram: buffer) {
        guard let again = try? RTPPacket(datagram: rtp.bytes), again == rtp else {
            fatalError("RTP packet did not survive re-encoding: \(bytes)")
        }
    }

    if let rtcp = try? RTCPPacket.parseCompound(buffer) {
        func reencode(_ packets: [RTCPPacket]) -> [RTCPPacket]? {
            var out = ByteBuffer()
            RTCPPacket.writeCompound(packets, to: &out)
            return try? RTCPPacket.parseCompound(out)
        }
        guard let once = reencode(rtcp), let twice = reencode(once), once == twice else {
            fatalError("RTCP compound did not reach a fixed point: \(bytes)")
        }
    }

    // SDP: any text that passes the shape check parses without trapping, codecs too.
    if let text = String(validating: bytes, as: UTF8.self), let description = try? SessionDescription(parsing: text) {
        for media in description.media {
            _ = try? media.codecs()
            _ = description.iceCredentials(for: media)
            _ = description.fingerprints(for: media)
        }
        _ = description.bundle
    }

    // H.264 depacketizing: the input split into payloads at each 0xFF byte.
    var depacketizer = H264.Depacketizer()
    for (index, part) in bytes.split(separator: 0xFF, omittingEmptySubsequences: false).enumerated() {
        _ = try? depacketizer.push(payload: ByteBuffer(bytes: part), sequenceNumber: UInt16(truncatingIfNeeded: index),
                                   timestamp: 0)
    }

    // The per-packet H.264 readers the media edge's ingest uses: any payload, no trap.
    _ = H264.nalTypes(startingIn: bytes)
    _ = H264.nalTypes(startingIn: bytes.dropFirst())
    _ = H264.ProfileLevelID(sps: bytes)?.profile
    if let text = String(validating: bytes.prefix(6), as: UTF8.self) { _ = H264.ProfileLevelID(hex: text)?.description }

    // Stream framing over the same bytes.
    var stream = buffer
    while let frame = try? StreamFrame.next(in: stream, rfc5766Channels: true) {
        guard frame.length > 0, let _ = stream.readSlice(length: frame.length) else {
            fatalError("framing returned an impossible length")
        }
    }
    return 0
}

@_cdecl("WireFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, length in fuzz(start, length) }
}
