import Foundation
import NIOCore
import Store

/// RelayEvents carries allocation lifecycle changes off the packet path: the engine queues
/// them on its event loop and hands over one batch a second; the recorder writes each batch
/// to the Store in one transaction.
final class RelayEvents: Sendable {
    struct Batch: Sendable {
        var live: [LiveAllocation] = []
        var ended: [(id: String, usage: RelayUsage)] = []
        var isEmpty: Bool { live.isEmpty && ended.isEmpty }
    }

    let batches: AsyncStream<Batch>
    private let continuation: AsyncStream<Batch>.Continuation
    /// Distinguishes this run's allocation IDs from a previous run's in `relay_allocations`.
    private let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    private let realm: String
    /// Changes queued since the last ship; the relay loop's alone (NIOLoopBoundBox checks it).
    private let pending: NIOLoopBoundBox<Batch>

    init(realm: String, loop: any EventLoop) {
        self.realm = realm
        pending = .makeBoxSendingValue(Batch(), eventLoop: loop)
        (batches, continuation) = AsyncStream.makeStream(of: Batch.self, bufferingPolicy: .unbounded)
    }

    func identifier(_ allocation: Allocation) -> String { "\(runID)-\(allocation.id)" }

    func allocationStarted(_ allocation: Allocation) {
        pending.value.live.append(live(allocation))
    }

    func allocationRefreshed(_ allocation: Allocation) {
        pending.value.live.append(live(allocation))
    }

    func allocationEnded(_ allocation: Allocation, reason: TURNCore.EndReason, at unix: Int64) {
        let usage = RelayUsage(
            username: allocation.username, realm: realm, clientAddress: "\(allocation.fiveTuple.client)",
            clientTransport: allocation.fiveTuple.transport.rawValue,
            relayedAddress: allocation.relayed.map(\.description).joined(separator: ","),
            startedAt: Date(timeIntervalSince1970: TimeInterval(allocation.startedAtUnix)),
            endedAt: Date(timeIntervalSince1970: TimeInterval(unix)), endReason: reason.rawValue,
            packetsToPeer: allocation.packetsToPeer, bytesToPeer: allocation.bytesToPeer,
            packetsToClient: allocation.packetsToClient, bytesToClient: allocation.bytesToClient)
        pending.value.ended.append((identifier(allocation), usage))
    }

    /// Hands the queued changes to the recorder (called once a second and at shutdown).
    func ship() {
        guard !pending.value.isEmpty else { return }
        continuation.yield(pending.value)
        pending.value = Batch()
    }

    func finish() { continuation.finish() }

    private func live(_ allocation: Allocation) -> LiveAllocation {
        LiveAllocation(
            id: identifier(allocation), username: allocation.username, realm: realm,
            clientAddress: "\(allocation.fiveTuple.client)", clientTransport: allocation.fiveTuple.transport.rawValue,
            relayedAddress: allocation.relayed.map(\.description).joined(separator: ","),
            startedAt: Date(timeIntervalSince1970: TimeInterval(allocation.startedAtUnix)),
            expiresAt: Date(timeIntervalSince1970: TimeInterval(allocation.expiresAtUnix)))
    }
}
