import Admission
import DTLS
import Datagram
import NIOCore
import SRTP
import Store
import Wire

/// The media socket (RFC 7983: STUN, DTLS and SRTP/SRTCP share it): ICE-lite checks, the DTLS
/// handshake, RTCP feedback (NACK, PLI/FIR), and the timers (DTLS retransmissions, Sender
/// Reports, consent and setup timeouts).
extension MediaCore {
    // MARK: - The media socket

    /// One datagram from the media port (RFC 7983: STUN, DTLS, SRTP/SRTCP share it).
    package func receive(_ datagram: ByteBuffer, from address: TransportAddress, now: MediaTime) {
        guard let first = datagram.getInteger(at: datagram.readerIndex, as: UInt8.self) else {
            counters.malformed += 1
            return
        }
        switch PacketKind(firstByte: first) {
        case .stun: handleSTUN(datagram, from: address, now: now)
        case .dtls: handleDTLS(datagram, from: address, now: now)
        case .rtpOrRTCP: handleSRTCP(datagram, from: address, now: now)
        default: counters.malformed += 1
        }
    }

    private func handleSTUN(_ datagram: ByteBuffer, from address: TransportAddress, now: MediaTime) {
        guard let message = try? STUNMessage(datagram: datagram) else {
            counters.stunMalformed += 1
            return
        }
        // Only Binding requests are for an ICE-lite agent; responses and indications are not.
        guard message.type == STUNMessageType(method: .binding, class: .request) else {
            counters.stunMalformed += 1
            return
        }
        guard let username = message[.username].map({ String(decoding: $0, as: UTF8.self) }),
              let colon = username.firstIndex(of: ":"),
              let viewer = byUfrag[String(username[..<colon])],
              username[username.index(after: colon)...] == viewer.negotiated.remoteUfrag[...] else {
            counters.stunUnknownUser += 1
            return
        }
        guard message.verifyIntegrity(key: viewer.localKey), message.fingerprintIsValid != false else {
            counters.stunBadIntegrity += 1
            return
        }
        let response = STUNMessage.bindingSuccess(to: message, from: address)
        send(ByteBuffer(bytes: response.encoded(integrityKey: viewer.localKey, fingerprint: true)), to: address)
        viewer.lastConsentNanos = now.nanos
        if !viewer.addresses.contains(address) {
            viewer.addresses.insert(address)
            byAddress[address] = viewer
        }
        if message.contains(.useCandidate) || viewer.selected == nil { viewer.selected = address }
        if viewer.state == .checking {
            viewer.state = .handshaking
            viewer.reachedDTLS = true
            if viewer.negotiated.dtlsClient {
                for datagram in viewer.dtls.start().datagrams { send(ByteBuffer(bytes: datagram), to: address) }
                scheduleDTLSTimer(viewer, now: now)
            }
        }
    }

    private func handleDTLS(_ datagram: ByteBuffer, from address: TransportAddress, now: MediaTime) {
        guard let viewer = byAddress[address], viewer.state == .handshaking || viewer.state == .playing else {
            counters.unknownSource += 1
            return
        }
        // Application data has no use here (SRTP carries the media): it is dropped.
        let output = datagram.withUnsafeReadableBytes { viewer.dtls.receive($0) }
        for reply in output.datagrams { send(ByteBuffer(bytes: reply), to: address) }
        switch viewer.dtls.state {
        case .connected where viewer.state == .handshaking:
            connected(viewer, now: now)
        case .failed:
            counters.dtlsFailures += 1
            fail(viewer, "dtls-failed")
        case .closed:
            remove(viewer, reason: "closed")
        default:
            scheduleDTLSTimer(viewer, now: now)
        }
    }

    /// DTLS is up: check the certificate against the offer, key SRTP, start the tracks.
    private func connected(_ viewer: Viewer, now: MediaTime) {
        guard let fingerprint = viewer.dtls.remoteFingerprint(), fingerprint.hex == viewer.negotiated.remoteFingerprint else {
            counters.fingerprintMismatches += 1
            fail(viewer, "fingerprint-mismatch")
            return
        }
        guard let keys = try? viewer.dtls.srtpKeyingMaterial() else {
            counters.dtlsFailures += 1
            fail(viewer, "srtp-failed")
            return
        }
        play(viewer, keys: keys, now: now)
    }

    /// SRTP keyed with what DTLS agreed on, and the tracks started (the cached keyframe goes
    /// out at once). Internal, not private: the media fuzz rig keys most of its viewers here
    /// directly, since a real handshake per viewer would be most of an input's time.
    func play(_ viewer: Viewer, keys: SRTPKeyingMaterial, now: MediaTime) {
        do {
            let weAreClient = viewer.negotiated.dtlsClient
            viewer.srtpOut = try SRTPSession(
                profile: keys.profile, key: weAreClient ? keys.clientKey : keys.serverKey,
                salt: weAreClient ? keys.clientSalt : keys.serverSalt, direction: .outbound)
            viewer.srtpIn = try SRTPSession(
                profile: keys.profile, key: weAreClient ? keys.serverKey : keys.clientKey,
                salt: weAreClient ? keys.serverSalt : keys.clientSalt, direction: .inbound)
        } catch {
            counters.dtlsFailures += 1
            fail(viewer, "srtp-failed")
            return
        }
        viewer.state = .playing
        leavePending(viewer)
        viewer.nextDTLSTimerNanos = nil
        viewer.nextReportNanos = now.nanos + configuration.reportIntervalNanos
        counters.viewersStarted += 1
        guard viewer.selected != nil, let stream = streams[viewer.stream] else { return }
        if var track = viewer.video, let video = stream.video {
            let sends = track.join(track: video, nowNanos: now.nanos)
            if !sends.isEmpty { counters.keyframesSent += 1 }
            for send in sends { transmit(send, on: &track, viewer: viewer, now: now) }
            viewer.video = track
        }
        if var track = viewer.audio, let audio = stream.audio {
            _ = track.join(track: audio, nowNanos: now.nanos)
            viewer.audio = track
        }
    }

    /// No media for this viewer; the next tick removes it with `reason`.
    private func fail(_ viewer: Viewer, _ reason: String) {
        viewer.state = .failed
        viewer.failure = reason
    }

    private func scheduleDTLSTimer(_ viewer: Viewer, now: MediaTime) {
        guard viewer.state == .handshaking, let timeout = viewer.dtls.nextTimeout else {
            viewer.nextDTLSTimerNanos = nil
            return
        }
        let (seconds, attoseconds) = timeout.components
        viewer.nextDTLSTimerNanos = now.nanos + UInt64(seconds) * 1_000_000_000 + UInt64(attoseconds / 1_000_000_000)
    }

    private func handleSRTCP(_ datagram: ByteBuffer, from address: TransportAddress, now: MediaTime) {
        guard let viewer = byAddress[address], viewer.state == .playing, let srtpIn = viewer.srtpIn else {
            counters.unknownSource += 1
            return
        }
        guard RTPPacket.isRTCP(datagram) else {
            counters.malformed += 1  // a sendonly edge takes no RTP from viewers
            return
        }
        let packets: [RTCPPacket]
        do {
            let plain = try srtpIn.unprotect(srtcp: Array(datagram.readableBytesView))
            packets = try RTCPPacket.parseCompound(ByteBuffer(bytes: plain))
        } catch {
            counters.srtcpFailures += 1
            return
        }
        for packet in packets { handleRTCP(packet, viewer: viewer, now: now) }
    }

    private func handleRTCP(_ packet: RTCPPacket, viewer: Viewer, now: MediaTime) {
        switch packet {
        case .receiverReport(_, let reports), .senderReport(_, _, _, _, _, let reports):
            // The viewer's stats are its video's, or its audio's when it has no video.
            let reported = viewer.video?.ssrc ?? viewer.audio?.ssrc
            for report in reports where report.ssrc == reported {
                viewer.packetsLost = Int(report.cumulativeLost)
                viewer.jitter = Int(report.jitter)
            }
        case .nack(_, let mediaSSRC, let lost):
            viewer.nacks += 1
            counters.nacks += 1
            resend(lost.prefix(64), ssrc: mediaSSRC, viewer: viewer, now: now)
        case .pictureLossIndication(_, let mediaSSRC):
            guard mediaSSRC == viewer.video?.ssrc else { return }
            askKeyframe(viewer, now: now)
        case .fullIntraRequest(_, let requests):
            guard requests.contains(where: { $0.ssrc == viewer.video?.ssrc }) else { return }
            askKeyframe(viewer, now: now)
        default:
            break
        }
    }

    private func askKeyframe(_ viewer: Viewer, now: MediaTime) {
        viewer.plis += 1
        counters.plis += 1
        guard var track = viewer.video, now.nanos >= track.lastKeyframeNanos + configuration.keyframeIntervalNanos else { return }
        track.keyframeWanted = true
        viewer.video = track
    }

    private func resend(_ lost: ArraySlice<UInt16>, ssrc: UInt32, viewer: Viewer, now: MediaTime) {
        guard let selected = viewer.selected, let stream = streams[viewer.stream] else { return }
        let isVideo = ssrc == viewer.video?.ssrc
        guard let track = isVideo ? viewer.video : (ssrc == viewer.audio?.ssrc ? viewer.audio : nil),
              let ingest = isVideo ? stream.video : stream.audio else { return }
        for sequence in lost {
            guard let send = track.lookup(sequence, in: ingest) else { continue }
            let bytes: ByteBuffer?
            if isVideo, let rtxType = viewer.rtxPayloadType {
                // RFC 4588 §4: the original sequence number, then the original payload.
                var payload = ByteBuffer()
                payload.writeInteger(send.sequence)
                var original = send.payload
                payload.writeBuffer(&original)
                let rtx = OutboundTrack.Send(sequence: viewer.rtxSequence, timestamp: send.timestamp, marker: send.marker,
                                             payload: payload)
                viewer.rtxSequence &+= 1
                bytes = viewer.protect(rtx, payloadType: rtxType, ssrc: viewer.rtxSSRC, allocator: allocator)
            } else {
                bytes = viewer.protect(send, payloadType: track.payloadType, ssrc: track.ssrc, allocator: allocator)
            }
            guard let bytes else { continue }
            viewer.retransmitted += 1
            viewer.bytesSent += bytes.readableBytes
            counters.retransmitted += 1
            counters.bytesSent += bytes.readableBytes
            self.send(bytes, to: selected)
        }
    }

    // MARK: - Time

    /// Timers: DTLS retransmissions, Sender Reports, consent and setup timeouts.
    package func tick(now: MediaTime) {
        for viewer in Array(viewers.values) {
            if viewer.state == .failed {
                remove(viewer, reason: viewer.failure ?? "failed")
                continue
            }
            if viewer.state != .playing, now.nanos >= viewer.createdNanos + configuration.setupTimeoutNanos {
                remove(viewer, reason: viewer.state == .checking ? "ice-timeout" : "dtls-timeout")
                continue
            }
            if now.nanos >= viewer.lastConsentNanos + configuration.consentTimeoutNanos {
                remove(viewer, reason: "consent")
                continue
            }
            if viewer.state == .handshaking, let due = viewer.nextDTLSTimerNanos, now.nanos >= due,
               let selected = viewer.selected {
                for datagram in viewer.dtls.handleTimeout().datagrams { send(ByteBuffer(bytes: datagram), to: selected) }
                if case .failed = viewer.dtls.state { fail(viewer, "dtls-failed") }
                scheduleDTLSTimer(viewer, now: now)
            }
            if viewer.state == .playing, now.nanos >= viewer.nextReportNanos {
                viewer.nextReportNanos = now.nanos + configuration.reportIntervalNanos
                sendReports(viewer, now: now)
            }
        }
    }

    /// A Sender Report per started track plus SDES CNAME (RFC 3550 §6.4.1, §6.5.1).
    private func sendReports(_ viewer: Viewer, now: MediaTime) {
        guard let selected = viewer.selected, let srtpOut = viewer.srtpOut else { return }
        let ntp = MediaClock.ntpTimestamp(unixSeconds: now.wall)
        var packets: [RTCPPacket] = []
        var sources: [(ssrc: UInt32, cname: String)] = []
        for track in [viewer.video, viewer.audio].compactMap({ $0 }) where track.packetsSent > 0 {
            packets.append(.senderReport(ssrc: track.ssrc, ntpTime: ntp, rtpTime: track.rtpTime(nowNanos: now.nanos),
                                         packetCount: track.packetsSent, octetCount: track.octetsSent, reports: []))
            sources.append((track.ssrc, viewer.cname))
        }
        guard !packets.isEmpty else { return }
        packets.append(.sourceDescription(sources))
        var buffer = ByteBuffer()
        RTCPPacket.writeCompound(packets, to: &buffer)
        guard let protected = try? srtpOut.protect(rtcp: Array(buffer.readableBytesView)) else { return }
        send(ByteBuffer(bytes: protected), to: selected)
    }
}
