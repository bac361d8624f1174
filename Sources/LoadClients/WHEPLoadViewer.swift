import DTLS
import Foundation
import ICE
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import SRTP
import Wire

/// SyntheticH264 makes RTP packets shaped like an H.264 stream (RFC 6184): SPS, PPS and a
/// large IDR in FU-A fragments every GOP, P slices between. The bytes are not video; the
/// edge forwards without decoding, so only the shapes and sizes matter.
package final class SyntheticH264: Sendable {
    private struct State {
        package var frame = 0
        // Random starts, as RFC 3550 §5.1 asks and encoders do (Janus's keyframe buffer
        // takes a timestamp of 0 for "none": a stream starting there has no first keyframe).
        package var sequence = UInt16.random(in: 0...UInt16.max)
        package var timestamp = UInt32.random(in: 1...UInt32.max)
    }

    private let state = NIOLockedValueBox(State())
    private let framesPerGOP: Int
    private let idrBytes: Int
    private let pBytes: Int
    private let fpsTicks: UInt32

    package init(bitrate: Int, fps: Int, gopSeconds: Double) {
        framesPerGOP = max(1, Int(gopSeconds * Double(fps)))
        let bytesPerGOP = Int(Double(bitrate) / 8 * gopSeconds)
        idrBytes = max(1000, bytesPerGOP / 6)
        pBytes = max(100, (bytesPerGOP - idrBytes) / max(1, framesPerGOP - 1))
        fpsTicks = UInt32(90000 / fps)
    }

    package func nextFrame() -> [[UInt8]] {
        state.withLockedValue { state in
            var packets: [[UInt8]] = []
            func rtp(_ payload: [UInt8], marker: Bool) {
                var packet: [UInt8] = [0x80, (marker ? 0x80 : 0) | 96, UInt8(state.sequence >> 8), UInt8(state.sequence & 0xFF)]
                packet += withUnsafeBytes(of: state.timestamp.bigEndian, Array.init)
                packet += [0x12, 0x34, 0x56, 0x78]
                packets.append(packet + payload)
                state.sequence &+= 1
            }
            let keyframe = state.frame % framesPerGOP == 0
            if keyframe {
                rtp([0x67, 0x42, 0xC0, 0x1E, 0xDA, 0x02, 0x80, 0xBF, 0xE5, 0x84], marker: false)
                rtp([0x68, 0xCE, 0x3C, 0x80], marker: false)
            }
            let type: UInt8 = keyframe ? 5 : 1
            let size = keyframe ? idrBytes : pBytes
            if size <= 1100 {
                rtp([0x60 | type] + [UInt8](repeating: 0x5A, count: size), marker: true)
            } else {
                var offset = 0
                while offset < size {
                    let chunk = min(1100, size - offset)
                    let header: UInt8 = (offset == 0 ? 0x80 : 0) | (offset + chunk == size ? 0x40 : 0) | type
                    rtp([0x7C, header] + [UInt8](repeating: 0x5A, count: chunk), marker: offset + chunk == size)
                    offset += chunk
                }
            }
            state.frame += 1
            state.timestamp &+= fpsTicks
            return packets
        }
    }
}

/// WHEPLoadViewer is one WHEP viewer on its own UDP socket: ICE check, DTLS client, SRTP
/// receiver. Everything but `open`/`answer` runs on the bench's event loop.
package final class WHEPLoadViewer: @unchecked Sendable {
    package let ufrag: String
    package let password: String
    package let offerText: String
    package let context: DTLSContext
    /// Where ICE, DTLS and SRTP go: the answer's host candidate, else the --media address.
    package var server: TransportAddress
    package let bindHost: String
    /// Janus (libnice) sends one check back and takes DTLS only once it is answered; our
    /// ICE-lite edge sends none.
    package let waitsForRemoteCheck: Bool
    package let loop: any EventLoop
    package var channel: (any Channel)?
    package var dtls: DTLSEndpoint?
    package var srtp: SRTPSession?
    /// Our ICE check was answered.
    package var checkAnswered = false
    /// We answered the remote agent's check.
    package var remoteCheckAnswered = false
    package var dtlsStarted = false
    package var location: String?
    package var posted: ContinuousClock.Instant?
    package var firstFrame: Duration?
    package var failure: String?
    package var sawKeyframeStart = false
    package var received = 0
    package var highest: Int?
    package var lowest: Int?
    package var timer: RepeatedTask?
    package var ticks = 0

    package var counts: (received: Int, expected: Int) {
        guard let highest, let lowest else { return (0, 0) }
        return (received, highest - lowest + 1)
    }

    package init(context: DTLSContext, fingerprint: String, server: TransportAddress, bindHost: String = "127.0.0.1",
         waitsForRemoteCheck: Bool = false, loop: any EventLoop) throws {
        let credentials = ICECredentials.random()
        ufrag = credentials.ufrag
        password = credentials.password
        offerText = Self.offer(ufrag: ufrag, password: password, fingerprint: fingerprint)
        self.context = context
        self.server = server
        self.bindHost = bindHost
        self.waitsForRemoteCheck = waitsForRemoteCheck
        self.loop = loop
    }

    /// The answer to a sendonly offer (Janus's): its first H.264 section received with the
    /// offer's payload type and RTX, DTLS client, no candidates (ICE-lite peers learn the
    /// address from our check); every other section rejected.
    package static func answer(to offer: SessionDescription, ufrag: String, password: String, fingerprint: String) throws -> String {
        var lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0"]
        var sections: [String] = []
        var accepted: String?
        for media in offer.media {
            let codecs = try media.codecs()
            guard accepted == nil, media.kind == .video, let mid = media.mid,
                  let h264 = codecs.first(where: { $0.name.uppercased() == "H264" && $0.parameters["packetization-mode"] == "1" })
            else {
                sections += ["m=\(media.kind) 0 \(media.proto) \(media.formats.first ?? "0")", "c=IN IP4 0.0.0.0"]
                    + (media.mid.map { ["a=mid:\($0)"] } ?? []) + ["a=inactive"]
                continue
            }
            accepted = mid
            let rtx = codecs.first { $0.name.lowercased() == "rtx" && $0.associatedPayloadType == h264.payloadType }
            let pt = h264.payloadType
            var types = ["\(pt)"]
            if let rtx { types.append("\(rtx.payloadType)") }
            let fmtp: [String] = h264.parameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            sections += ["m=video 9 UDP/TLS/RTP/SAVPF \(types.joined(separator: " "))", "c=IN IP4 0.0.0.0", "a=mid:\(mid)"]
            sections += ["a=recvonly", "a=rtcp-mux", "a=ice-ufrag:\(ufrag)", "a=ice-pwd:\(password)"]
            sections += ["a=fingerprint:sha-256 \(fingerprint)", "a=setup:active", "a=rtpmap:\(pt) H264/90000"]
            sections += ["a=rtcp-fb:\(pt) nack", "a=rtcp-fb:\(pt) nack pli", "a=fmtp:\(pt) \(fmtp.joined(separator: ";"))"]
            if let rtx { sections += ["a=rtpmap:\(rtx.payloadType) rtx/90000", "a=fmtp:\(rtx.payloadType) apt=\(h264.payloadType)"] }
        }
        guard let accepted else { throw LoadError("the offer has no H.264 (packetization-mode=1) video") }
        lines.append("a=group:BUNDLE \(accepted)")
        return (lines + sections).joined(separator: "\r\n") + "\r\n"
    }

    package static func offer(ufrag: String, password: String, fingerprint: String) -> String {
        [
            "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
            "m=video 9 UDP/TLS/RTP/SAVPF 102 103", "c=IN IP4 0.0.0.0", "a=mid:0", "a=recvonly", "a=rtcp-mux",
            "a=rtcp-rsize", "a=ice-ufrag:\(ufrag)", "a=ice-pwd:\(password)", "a=fingerprint:sha-256 \(fingerprint)",
            "a=setup:actpass", "a=rtpmap:102 H264/90000", "a=rtcp-fb:102 nack", "a=rtcp-fb:102 nack pli",
            "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            "a=rtpmap:103 rtx/90000", "a=fmtp:103 apt=102",
        ].joined(separator: "\r\n") + "\r\n"
    }

    package func open() async throws {
        let channel = try await DatagramBootstrap(group: loop)
            .channelOption(.socketOption(.so_rcvbuf), value: 1 << 18)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(WHEPLoadViewerHandler(viewer: self))
                }
            }
            .bind(host: bindHost, port: 0).get()
        try await loop.submit { self.channel = channel }.get()
    }

    /// Takes the remote description (the edge's answer, or Janus's offer) and starts ICE:
    /// one check with USE-CANDIDATE, repeated until answered.
    package func answer(_ sdp: String, posted: ContinuousClock.Instant) async throws {
        let description = try SessionDescription(parsing: sdp)
        guard let media = description.media.first(where: { $0.port != 0 }) ?? description.media.first,
              let credentials = description.iceCredentials(for: media) else {
            throw LoadError("answer without ICE credentials")
        }
        let server = media.candidates.lazy.compactMap(Self.hostCandidate).first
        let dtls = try DTLSEndpoint(context: context, role: .client, remoteFingerprints: nil)
        try await loop.submit {
            if let server { self.server = server }
            self.posted = posted
            self.dtls = dtls
            var message = STUNMessage(.binding, .request)
            message.append(.username, Array("\(credentials.ufrag):\(self.ufrag)".utf8))
            message.append(.useCandidate, [])
            let check = message.encoded(integrityKey: Array(credentials.password.utf8), fingerprint: true)
            self.send(check)
            // Retries and DTLS timers, and a consent check every 5 s.
            self.timer = self.loop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { _ in
                self.ticks += 1
                let ticks = self.ticks
                if dtls.state == .handshaking && self.srtp == nil {
                    if !self.dtlsStarted && ticks % 5 == 0 { self.send(check) }
                    for datagram in dtls.handleTimeout().datagrams { self.send(datagram) }
                } else if ticks % 50 == 0 {
                    self.send(check)
                }
            }
        }.get()
    }

    /// The address of a UDP host candidate ("foundation component udp priority IP port typ host").
    package static func hostCandidate(_ line: String) -> TransportAddress? {
        let fields = line.split(separator: " ").map(String.init)
        guard fields.count >= 8, fields[2].lowercased() == "udp", fields[7] == "host",
              let ip = IPAddress(fields[4]), let port = UInt16(fields[5]) else { return nil }
        return TransportAddress(ip: ip, port: port)
    }

    package func send(_ bytes: [UInt8]) {
        channel?.writeAndFlush(AddressedEnvelope(remoteAddress: server.socketAddress, data: ByteBuffer(bytes: bytes)),
                               promise: nil)
    }

    package func receive(_ datagram: ByteBuffer, from: TransportAddress? = nil) {
        guard let first = datagram.getInteger(at: datagram.readerIndex, as: UInt8.self), let dtls else { return }
        switch PacketKind(firstByte: first) {
        case .stun:
            guard let message = try? STUNMessage(datagram: datagram) else { return }
            if message.type == STUNMessageType(method: .binding, class: .request), let from {
                // The remote agent's check (Janus sends one): answer it with our short-term key.
                let response = STUNMessage.bindingSuccess(to: message, from: from)
                send(response.encoded(integrityKey: STUNCredentials.shortTermKey(password: password), fingerprint: true))
                remoteCheckAnswered = true
            } else if message.type == STUNMessageType(method: .binding, class: .successResponse) {
                checkAnswered = true
            }
            // DTLS once our check is answered (and, for Janus, theirs too).
            if !dtlsStarted, checkAnswered, remoteCheckAnswered || !waitsForRemoteCheck, dtls.state == .handshaking {
                dtlsStarted = true
                for datagram in dtls.start().datagrams { send(datagram) }
            }
        case .dtls:
            for reply in datagram.withUnsafeReadableBytes({ dtls.receive($0) }).datagrams { send(reply) }
            if dtls.state == .connected, srtp == nil {
                guard let keys = try? dtls.srtpKeyingMaterial(),
                      let session = try? SRTPSession(profile: keys.profile, key: keys.serverKey, salt: keys.serverSalt,
                                                     direction: .inbound) else {
                    failure = "srtp"
                    return
                }
                srtp = session
            } else if case .failed(let reason) = dtls.state {
                failure = reason.description
            }
        case .rtpOrRTCP:
            guard let srtp, !RTPPacket.isRTCP(datagram),
                  let plain = try? srtp.unprotect(srtp: Array(datagram.readableBytesView)), plain.count > 13 else { return }
            received += 1
            let sequence = Int(plain[2]) << 8 | Int(plain[3])
            // Unwrap the 16-bit sequence against the highest seen.
            if let top = highest {
                var unwrapped = (top & ~0xFFFF) | sequence
                if unwrapped < top - 0x8000 { unwrapped += 0x10000 } else if unwrapped > top + 0x8000 { unwrapped -= 0x10000 }
                highest = max(top, unwrapped)
                lowest = min(lowest ?? unwrapped, unwrapped)
            } else {
                highest = sequence
                lowest = sequence
            }
            if firstFrame == nil {
                let nal = plain[12] & 0x1F
                if nal == 7 { sawKeyframeStart = true }
                if sawKeyframeStart, plain[1] & 0x80 != 0, let posted { firstFrame = ContinuousClock.now - posted }
            }
        default:
            break
        }
    }
}

package final class WHEPLoadViewerHandler: ChannelInboundHandler, @unchecked Sendable {
    package typealias InboundIn = AddressedEnvelope<ByteBuffer>
    package let viewer: WHEPLoadViewer

    package init(viewer: WHEPLoadViewer) { self.viewer = viewer }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        viewer.receive(envelope.data, from: TransportAddress(envelope.remoteAddress))
    }

    package func errorCaught(context: ChannelHandlerContext, error: any Error) {}
}
