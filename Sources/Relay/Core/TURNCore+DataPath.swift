import NIOCore
import Wire

/// The data path (ChannelData and peer datagrams: permissions, counts, bandwidth) and the end
/// of allocations (expiry, a closed TCP connection, shutdown).
extension TURNCore {
    // MARK: - The data path

    /// A ChannelData message from a client: where it goes, or nil to drop it.
    func clientChannelData(channel: UInt16, length: Int, from fiveTuple: FiveTuple, nowMillis: Int64)
        -> (allocation: Allocation, relayIndex: Int, peer: TransportAddress)?
    {
        guard let allocation = allocations[fiveTuple],
              let peer = allocation.peer(onChannel: channel, nowMillis: nowMillis) else { return nil }
        guard allocation.hasPermission(for: peer.ip, nowMillis: nowMillis) else {
            counters.noPermissionDrops += 1
            return nil
        }
        guard let index = allocation.relayed.firstIndex(where: { $0.ip.isIPv4 == peer.ip.isIPv4 }) else { return nil }
        guard allocation.spend(length, toPeer: true, limit: configuration.bandwidthLimit, nowMillis: nowMillis) else {
            counters.bandwidthDrops += 1
            return nil
        }
        countRelayed(length, toPeer: true, on: allocation)
        return (allocation, index, peer)
    }

    /// One relayed datagram, in the allocation's usage and the relay's counters.
    private func countRelayed(_ length: Int, toPeer: Bool, on allocation: Allocation) {
        if toPeer {
            allocation.packetsToPeer += 1
            allocation.bytesToPeer += length
            counters.packetsToPeer += 1
            counters.bytesToPeer += length
        } else {
            allocation.packetsToClient += 1
            allocation.bytesToClient += length
            counters.packetsToClient += 1
            counters.bytesToClient += length
        }
    }

    enum PeerDelivery {
        case channel(UInt16)
        case dataIndication
    }

    /// A datagram from a peer to a relayed address: how to pass it to the client, or nil to
    /// drop it (no permission for the peer, allocation gone, over the cap).
    func peerData(to allocation: Allocation, from peer: TransportAddress, length: Int, nowMillis: Int64) -> PeerDelivery? {
        guard allocations[allocation.fiveTuple] === allocation,
              allocation.hasPermission(for: peer.ip, nowMillis: nowMillis) else {
            counters.noPermissionDrops += 1
            return nil
        }
        guard allocation.spend(length, toPeer: false, limit: configuration.bandwidthLimit, nowMillis: nowMillis) else {
            counters.bandwidthDrops += 1
            return nil
        }
        countRelayed(length, toPeer: false, on: allocation)
        if let number = allocation.channel(for: peer, nowMillis: nowMillis) { return .channel(number) }
        return .dataIndication
    }

    // MARK: - Ending allocations

    /// Removes allocations whose lifetime ran out and prunes
    /// permissions and channels; returns what ended so the server can close sockets and
    /// record usage.
    func expire(time: RelayTime) -> [(Allocation, EndReason)] {
        var ended: [(Allocation, EndReason)] = []
        for (fiveTuple, allocation) in allocations {
            if allocation.expiresAt <= time.millis {
                remove(fiveTuple)
                ended.append((allocation, .expired))
            } else {
                allocation.expireBindings(nowMillis: time.millis)
            }
        }
        limiter.prune(nowMillis: time.millis)
        return ended
    }

    /// Ends the allocation of a client whose TCP/TLS connection closed (RFC 8656 §3.1).
    func disconnect(_ fiveTuple: FiveTuple) -> (Allocation, EndReason)? {
        pending[fiveTuple] = nil
        guard let allocation = allocations[fiveTuple] else { return nil }
        remove(fiveTuple)
        return (allocation, .disconnected)
    }

    /// Ends every allocation (shutdown after draining).
    func removeAll() -> [Allocation] {
        let all = Array(allocations.values)
        for fiveTuple in allocations.keys { remove(fiveTuple) }
        return all
    }

    func remove(_ fiveTuple: FiveTuple) {
        guard let allocation = allocations.removeValue(forKey: fiveTuple) else { return }
        let count = allocationsPerUser[allocation.username, default: 1] - 1
        allocationsPerUser[allocation.username] = count > 0 ? count : nil
        refreshed.remove(allocation.id)
    }
}
