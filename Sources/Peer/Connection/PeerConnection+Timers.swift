import DTLS
import DataChannel
import ICE
import Logging
import NIOCore
import NIOPosix
import TURNClient
import Wire

/// What the ICE agent decided, carried out; the one timer; and the end of a connection.
extension PeerConnection {
    // MARK: ICE actions, timers

    /// Carries out what the ICE agent decided and re-arms the timer.
    func flush() {
        guard !isClosed else { return }
        for action in agent.takeActions() {
            switch action {
            case .send(let bytes, let base, let to):
                sendDatagram(bytes, base: base, to: to)
            case .localCandidate(let candidate):
                callbacks.localCandidate(candidate.sdpAttribute)
            case .gatheringComplete:
                iceGatheringDone = true
                checkGatheringComplete()
            case .selectedPair(let pair):
                logger.debug("ICE selected a pair", metadata: ["pair": "\(pair)"])
                let previous = selected
                selected = pair
                if !retiringRelays.isEmpty && retirement == nil {
                    // Not at once: the controlled side selects before the nomination says which
                    // pair both use, and that may still be one of the old allocations.
                    retirement = loop.scheduleTask(in: .seconds(10)) { [weak self] in
                        guard let self else { return }
                        retirement = nil
                        retireRelays(keeping: selected?.base.id)
                    }
                }
                let report = self.report(pair)
                path = report
                if previous != nil && reportedConnected && (previous?.isRelayed != pair.isRelayed) {
                    callbacks.pathChanged(report)
                }
                if sctp?.isUp == true {
                    sctp?.pathChanged()
                    reportConnected()
                }
            case .state(let state):
                logger.debug("ICE state", metadata: ["state": "\(state)"])
                if state == .disconnected { isDisconnected = true }
                if state == .connected { isDisconnected = false }
                if state == .failed {
                    let reason: String
                    if agent.failureReason == .consentExpired {
                        reason = "the peer stopped answering (consent lost)"
                    } else if options.mode == .p2p {
                        reason = "no direct path (ICE failed; p2p mode does not relay)"
                    } else {
                        reason = "no path to the peer (ICE failed)"
                    }
                    fail(reason)
                    return
                }
            }
        }
        if !unverified.isEmpty {
            let waiting = unverified
            unverified.removeAll()
            for datagram in waiting {
                if isChecked(base: datagram.base, from: datagram.from) {
                    receive(datagram.bytes, from: datagram.from, base: datagram.base.id)
                } else {
                    unverified.append(datagram)
                }
            }
        }
        if let dtls, !earlyDatagrams.isEmpty {
            let early = earlyDatagrams
            earlyDatagrams.removeAll()
            for datagram in early { handle(dtls.receive(datagram)) }
        }
        startDTLSIfReady()
        armTimer()
    }

    func report(_ pair: ICECandidatePair) -> PathReport {
        let relayTransport = pair.local.type == .relay ? relays[pair.base.id].map { $0.transport.rawValue } : nil
        return PathReport(path: pair.isRelayed ? .relay : .direct, local: pair.local.type.rawValue,
                          remote: pair.remote.type.rawValue, relayTransport: relayTransport, rttMilliseconds: nil)
    }

    func reportConnected() {
        guard !reportedConnected, let selected else { return }
        reportedConnected = true
        startWatchdog()
        var report = self.report(selected)
        report.rttMilliseconds = Int((NIODeadline.now() - started).nanoseconds / 1_000_000)
        path = report
        callbacks.connected(report)
    }

    func armTimer() {
        var deadline: NIODeadline?
        if let next = agent.nextDeadline {
            deadline = started + .nanoseconds(Int64(next.milliseconds) * 1_000_000)
        }
        if let timeout = dtls?.nextTimeout {
            let at = NIODeadline.now() + .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000
                + timeout.components.attoseconds / 1_000_000_000)
            deadline = min(deadline ?? at, at)
        }
        if sctp != nil {
            let at = NIODeadline.now() + .milliseconds(10)
            deadline = min(deadline ?? at, at)
        }
        guard let deadline else { return }
        if let timerDeadline, timerDeadline <= deadline, timer != nil { return }
        timer?.cancel()
        timerDeadline = deadline
        timer = loop.scheduleTask(deadline: deadline) { [weak self] in self?.tick() }
    }

    func tick() {
        timer = nil
        timerDeadline = nil
        guard !isClosed else { return }
        agent.advance(now: now)
        if let dtls, let timeout = dtls.nextTimeout, timeout <= .zero { handle(dtls.handleTimeout()) }
        if let sctp { sctp.handleTimers(now: .now()) }
        flush()
    }

    // MARK: Ending

    func fail(_ reason: String) {
        guard !isClosed else { return }
        close(reason: reason)
    }

    /// The peer deleted the session. Before any path worked that is the peer's ICE giving up
    /// (it may do so a moment before ours does): say so in the mode's terms.
    func peerHungUp() {
        guard !reportedConnected else { return close(reason: "hung up") }
        switch options.mode {
        case .p2p: close(reason: "no direct path (the peer's ICE failed first; p2p mode does not relay)")
        default: close(reason: "the peer hung up before a path was found")
        }
    }

    func close(reason: String) {
        guard !isClosed else { return }
        isClosed = true
        timer?.cancel()
        watchdog?.cancel()
        retirement?.cancel()
        for tunnel in tunnels.values { tunnel.arrived(.closed) }
        for tunnel in unopened { tunnel.arrived(.refused(reason)); tunnel.arrived(.closed) }
        tunnels.removeAll()
        unopened.removeAll()
        sctp?.close()
        if let dtls { sendOnPath(dtls.close(), asksForAnswer: false) }
        agent.close()
        for socket in sockets.values { socket.close(promise: nil) }
        for relay in relays.values { _ = relay.connection.close() }
        callbacks.closed(reason)
    }
}
