import Foundation
import Testing
import Wire
@testable import ICE

#if canImport(Glibc)
import Glibc
#endif

/// Our agent against aioice (PyPI), an ICE implementation this project did not write, over a
/// real UDP socket on 127.0.0.1, in both roles. aioice's connect() returns only once a pair is
/// nominated (by us, or by its aggressive nomination when it controls); then it sends a
/// datagram on the pair and reports ours. Skipped when the project's Python environment is
/// missing (SWITCHBOARD_PYTHON names another interpreter with aioice).
@Suite struct AioiceInteropTests {
    static let python = ProcessInfo.processInfo.environment["SWITCHBOARD_PYTHON"] ?? "/work/main/.venv/bin/python"

    static let script = #"""
    import asyncio, json, sys
    import aioice.ice
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    from aioice import Candidate, Connection

    async def main():
        conn = Connection(ice_controlling=sys.argv[1] == "controlling", use_ipv6=False)
        await conn.gather_candidates()
        print(json.dumps({"ufrag": conn.local_username, "pwd": conn.local_password,
                          "candidates": ["candidate:" + c.to_sdp() for c in conn.local_candidates]}), flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        remote = json.loads(line)
        conn.remote_username = remote["ufrag"]
        conn.remote_password = remote["pwd"]
        for text in remote["candidates"]:
            await conn.add_remote_candidate(Candidate.from_sdp(text.split(":", 1)[1]))
        await conn.add_remote_candidate(None)
        await asyncio.wait_for(conn.connect(), 10)
        await conn.send(b"hello from aioice")
        data = await asyncio.wait_for(conn.recv(), 10)
        print(json.dumps({"received": data.decode()}), flush=True)
        await asyncio.sleep(7)  # consent requests both ways
        await conn.close()

    asyncio.run(main())
    """#

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: python), "needs the project's Python venv with aioice"),
          .timeLimit(.minutes(1)), arguments: [ICERole.controlling, .controlled])
    func ourAgentConnectsToAioiceOverRealUDP(role: ICERole) throws {
        // The UDP socket.
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var bound = sockaddr_in()
        bound.sin_family = sa_family_t(AF_INET)
        bound.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bindResult = withUnsafePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        #expect(bindResult == 0)
        _ = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let localAddress = TransportAddress(ip: .v4(0x7F00_0001), port: UInt16(bigEndian: bound.sin_port))

        // The aioice peer.
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.python)
        process.arguments = ["-c", Self.script, role == .controlling ? "controlled" : "controlling"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        var lines = LineReader(fd: output.fileHandleForReading.fileDescriptor)
        let firstLine = lines.next(timeoutMilliseconds: 15_000)
        let offer = try #require(firstLine)
        let remote = try JSONSerialization.jsonObject(with: Data(offer.utf8)) as? [String: Any]
        let ufrag = try #require(remote?["ufrag"] as? String)
        let password = try #require(remote?["pwd"] as? String)
        let candidates = try #require(remote?["candidates"] as? [String])

        // Our agent.
        let clock = ContinuousClock()
        let start = clock.now
        func now() -> ICETime { ICETime(clock.now - start) }
        let credentials = ICECredentials.random()
        var agent = ICEAgent(role: role, local: credentials, tieBreaker: UInt64.random(in: 0 ... .max), now: now())
        let base = ICEBase(id: 1)
        let added = agent.addLocalCandidate(.host(localAddress, base: base), now: now())
        let host = try #require(added)
        let answer: [String: Any] = ["ufrag": credentials.ufrag, "pwd": credentials.password,
                                     "candidates": [host.sdpAttribute]]
        input.fileHandleForWriting.write(try JSONSerialization.data(withJSONObject: answer) + Data("\n".utf8))
        agent.setRemoteCredentials(ICECredentials(ufrag: ufrag, password: password), now: now())
        for text in candidates { agent.addRemoteCandidate(try ICECandidate(sdpAttribute: text), now: now()) }
        agent.endOfRemoteCandidates(now: now())

        var received: [String] = []
        var peerReport: String?
        var sentHello = false
        var consentAnswered = 0
        let end = now() + .seconds(12)
        while now() < end {
            for action in agent.takeActions() {
                if case .send(let bytes, _, let to) = action { send(fd, bytes, to) }
            }
            if !sentHello, let pair = agent.selectedPair, pair.nominated {
                send(fd, Array("hello from switchboard".utf8), pair.remoteAddress)
                sentHello = true
            }
            if let line = lines.next(timeoutMilliseconds: 0) { peerReport = line }
            if peerReport != nil && now() > ICETime(.seconds(9)) { break }
            let wait = agent.nextDeadline.map { max(0, min(50, ICETime($0 - now()).milliseconds)) } ?? 50
            var pollSet = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pollSet, 1, Int32(wait)) > 0 else {
                agent.advance(now: now())
                continue
            }
            var buffer = [UInt8](repeating: 0, count: 2048)
            var from = sockaddr_in()
            var fromLength = socklen_t(MemoryLayout<sockaddr_in>.size)
            let count = withUnsafeMutablePointer(to: &from) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buffer, 2048, 0, $0, &fromLength) }
            }
            guard count > 0 else { continue }
            let source = TransportAddress(ip: .v4(UInt32(bigEndian: from.sin_addr.s_addr)), port: UInt16(bigEndian: from.sin_port))
            let bytes = Array(buffer[..<count])
            if STUNMessage.isMessage(bytes), let message = try? STUNMessage(bytes: bytes) {
                if message.type.messageClass == .successResponse, now() > ICETime(.seconds(1)) { consentAnswered += 1 }
                agent.receive(message, from: source, base: base, now: now())
            } else {
                received.append(String(decoding: bytes, as: UTF8.self))
                agent.noteTraffic(from: source, base: base, now: now())
            }
        }
        #expect(agent.state == .connected)
        #expect(agent.role == role)
        #expect(agent.selectedPair?.nominated == true)
        #expect(agent.selectedPair?.remote.type == .host)
        #expect(received.contains("hello from aioice"))
        #expect(peerReport?.contains("hello from switchboard") == true)
        #expect(agent.counters.badIntegrity == 0)
        #expect(agent.counters.badFingerprints == 0)
        // Consent requests on the selected pair were answered by aioice.
        #expect(consentAnswered >= 1)
    }

    func send(_ fd: Int32, _ bytes: [UInt8], _ to: TransportAddress) {
        guard case .v4(let ip) = to.ip else { return }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = ip.bigEndian
        address.sin_port = to.port.bigEndian
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
}

/// Lines from a pipe, read without blocking longer than asked.
struct LineReader {
    let fd: Int32
    var pending: [UInt8] = []

    mutating func next(timeoutMilliseconds: Int) -> String? {
        let deadline = ContinuousClock.now + .milliseconds(timeoutMilliseconds)
        while true {
            if let newline = pending.firstIndex(of: 0x0A) {
                let line = String(decoding: pending[..<newline], as: UTF8.self)
                pending.removeFirst(newline + 1)
                return line
            }
            let left = max(0, (deadline - ContinuousClock.now).components.seconds * 1000
                + (deadline - ContinuousClock.now).components.attoseconds / 1_000_000_000_000_000)
            var pollSet = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pollSet, 1, Int32(left)) > 0 else { return nil }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = read(fd, &buffer, 4096)
            guard count > 0 else { return nil }
            pending += buffer[..<count]
        }
    }
}
