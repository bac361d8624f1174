import Foundation
import NIOCore
import Testing
@testable import DataChannel

#if canImport(Glibc)
import Glibc
#endif

/// Our association against aiortc's SCTP stack (a real, independent implementation that
/// checks CRC32c), over a pipe to a Python process: simultaneous open, DCEP both ways,
/// messages both ways, a 100 kB message in many packets. An extension of the serialized
/// suite, so it never runs beside the other usrsctp tests.
extension SCTPAssociationTests {
    nonisolated static let python = "/work/main/.venv/bin/python"
    nonisolated static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("aiortc_sctp_peer.py").path

    /// A packet aiortc 1.16 serialized (an INIT), with the checksum it computed.
    static let aiortcINIT: [UInt8] = Array(hex: "1388138800000000fb588dc1010000140102030400020000ffffffff0a0b0c0d")

    @Test func ourChecksumMatchesAiortcs() {
        #expect(SCTPAssociation.checksumIsValid(Self.aiortcINIT))
        var copy = Self.aiortcINIT
        copy[8...11] = [0, 0, 0, 0]
        SCTPAssociation.setChecksum(&copy)
        #expect(copy == Self.aiortcINIT)
        var corrupt = Self.aiortcINIT
        corrupt[20] ^= 1
        #expect(!SCTPAssociation.checksumIsValid(corrupt))
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: python)))
    func channelsAndMessagesWorkAgainstAiortc() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.python)
        process.arguments = [Self.script]
        let toPython = Pipe(), fromPython = Pipe()
        process.standardInput = toPython
        process.standardOutput = fromPython
        try process.run()
        defer {
            try? toPython.fileHandleForWriting.close()
            process.terminate()
            process.waitUntilExit()
        }
        let readFD = fromPython.fileHandleForReading.fileDescriptor
        _ = fcntl(readFD, F_SETFL, fcntl(readFD, F_GETFL) | O_NONBLOCK)
        let writer = toPython.fileHandleForWriting

        var events: [SCTPAssociation.Event] = []
        let association = SCTPAssociation(
            role: .client,
            output: { packet in
                writer.write(Data([UInt8(packet.count >> 8), UInt8(packet.count & 0xFF)] + packet))
            },
            onEvent: { events.append($0) })
        defer { association.close() }
        association.start()

        var pending: [UInt8] = []
        var scratch = [UInt8](repeating: 0, count: 65536)
        var last = NIODeadline.now()
        func run(seconds: Int64, until done: () -> Bool) -> Bool {
            let end = NIODeadline.now() + .seconds(seconds)
            while !done() {
                guard NIODeadline.now() < end else { return false }
                let count = read(readFD, &scratch, scratch.count)
                if count > 0 {
                    pending += scratch[0..<count]
                    while pending.count >= 2 {
                        let length = Int(pending[0]) << 8 | Int(pending[1])
                        guard pending.count >= 2 + length else { break }
                        association.input(Array(pending[2..<(2 + length)]))
                        pending.removeFirst(2 + length)
                    }
                } else {
                    usleep(2000)
                }
                let now = NIODeadline.now()
                TestClock.now = TestClock.now + (now - last)
                last = now
                SCTPAssociation.handleTimers(now: TestClock.now)
            }
            return true
        }

        #expect(run(seconds: 20) { events.contains(.associationUp) })
        let ours = try association.openChannel(label: "from-swift", protocol: "echo")
        #expect(ours.stream % 2 == 0)
        #expect(run(seconds: 10) { events.contains(.channelOpenAcked(ours)) })
        let big = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        association.send(text: "ping", on: ours)
        association.send(big, on: ours)
        #expect(run(seconds: 20) { Loopback.messages(events, on: ours).count == 2 })
        let echoed = Loopback.messages(events, on: ours)
        #expect(echoed.first.map { $0.0 == ByteBuffer(string: "ping") && !$0.1 } == true)
        #expect(echoed.dropFirst().first.map { Array($0.0.readableBytesView) == big && $0.1 } == true)

        let theirs = events.compactMap { event -> DataChannelID? in
            if case .channelOpened(let id, "from-aiortc", "p") = event { return id }
            return nil
        }.first
        #expect(theirs.map { $0.stream % 2 == 1 } == true)
        if let theirs {
            #expect(run(seconds: 20) { Loopback.messages(events, on: theirs).count == 2 })
            let received = Loopback.messages(events, on: theirs)
            #expect(received.first?.0 == ByteBuffer(string: "hello"))
            #expect(received.dropFirst().first.map { Array($0.0.readableBytesView) == (0..<100_000).map { UInt8($0 % 251) } } == true)
        }
        #expect(association.statistics.packetsDropped == 0)
    }
}

extension Array where Element == UInt8 {
    init(hex: String) {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex), index != hex.endIndex {
            bytes.append(UInt8(hex[index..<next], radix: 16) ?? 0)
            index = next
        }
        self = bytes
    }
}
