import DTLS
import DataChannel
import ICE
import Logging
import NIOCore
import NIOPosix
import TURNClient
import Wire

/// Datagrams on the ICE bases (STUN, DTLS, TURN-relayed), DTLS, and the SCTP association
/// on top of it (RFC 8261).
extension PeerConnection {
    // MARK: Datagrams

    func receive(_ bytes: [UInt8], from: TransportAddress, base: Int) {
        guard !isClosed, let first = bytes.first else { return }
        let iceBase = ICEBase(id: base)
        switch first {
        case 0...3:
            var buffer = ByteBuffer(bytes: bytes)
            guard let message = try? STUNMessage(parsing: &buffer) else { return }
            let answeredBefore = agent.selectedPairAnsweredAt
            agent.receive(message, from: from, base: iceBase, now: now)
            if let answered = agent.selectedPairAnsweredAt, answered != answeredBefore { restartPolicy.answered() }
        case 20...63:
            // DTLS only from a path ICE checked: a stranger's ClientHello must not start a
            // handshake that then fails the whole connection. The peer's first flight can
            // overtake our check's answer: it waits (a few) until that pair succeeds.
            guard isChecked(base: iceBase, from: from) else {
                if unverified.count < 8 { unverified.append((iceBase, from, bytes)) }
                agent.noteTraffic(from: from, base: iceBase, now: now)
                flush()
                return
            }
            lastInbound = (iceBase, from)
            restartPolicy.received(at: .now())
            agent.noteTraffic(from: from, base: iceBase, now: now)
            guard let dtls else {
                // A ClientHello before the answer's description: keep a few.
                if earlyDatagrams.count < 8 { earlyDatagrams.append(bytes) }
                return
            }
            handle(dtls.receive(bytes))
        default:
            return
        }
        flush()
    }

    func isChecked(base: ICEBase, from: TransportAddress) -> Bool {
        if let selected, selected.base == base, selected.remoteAddress == from { return true }
        return agent.checklist.contains { $0.base == base && $0.remoteAddress == from && $0.state == .succeeded }
    }

    func sendDatagram(_ bytes: [UInt8], base: ICEBase, to: TransportAddress) {
        var buffer = ByteBuffer(bytes: bytes)
        if let socket = sockets[base.id] {
            // Written now, flushed once after what the loop is doing: the datagrams one event
            // made (an SCTP burst is up to 10 packets) leave in one sendmmsg.
            socket.write(AddressedEnvelope(remoteAddress: SocketAddress(to), data: buffer), promise: nil)
            if !flushScheduled {
                flushScheduled = true
                loop.execute { [self] in
                    flushScheduled = false
                    for socket in sockets.values { socket.flush() }  // a no-op where nothing waits
                }
            }
        } else if let relay = relays[base.id] {
            relay.connection.send(buffer, to: to)
        } else {
            buffer.clear()
        }
    }

    /// Sends DTLS on the selected pair, or back where the last DTLS datagram came from
    /// before ICE selected one (the controlled side, before nomination). `asksForAnswer`: the
    /// peer will reply (SCTP data, a heartbeat, a handshake flight), so silence after it means
    /// the path broke; a bare acknowledgement gets no reply on a path that works.
    func sendOnPath(_ datagrams: [[UInt8]], asksForAnswer: Bool) {
        let path = selected.map { ($0.base, $0.remoteAddress) } ?? lastInbound.map { ($0.base, $0.from) }
        guard let (base, to) = path else { return }
        if asksForAnswer && !datagrams.isEmpty { restartPolicy.sent(at: .now()) }
        for datagram in datagrams { sendDatagram(datagram, base: base, to: to) }
    }

    // MARK: DTLS and SCTP

    func handle(_ output: DTLSEndpoint.Output) {
        // Handshake flights are answered; after it, DTLS itself sends only alerts.
        var handshaking = false
        if let dtls, case .handshaking = dtls.state { handshaking = true }
        sendOnPath(output.datagrams, asksForAnswer: handshaking)
        for event in output.events {
            switch event {
            case .connected:
                logger.debug("DTLS connected", metadata: ["role": "\(String(describing: dtlsRole))"])
                startSCTP()
            case .closeNotifyReceived: fail("the peer closed the connection")
            case .failed(let failure): fail("DTLS: \(failure)")
            default: break
            }
        }
        for data in output.applicationData { sctp?.input(data) }
    }

    func startDTLSIfReady() {
        if dtls != nil, dtlsRole == .client, !dtlsStarted, selected == nil, lastInbound == nil {
            logger.trace("DTLS client waits for a path")
        }
        guard let dtls, dtlsRole == .client, selected != nil || lastInbound != nil, case .handshaking = dtls.state,
              !dtlsStarted else { return }
        dtlsStarted = true
        handle(dtls.start())
    }

    func startSCTP() {
        guard sctp == nil, let dtlsRole else { return }
        var configuration = SCTPAssociation.Configuration()
        configuration.remotePort = remote?.sctpPort ?? 5000
        configuration.remoteMaxMessageSize = remote?.maxMessageSize ?? 65_536
        // Data lost while the path was down goes again soon after an ICE restart brings it
        // back (at most 1 s after), and an outage of about 30 s is survived (ICE's consent
        // timeout decides before that).
        configuration.maximumRTO = 1000
        configuration.maximumRetransmissions = 32
        let association = SCTPAssociation(role: dtlsRole == .client ? .client : .server, configuration: configuration,
                                          output: { [weak self] packet in self?.sctpOutput(packet) },
                                          onEvent: { [weak self] event in self?.sctpEvent(event) })
        sctp = association
        association.start()
    }

    func sctpOutput(_ packet: [UInt8]) {
        guard let dtls else { return }
        do {
            sendOnPath(try dtls.write(packet), asksForAnswer: SCTPPacket.asksForAnswer(packet))
        } catch {
            logger.debug("SCTP packet not sent: \(error)")
        }
    }

    func sctpEvent(_ event: SCTPAssociation.Event) {
        switch event {
        case .associationUp:
            logger.debug("SCTP association up")
            reportConnected()
            for tunnel in unopened { open(tunnel) }
            unopened.removeAll()
        case .channelOpened(let id, let label, _):
            let tunnel = DataChannelTunnel(id: id, service: label, connection: self, incoming: true)
            tunnel.credit = makeCredit()
            tunnels[id] = tunnel
            callbacks.incomingStream(tunnel)
        case .channelOpenAcked:
            break
        case .message(let id, let bytes, let binary):
            guard let tunnel = tunnels[id] else { return }
            if tunnel.credit != nil {
                received(bytes, binary: binary, on: tunnel, id: id)
            } else if !binary && !tunnel.incoming {
                // Text on a channel we opened is the exposing side's refusal; on one the
                // peer opened (a browser's dc.send("GET /…")) it is just bytes.
                tunnel.arrived(.refused(String(buffer: bytes)))
            } else if !binary {
                tunnel.arrived(.bytes(bytes))
            } else if bytes.readableBytes == 0 {
                tunnel.arrived(.end)
            } else {
                tunnel.arrived(.bytes(bytes))
            }
        case .channelClosed(let id):
            if let tunnel = tunnels.removeValue(forKey: id) { tunnel.arrived(.closed) }
        case .bufferedAmountLow(let id):
            if let tunnel = tunnels[id] { drain(tunnel) }
        case .associationDown(let reason):
            fail("SCTP association down: \(reason)")
        }
    }

    /// A message on a stream that uses credit: bytes count against what we granted; text is
    /// a control message (a grant, or a refusal). A peer that breaks the rules loses the stream.
    func received(_ bytes: ByteBuffer, binary: Bool, on tunnel: DataChannelTunnel, id: DataChannelID) {
        do {
            if binary {
                if bytes.readableBytes == 0 {
                    tunnel.arrived(.end)
                } else {
                    try tunnel.credit?.received(bytes.readableBytes)
                    tunnel.arrived(.bytes(bytes))
                }
                return
            }
            let control = try TunnelControl.decode(bytes)
            if let amount = control.credit {
                try tunnel.credit?.granted(amount)
                drain(tunnel)
            } else if let reason = control.refused {
                tunnel.arrived(.refused(reason))
            }
        } catch {
            logger.warning("stream closed: the peer broke its flow control", metadata: ["error": "\(error)"])
            tunnels.removeValue(forKey: id)
            sctp?.closeChannel(id)
            tunnel.arrived(.closed)
        }
    }

    /// Grants the peer `amount` more bytes on `tunnel` (its reader took them). Grants go
    /// straight to SCTP, never behind the tunnel's own backlog (which may itself wait for the
    /// peer's credit); one SCTP cannot take yet goes with the next drain.
    func grant(_ amount: Int, on tunnel: DataChannelTunnel) {
        tunnel.pendingGrant += amount
        sendGrant(tunnel)
    }

    func sendGrant(_ tunnel: DataChannelTunnel) {
        guard tunnel.pendingGrant > 0, !tunnel.isClosed, let id = tunnel.id, tunnels[id] === tunnel, let sctp else { return }
        switch sctp.send(TunnelControl(credit: tunnel.pendingGrant).encoded(), on: id, binary: false) {
        case .sent, .wouldBlock: tunnel.pendingGrant = 0
        case .refused(.queueFull): break  // `.bufferedAmountLow` brings it back here
        case .refused: tunnel.pendingGrant = 0
        }
    }
}
