import Foundation
import Rendezvous
@testable import Store
import NIOConcurrencyHelpers
import Testing

@Suite struct EventHubTests {
    /// How late a wake-up may come. The tests run alongside ones that block the cooperative
    /// pool's threads (real-time SCTP and DTLS links, coturn), so on a busy two-core machine a
    /// 100 ms wait has ended 2.5 s later, and in a clean-clone `make test` beside niced fuzzers
    /// 15.8-16 s later. The bound only has to tell "woken" or "timed out on time" from a wait
    /// of `never` running out, so it is far from both.
    static let slack = Duration.seconds(60)
    /// The timeout of a wait that must be woken, not time out.
    static let never = Duration.seconds(180)

    /// An event as a write hands it to the hub.
    func stored(for peer: String) -> EventRecord {
        EventRecord(id: 1, peerID: peer, type: "offer", sessionID: nil, data: "{}", previousID: 0)
    }

    /// Acknowledgements delete a peer's events only as far as every open stream of the peer
    /// has acknowledged them: two agents logged in as one peer each get every event.
    @Test func anAcknowledgementDeletesNoFurtherThanEveryOpenStreamOfThePeer() {
        let hub = EventHub(tick: .milliseconds(20))
        #expect(hub.acknowledge("alice", by: nil, upTo: 7) == 7)  // no stream: a long-poll's after=
        let first = hub.openConsumer("alice", acknowledged: 0)
        let second = hub.openConsumer("alice", acknowledged: 3)
        let other = hub.openConsumer("bob", acknowledged: 0)
        #expect(hub.isStreaming("alice"))
        #expect(hub.acknowledge("alice", by: first, upTo: 10) == 3)
        #expect(hub.acknowledge("alice", by: second, upTo: 8) == 8)
        #expect(hub.acknowledge("alice", by: second, upTo: 5) == 5)  // an older ack keeps the newer cursor
        #expect(hub.acknowledge("alice", by: nil, upTo: 20) == 8)
        hub.closeConsumer("alice", second)
        #expect(hub.acknowledge("alice", by: first, upTo: 12) == 12)
        hub.closeConsumer("alice", first)
        #expect(!hub.isStreaming("alice") && hub.isStreaming("bob"))
        #expect(hub.acknowledge("bob", by: other, upTo: 4) == 4)
    }

    @Test func aNotifyWakesOnlyThatPeersWaiters() async throws {
        let hub = EventHub(tick: .milliseconds(20))
        let seen = hub.version(of: "bob")
        let started = ContinuousClock.now
        async let bob: Void = hub.wait("bob", since: seen, timeout: Self.never)
        async let alice: Void = hub.wait("alice", since: 0, timeout: Self.never)
        while hub.waiting < 2 { try await Task.sleep(for: .milliseconds(5)) }
        hub.notify(stored(for: "bob"))
        await bob
        #expect(ContinuousClock.now - started < Self.slack)
        #expect(hub.waiting == 1)  // alice is still parked
        hub.notify(stored(for: "alice"))
        await alice
        #expect(ContinuousClock.now - started < Self.slack)
        #expect(hub.waiting == 0)
    }

    @Test func aWaitTimesOutWithinATick() async {
        let hub = EventHub(tick: .milliseconds(20))
        let started = ContinuousClock.now
        await hub.wait("bob", since: 0, timeout: .milliseconds(100))
        let waited = ContinuousClock.now - started
        #expect(waited >= .milliseconds(100) && waited < Self.slack)
    }

    @Test func manyWaitsEachEndAtTheirOwnDeadline() async {
        let hub = EventHub(tick: .milliseconds(20))
        let started = ContinuousClock.now
        // Three peers, staggered deadlines inside and across ticks; one is woken early, so
        // its deadline entry is left behind and must be skipped when its tick comes.
        let ended = await withTaskGroup(of: (String, Duration).self) { group in
            for (peer, milliseconds) in [("a", 30), ("b", 90), ("c", 95), ("d", 180_000), ("e", 170)] {
                group.addTask {
                    await hub.wait(peer, since: 0, timeout: .milliseconds(milliseconds))
                    return (peer, ContinuousClock.now - started)
                }
            }
            while hub.waiting < 5 { try? await Task.sleep(for: .milliseconds(2)) }
            hub.notify(stored(for: "d"))
            var ended: [String: Duration] = [:]
            for await (peer, after) in group { ended[peer] = after }
            return ended
        }
        #expect(ended["d"]! < Self.slack)  // woken, not timed out
        for (peer, milliseconds) in [("a", 30), ("b", 90), ("c", 95), ("e", 170)] {
            #expect(ended[peer]! >= .milliseconds(milliseconds), "\(peer) ended early")
            #expect(ended[peer]! < .milliseconds(milliseconds) + Self.slack, "\(peer) ended late")
        }
        #expect(hub.waiting == 0)
    }

    @Test func aStaleVersionOrShutdownReturnsAtOnce() async {
        let hub = EventHub()
        hub.notify(stored(for: "bob"))
        let started = ContinuousClock.now
        await hub.wait("bob", since: 0, timeout: Self.never)  // version is 1 already
        async let parked: Void = hub.wait("carol", since: 0, timeout: Self.never)
        while hub.waiting < 1 { try? await Task.sleep(for: .milliseconds(5)) }
        hub.shutDown()
        await parked
        await hub.wait("dave", since: 0, timeout: Self.never)
        #expect(ContinuousClock.now - started < Self.slack)
        #expect(hub.isShuttingDown)
    }

    @Test func cancellingAWaiterResumesIt() async {
        let hub = EventHub()
        let task = Task { await hub.wait("bob", since: 0, timeout: Self.never) }
        while hub.waiting < 1 { try? await Task.sleep(for: .milliseconds(5)) }
        let started = ContinuousClock.now
        task.cancel()
        await task.value
        #expect(ContinuousClock.now - started < Self.slack)
        #expect(hub.waiting == 0)
    }

    @Test func aTaskCancelledBeforeItWaitsDoesNotPark() async {
        let hub = EventHub()
        let task = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            await hub.wait("bob", since: 0, timeout: Self.never)
        }
        let started = ContinuousClock.now
        await task.value
        #expect(ContinuousClock.now - started < Self.slack)
        #expect(hub.waiting == 0)
    }

    /// Records what the hub tells a stream.
    final class Recording: EventSubscriber {
        let told = NIOLockedValueBox<(events: [Int64], shutDown: Bool)>(([], false))
        func eventStored(_ event: EventRecord) { told.withLockedValue { $0.events.append(event.id) } }
        func hubShutDown() { told.withLockedValue { $0.shutDown = true } }
    }

    @Test func subscribersAreToldInTheNotifyingCallUntilTheyLeave() throws {
        let hub = EventHub()
        let bob = Recording(), carol = Recording()
        let subscription = try #require(hub.subscribe("bob", bob))
        _ = try #require(hub.subscribe("carol", carol))
        #expect(hub.isStreaming("bob"))
        var event = stored(for: "bob")
        hub.notify(event)
        event.id = 2
        hub.notify(event)
        // Told before notify returned: no task or hop in between.
        let toldBob = bob.told.withLockedValue { $0.events }
        #expect(toldBob == [1, 2])
        hub.unsubscribe("bob", subscription)
        #expect(!hub.isStreaming("bob"))
        event.id = 3
        hub.notify(event)
        let afterLeaving = bob.told.withLockedValue { $0.events }
        #expect(afterLeaving == [1, 2])
        let toldCarol = carol.told.withLockedValue { $0.events }
        #expect(toldCarol.isEmpty)
        hub.shutDown()
        #expect(carol.told.withLockedValue { $0.shutDown })
        #expect(!bob.told.withLockedValue { $0.shutDown })
        #expect(hub.subscribe("dave", Recording()) == nil)
    }
}

@Suite struct PresenceTrackerTests {
    @Test func timesAreAnsweredAtOnceAndStoredTogether() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("presence-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let database = try SwitchboardDatabase(dataDirectory: directory)
        for name in ["alice", "bob"] { _ = try database.addPeer(try PeerID(name)) }
        let presence = PresenceTracker(database: database, flushInterval: .seconds(3600))
        let before = Date()
        presence.seen("alice")
        presence.seen("bob")
        presence.seen("alice")  // within 10 s: the first time stands
        let alice = try #require(presence.lastSeen("alice"))
        #expect(alice >= before.addingTimeInterval(-1))
        #expect(presence.lastSeen("carol") == nil)
        // Not stored until the flush, then both in one go.
        #expect(try database.peer(try PeerID("alice"))?.lastSeenAt == nil)
        await presence.flush()
        for name in ["alice", "bob"] {
            let stored = try #require(try database.peer(try PeerID(name))?.lastSeenAt)
            #expect(abs(stored.timeIntervalSince(alice)) < 2)
        }
    }
}
