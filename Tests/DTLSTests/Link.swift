import Foundation
@testable import DTLS

/// Link is two endpoints joined in memory, as the peer agent's loop would join them over UDP:
/// datagrams queue per direction, `lose` decides which ones the "network" drops, and a test
/// clock says when each side's retransmission timer is due.
///
/// OpenSSL's retransmission timer reads the monotonic clock itself, so advancing the test
/// clock also waits that long for real (tests use 20-50 ms timeouts): the test clock decides
/// when `handleTimeout` is called, OpenSSL that the flight is really due.
final class Link {
    let client: DTLSEndpoint
    let server: DTLSEndpoint
    /// The test clock, from 0.
    private(set) var now: Duration = .zero
    /// When each side's `handleTimeout` is due on the test clock (nil: no timer).
    private(set) var clientDue: Duration?
    private(set) var serverDue: Duration?

    var toServer: [[UInt8]] = []
    var toClient: [[UInt8]] = []
    /// What each side received, record by record, and what happened to it, in order.
    var receivedByServer: [[UInt8]] = []
    var receivedByClient: [[UInt8]] = []
    var serverEvents: [DTLSEndpoint.Event] = []
    var clientEvents: [DTLSEndpoint.Event] = []
    /// Every datagram either side sent.
    var sent: [[UInt8]] = []
    /// The network: true drops the datagram (`toServer` says the direction).
    var lose: (_ datagram: [UInt8], _ toServer: Bool) -> Bool = { _, _ in false }

    init(client: DTLSEndpoint, server: DTLSEndpoint) {
        self.client = client
        self.server = server
    }

    /// A client and a server with fresh certificates, each expecting the other's fingerprint.
    static func make(srtpProfiles: [SRTPProfile] = [], configuration: DTLSEndpoint.Configuration = .init(),
                     clientExpects: [DTLSFingerprint]? = nil, serverExpects: [DTLSFingerprint]? = nil) throws -> Link {
        let clientCertificate = try Certificates.client
        let serverCertificate = try Certificates.server
        let client = try DTLSEndpoint(
            context: try DTLSContext(certificate: clientCertificate, srtpProfiles: srtpProfiles), role: .client,
            remoteFingerprints: clientExpects ?? [serverCertificate.sha256Fingerprint], configuration: configuration)
        let server = try DTLSEndpoint(
            context: try DTLSContext(certificate: serverCertificate, srtpProfiles: srtpProfiles), role: .server,
            remoteFingerprints: serverExpects ?? [clientCertificate.sha256Fingerprint], configuration: configuration)
        return Link(client: client, server: server)
    }

    func take(_ output: DTLSEndpoint.Output, from side: DTLSEndpoint.Role) {
        sent += output.datagrams
        for datagram in output.datagrams where !lose(datagram, side == .client) {
            if side == .client { toServer.append(datagram) } else { toClient.append(datagram) }
        }
        if side == .client {
            receivedByClient += output.applicationData
            clientEvents += output.events
            clientDue = client.nextTimeout.map { now + $0 }
        } else {
            receivedByServer += output.applicationData
            serverEvents += output.events
            serverDue = server.nextTimeout.map { now + $0 }
        }
    }

    func start() { take(client.start(), from: .client) }

    /// Delivers queued datagrams, in order, until none are left (bounded: a loop of
    /// retransmissions would fail the test, not hang it).
    func deliver() {
        for _ in 0..<100 where !(toServer.isEmpty && toClient.isEmpty) {
            let forServer = toServer, forClient = toClient
            toServer = []
            toClient = []
            for datagram in forServer { take(server.receive(datagram), from: .server) }
            for datagram in forClient { take(client.receive(datagram), from: .client) }
        }
    }

    /// The handshake from the client's first flight to the last datagram.
    func handshake() {
        start()
        deliver()
    }

    /// Moves the test clock on (and waits as long for real); each side whose timer is due
    /// on the test clock handles it. Then delivers what that sent.
    func advance(by step: Duration) {
        now += step
        precondition(step <= .milliseconds(500), "a test that waits this long for real is too slow")
        let (seconds, attoseconds) = step.components
        Thread.sleep(forTimeInterval: Double(seconds) + Double(attoseconds) / 1e18)
        if let due = clientDue, due <= now { take(client.handleTimeout(), from: .client) }
        if let due = serverDue, due <= now { take(server.handleTimeout(), from: .server) }
        deliver()
    }

    /// Sends `message` from one side and delivers it.
    func send(_ message: [UInt8], from side: DTLSEndpoint.Role) throws {
        let endpoint = side == .client ? client : server
        var output = DTLSEndpoint.Output()
        output.datagrams = try endpoint.write(message)
        take(output, from: side)
        deliver()
    }
}

/// Certificates made once for the whole test run (an EC key takes a moment in a debug build).
enum Certificates {
    static let clientResult = Result { try DTLSCertificate.generate(commonName: "client") }
    static let serverResult = Result { try DTLSCertificate.generate(commonName: "server") }
    static let otherResult = Result { try DTLSCertificate.generate(commonName: "other") }
    static var client: DTLSCertificate { get throws { try clientResult.get() } }
    static var server: DTLSCertificate { get throws { try serverResult.get() } }
    static var other: DTLSCertificate { get throws { try otherResult.get() } }
}
