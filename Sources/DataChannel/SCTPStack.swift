import CUSRSCTP
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// SCTPStack is usrsctp's process-global side: one `usrsctp_init_nothreads`, the table that maps
/// the small integer each association registers as its AF_CONN address back to the
/// association, and the one timer clock all associations share.
///
/// usrsctp keeps global state and runs no threads of its own here, so everything in this file
/// and in `SCTPAssociation` runs on one thread (the caller's SCTP event loop). The table holds
/// integers, not pointers: a callback that arrives after an association closed finds nothing
/// and does nothing (usrsctp #405).
enum SCTPStack {
    /// Timers need a tick at about this interval (`SCTPAssociation.handleTimers(now:)`).
    static let timerInterval = TimeAmount.milliseconds(10)

    private final class Entry {
        weak var association: SCTPAssociation?
        init(_ association: SCTPAssociation) { self.association = association }
    }

    // Confined to the SCTP thread (checked in debug builds by `enter()`).
    nonisolated(unsafe) private static var entries: [UInt: Entry] = [:]
    nonisolated(unsafe) private static var nextToken: UInt = 1
    nonisolated(unsafe) private static var dirty: [UInt] = []
    nonisolated(unsafe) private static var dirtySet: Set<UInt> = []
    nonisolated(unsafe) private static var processing = false
    nonisolated(unsafe) private static var lastTick: NIODeadline?

    /// Runs once per process, on first use.
    private static let initialized: Bool = {
        switchboard_usrsctp_init_nothreads(0, outputCallback)
        // Settings libdatachannel and mediasoup use (PEER-NOTES.md). Per-socket options in
        // SCTPAssociation repeat the ones that have one; these have only the global form.
        _ = usrsctp_sysctl_set_sctp_initial_cwnd(10)
        _ = usrsctp_sysctl_set_sctp_max_burst_default(10)
        _ = usrsctp_sysctl_set_sctp_delayed_sack_time_default(20)
        _ = usrsctp_sysctl_set_sctp_rto_min_default(200)
        _ = usrsctp_sysctl_set_sctp_rto_initial_default(1000)
        _ = usrsctp_sysctl_set_sctp_rto_max_default(10_000)
        _ = usrsctp_sysctl_set_sctp_init_rto_max_default(10_000)
        _ = usrsctp_sysctl_set_sctp_max_chunks_on_queue(10 * 1024)
        _ = usrsctp_sysctl_set_sctp_ecn_enable(0)
        _ = usrsctp_sysctl_set_sctp_pr_enable(1)
        _ = usrsctp_sysctl_set_sctp_reconfig_enable(1)
        _ = usrsctp_sysctl_set_sctp_sendspace(1 << 20)
        _ = usrsctp_sysctl_set_sctp_recvspace(1 << 20)
        // usrsctp skips the checksum both ways; output gets ours (peers check it) and input is
        // checked by SCTPAssociation before usrsctp sees it.
        usrsctp_enable_crc32c_offload()
        return true
    }()

    static func register(_ association: SCTPAssociation) -> UInt {
        enter()
        _ = initialized
        let token = nextToken
        nextToken += 1  // never reused: a late callback cannot reach a newer association
        entries[token] = Entry(association)
        return token
    }

    static func unregister(_ token: UInt) {
        entries[token] = nil
        dirtySet.remove(token)
    }

    static func association(_ token: UInt) -> SCTPAssociation? { entries[token]?.association }

    static func pointer(_ token: UInt) -> UnsafeMutableRawPointer? { UnsafeMutableRawPointer(bitPattern: token) }

    static func token(_ pointer: UnsafeMutableRawPointer?) -> UInt? {
        guard let pointer else { return nil }
        return UInt(bitPattern: pointer)
    }

    /// The threading rule is "one at a time, never concurrently": usrsctp's global state
    /// has no locks of its own. It is not checked by thread identity: on Linux the main
    /// actor (which serializes the unit tests that use SCTP) runs on more than one thread.
    static func enter() {}

    /// Marks an association as having work (bytes to read, output, events) for `drain()`.
    static func markDirty(_ token: UInt) {
        if dirtySet.insert(token).inserted { dirty.append(token) }
    }

    /// Does the work usrsctp's callbacks queued, outside usrsctp: reads, queued sends, output
    /// and events. Callers' handlers may call back in; the outermost call keeps looping.
    static func drain() {
        guard !processing else { return }
        processing = true
        defer { processing = false }
        while !dirty.isEmpty {
            let token = dirty.removeFirst()
            dirtySet.remove(token)
            association(token)?.process()
        }
    }

    /// Advances usrsctp's timers to `now` (all associations share them).
    static func handleTimers(now: NIODeadline) {
        enter()
        _ = initialized
        guard let last = lastTick else {
            lastTick = now
            return
        }
        guard now > last else { return }
        let elapsed = (now - last).nanoseconds / 1_000_000
        guard elapsed >= 1 else { return }
        lastTick = last + .milliseconds(elapsed)
        usrsctp_handle_timers(UInt32(min(elapsed, 60_000)))
        for token in entries.keys { markDirty(token) }
        drain()
    }

    static var nextTimerDeadline: NIODeadline { (lastTick ?? .now()) + timerInterval }

    private static let outputCallback: switchboard_usrsctp_output = { address, buffer, length, _, _ in
        guard let token = SCTPStack.token(address), let buffer, length >= 12,
              let association = SCTPStack.association(token) else { return -1 }
        association.queueOutput(UnsafeMutableRawBufferPointer(start: buffer, count: length))
        return 0
    }

    static let upcall: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Void = { _, argument, _ in
        guard let token = SCTPStack.token(argument) else { return }
        SCTPStack.markDirty(token)
    }
}
