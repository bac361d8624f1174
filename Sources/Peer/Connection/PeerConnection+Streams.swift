import DTLS
import DataChannel
import ICE
import Logging
import NIOCore
import NIOPosix
import TURNClient
import Wire

/// Streams: each tunnel is a data channel (DCEP, RFC 8832) with its own credit and backpressure.
extension PeerConnection {
    // MARK: Streams

    /// A new stream to the peer's `service` (its data channel opens once the association is up).
    func openStream(service: String) -> DataChannelTunnel {
        let tunnel = DataChannelTunnel(id: nil, service: service, connection: self)
        if isClosed {
            // Nothing would ever open or refuse it: the caller learns at once.
            tunnel.arrived(.refused("the peer connection is closed"))
            tunnel.arrived(.closed)
        } else if let sctp, sctp.isUp {
            open(tunnel)
        } else {
            unopened.append(tunnel)
        }
        return tunnel
    }

    func open(_ tunnel: DataChannelTunnel) {
        guard let sctp, !tunnel.isClosed else { return }
        do {
            let id = try sctp.openChannel(label: tunnel.service, protocol: "switchboard-tcp")
            tunnel.assign(id)
            tunnel.credit = makeCredit()
            tunnels[id] = tunnel
            drain(tunnel)
        } catch {
            tunnel.arrived(.refused("no data channel: \(error)"))
            tunnel.arrived(.closed)
        }
    }

    /// Queues bytes for the peer. Nothing is ever dropped: what SCTP cannot take yet (the
    /// channel is not open, or the association's queue is full) waits in the tunnel's
    /// backlog, and false tells the writer to stop reading until `writable()`.
    func send(_ bytes: ByteBuffer, on tunnel: DataChannelTunnel) -> Bool {
        // Messages no larger than the peer takes (`a=max-message-size`).
        let largest = max(1024, min(sctp?.configuration.remoteMaxMessageSize ?? 65_536, 65_536))
        var bytes = bytes
        while bytes.readableBytes > 0 {
            let chunk = bytes.readSlice(length: min(largest, bytes.readableBytes))!
            tunnel.backlog.append(.bytes(chunk))
            tunnel.backlogBytes += chunk.readableBytes
        }
        drain(tunnel)
        // Reading goes on while the backlog is small, however it is held up (the channel not
        // open yet, SCTP's queue full); past the limit the writer waits for `writable()`.
        if tunnel.backlogBytes < DataChannelTunnel.backlogLimit { return true }
        tunnel.blocked = true
        return false
    }

    func sendEnd(on tunnel: DataChannelTunnel) {
        tunnel.backlog.append(.end)
        drain(tunnel)
    }

    func refuse(_ tunnel: DataChannelTunnel, reason: String) {
        tunnel.backlog.append(.text(reason))
        drain(tunnel)
    }

    /// Moves the tunnel's backlog into SCTP, in order, until SCTP says "full". Returns
    /// whether all of it went. A close asked for meanwhile happens after the backlog; a
    /// writer that was stopped hears `writable()` once it is all in.
    @discardableResult
    func drain(_ tunnel: DataChannelTunnel) -> Bool {
        guard let id = tunnel.id, let sctp, sctp.isUp else { return false }
        sendGrant(tunnel)
        while let item = tunnel.backlog.first {
            let result: SCTPAssociation.SendResult
            // With credit, bytes go only as far as the peer granted; the rest waits for a grant.
            var sending = 0
            switch item {
            case .bytes(let bytes):
                sending = min(bytes.readableBytes, tunnel.credit?.sendable ?? .max)
                if sending == 0 { return false }
                result = sctp.send(bytes.getSlice(at: bytes.readerIndex, length: sending)!, on: id)
            case .end: result = sctp.send(ByteBuffer(), on: id)
            case .text(let text):
                if tunnel.credit != nil {
                    result = sctp.send(TunnelControl(refused: text).encoded(), on: id, binary: false)
                } else {
                    result = sctp.send(text: text, on: id)
                }
            }
            switch result {
            case .sent, .wouldBlock:
                if case .bytes(var bytes) = item {
                    _ = tunnel.credit?.take(upTo: sending)
                    tunnel.backlogBytes -= sending
                    if sending < bytes.readableBytes {
                        bytes.moveReaderIndex(forwardBy: sending)
                        tunnel.backlog[tunnel.backlog.startIndex] = .bytes(bytes)
                    } else {
                        tunnel.backlog.removeFirst()
                    }
                } else {
                    tunnel.backlog.removeFirst()
                }
                // Over SCTP's high-water mark: the rest waits for `.bufferedAmountLow`.
                if case .wouldBlock = result { return false }
            case .refused(.queueFull):
                return false
            case .refused(let why):
                // The channel is closing or gone: nothing more can go on it.
                logger.debug("stream send refused: \(why)")
                tunnel.backlog.removeAll()
                tunnel.backlogBytes = 0
                return false
            }
        }
        if tunnel.closeAfterBacklog {
            tunnel.closeAfterBacklog = false
            closeTunnel(tunnel)
            return false
        }
        if tunnel.blocked {
            tunnel.blocked = false
            tunnel.writable()
        }
        return true
    }

    func closeTunnel(_ tunnel: DataChannelTunnel) {
        guard let id = tunnel.id else {
            unopened.removeAll { $0 === tunnel }
            return
        }
        if !tunnel.backlog.isEmpty {
            tunnel.closeAfterBacklog = true
            return
        }
        sctp?.closeChannel(id)
        tunnels.removeValue(forKey: id)
        flush()
    }

    func pauseReceiving() {
        pausedTunnels += 1
        if pausedTunnels == 1 { sctp?.pauseReceiving() }
    }

    func resumeReceiving() {
        pausedTunnels = max(0, pausedTunnels - 1)
        if pausedTunnels == 0 { sctp?.resumeReceiving() }
    }

    var streamCount: Int { tunnels.count + unopened.count }
}
