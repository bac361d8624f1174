import NIOCore

/// RTCPParseError says why bytes are not an RTCP compound packet.
public enum RTCPParseError: Error, Sendable, Equatable {
    case truncated
    case badVersion(UInt8)
    /// A packet's length field runs past the datagram, or its body is shorter than its type needs.
    case badLength
    case badPadding
    /// RFC 3550 §6.1: a compound packet starts with SR or RR. (RFC 5506 reduced-size RTCP,
    /// negotiated with a=rtcp-rsize, lifts this; `parseCompound(reducedSize:)` allows it.)
    case notStartingWithReport(UInt8)
}

/// ReportBlock is one reception report (RFC 3550 §6.4.1) in an SR or RR.
public struct ReportBlock: Sendable, Equatable {
    public var ssrc: UInt32
    /// Fraction of packets lost since the last report, in 1/256ths.
    public var fractionLost: UInt8
    /// Cumulative packets lost: a signed 24-bit value (duplicates can make it negative).
    public var cumulativeLost: Int32
    public var highestSequence: UInt32
    public var jitter: UInt32
    /// The middle 32 bits of the NTP time of the last SR received, or 0.
    public var lastSenderReport: UInt32
    /// Delay since that SR, in 1/65536 seconds.
    public var delaySinceLastSenderReport: UInt32

    public init(ssrc: UInt32, fractionLost: UInt8 = 0, cumulativeLost: Int32 = 0, highestSequence: UInt32 = 0,
                jitter: UInt32 = 0, lastSenderReport: UInt32 = 0, delaySinceLastSenderReport: UInt32 = 0) {
        self.ssrc = ssrc
        self.fractionLost = fractionLost
        self.cumulativeLost = cumulativeLost
        self.highestSequence = highestSequence
        self.jitter = jitter
        self.lastSenderReport = lastSenderReport
        self.delaySinceLastSenderReport = delaySinceLastSenderReport
    }
}

/// RTCPPacket is one packet of an RTCP compound packet: the kinds a media edge sends and
/// reads (RFC 3550 SR, RR, SDES, BYE; RFC 4585 generic NACK and PLI; RFC 5104 FIR), and
/// any other kept as bytes.
public enum RTCPPacket: Sendable, Equatable {
    case senderReport(ssrc: UInt32, ntpTime: UInt64, rtpTime: UInt32, packetCount: UInt32, octetCount: UInt32,
                      reports: [ReportBlock])
    case receiverReport(ssrc: UInt32, reports: [ReportBlock])
    /// SDES with one CNAME item per source (the item RFC 3550 requires; others are skipped).
    case sourceDescription([(ssrc: UInt32, cname: String)])
    case goodbye(ssrcs: [UInt32])
    /// Generic NACK (RFC 4585 §6.2.1): the sequence numbers the receiver is missing.
    case nack(senderSSRC: UInt32, mediaSSRC: UInt32, lost: [UInt16])
    /// Picture Loss Indication (RFC 4585 §6.3.1).
    case pictureLossIndication(senderSSRC: UInt32, mediaSSRC: UInt32)
    /// Full Intra Request (RFC 5104 §4.3.1): per target SSRC, a command sequence number.
    case fullIntraRequest(senderSSRC: UInt32, requests: [(ssrc: UInt32, sequence: UInt8)])
    case other(type: UInt8, count: UInt8, body: ByteBuffer)

    public enum PacketType: UInt8, Sendable {
        case senderReport = 200, receiverReport = 201, sourceDescription = 202, goodbye = 203
        case application = 204, transportFeedback = 205, payloadFeedback = 206
    }

    public static func == (lhs: RTCPPacket, rhs: RTCPPacket) -> Bool {
        switch (lhs, rhs) {
        case let (.senderReport(a1, a2, a3, a4, a5, a6), .senderReport(b1, b2, b3, b4, b5, b6)):
            a1 == b1 && a2 == b2 && a3 == b3 && a4 == b4 && a5 == b5 && a6 == b6
        case let (.receiverReport(a1, a2), .receiverReport(b1, b2)): a1 == b1 && a2 == b2
        case let (.sourceDescription(a), .sourceDescription(b)):
            a.count == b.count && zip(a, b).allSatisfy { $0.ssrc == $1.ssrc && $0.cname == $1.cname }
        case let (.goodbye(a), .goodbye(b)): a == b
        case let (.nack(a1, a2, a3), .nack(b1, b2, b3)): a1 == b1 && a2 == b2 && a3 == b3
        case let (.pictureLossIndication(a1, a2), .pictureLossIndication(b1, b2)): a1 == b1 && a2 == b2
        case let (.fullIntraRequest(a1, a2), .fullIntraRequest(b1, b2)):
            a1 == b1 && a2.count == b2.count && zip(a2, b2).allSatisfy { $0.ssrc == $1.ssrc && $0.sequence == $1.sequence }
        case let (.other(a1, a2, a3), .other(b1, b2, b3)): a1 == b1 && a2 == b2 && a3 == b3
        default: false
        }
    }

    // MARK: - Parsing

    /// Parses a compound packet (one datagram). Unless `reducedSize`, the first packet must
    /// be an SR or RR (RFC 3550 §6.1; RFC 5506 allows otherwise).
    public static func parseCompound(_ datagram: ByteBuffer, reducedSize: Bool = true) throws(RTCPParseError) -> [RTCPPacket] {
        var packets: [RTCPPacket] = []
        var offset = datagram.readerIndex
        let end = datagram.readerIndex + datagram.readableBytes
        while offset < end {
            guard offset + 4 <= end, let first = datagram.getInteger(at: offset, as: UInt8.self),
                  let type = datagram.getInteger(at: offset + 1, as: UInt8.self),
                  let words = datagram.getInteger(at: offset + 2, as: UInt16.self) else { throw .truncated }
            guard first >> 6 == 2 else { throw .badVersion(first >> 6) }
            let length = (Int(words) + 1) * 4
            guard offset + length <= end else { throw .badLength }
            if packets.isEmpty && !reducedSize && type != 200 && type != 201 { throw .notStartingWithReport(type) }
            var bodyLength = length - 4
            if first & 0x20 != 0 {
                // Padding is only allowed on the last packet of a compound (RFC 3550 §6.4.1).
                guard offset + length == end, let count = datagram.getInteger(at: end - 1, as: UInt8.self),
                      count > 0, Int(count) <= bodyLength else { throw .badPadding }
                bodyLength -= Int(count)
            }
            let body = datagram.getSlice(at: offset + 4, length: bodyLength)!
            packets.append(try parse(type: type, count: first & 0x1F, body: body))
            offset += length
        }
        return packets
    }

    static func parse(type: UInt8, count: UInt8, body: ByteBuffer) throws(RTCPParseError) -> RTCPPacket {
        var body = body
        func u32() throws(RTCPParseError) -> UInt32 {
            guard let value = body.readInteger(as: UInt32.self) else { throw .badLength }
            return value
        }
        func reports(_ n: UInt8) throws(RTCPParseError) -> [ReportBlock] {
            var blocks: [ReportBlock] = []
            for _ in 0..<n {
                let ssrc = try u32()
                let lost = try u32()
                // The low 24 bits, sign-extended.
                let cumulative = Int32(bitPattern: (lost & 0x00FF_FFFF) << 8) >> 8
                blocks.append(ReportBlock(ssrc: ssrc, fractionLost: UInt8(lost >> 24), cumulativeLost: cumulative,
                                          highestSequence: try u32(), jitter: try u32(), lastSenderReport: try u32(),
                                          delaySinceLastSenderReport: try u32()))
            }
            return blocks
        }
        switch type {
        case 200:
            let ssrc = try u32()
            let ntp = UInt64(try u32()) << 32 | UInt64(try u32())
            let rtp = try u32()
            let packets = try u32()
            let octets = try u32()
            return .senderReport(ssrc: ssrc, ntpTime: ntp, rtpTime: rtp, packetCount: packets, octetCount: octets,
                                 reports: try reports(count))
        case 201:
            return .receiverReport(ssrc: try u32(), reports: try reports(count))
        case 202:
            var items: [(ssrc: UInt32, cname: String)] = []
            for _ in 0..<count {
                let ssrc = try u32()
                var cname: String?
                // Items until a zero byte, then padding to the next 32-bit boundary.
                while true {
                    guard let itemType = body.readInteger(as: UInt8.self) else { throw .badLength }
                    if itemType == 0 { break }
                    guard let itemLength = body.readInteger(as: UInt8.self),
                          let text = body.readString(length: Int(itemLength)) else { throw .badLength }
                    if itemType == 1 { cname = text }
                }
                let consumed = body.readerIndex % 4
                if consumed != 0 { body.moveReaderIndex(forwardBy: min(4 - consumed, body.readableBytes)) }
                items.append((ssrc, cname ?? ""))
            }
            return .sourceDescription(items)
        case 203:
            var ssrcs: [UInt32] = []
            for _ in 0..<count { ssrcs.append(try u32()) }
            return .goodbye(ssrcs: ssrcs)
        case 205 where count == 1:
            let sender = try u32()
            let media = try u32()
            var lost: [UInt16] = []
            while body.readableBytes >= 4 {
                let pid = body.readInteger(as: UInt16.self)!
                let blp = body.readInteger(as: UInt16.self)!
                lost.append(pid)
                for bit in 0..<16 where blp & (1 << bit) != 0 { lost.append(pid &+ UInt16(bit + 1)) }
            }
            return .nack(senderSSRC: sender, mediaSSRC: media, lost: lost)
        case 206 where count == 1:
            return .pictureLossIndication(senderSSRC: try u32(), mediaSSRC: try u32())
        case 206 where count == 4:
            let sender = try u32()
            _ = try u32()  // media source SSRC: unused in FIR (RFC 5104 §4.3.1.2)
            var requests: [(ssrc: UInt32, sequence: UInt8)] = []
            while body.readableBytes >= 8 {
                let ssrc = try u32()
                let word = try u32()
                requests.append((ssrc, UInt8(word >> 24)))
            }
            return .fullIntraRequest(senderSSRC: sender, requests: requests)
        default:
            return .other(type: type, count: count, body: body)
        }
    }

    // MARK: - Writing

    /// Writes packets back to back: a compound packet.
    public static func writeCompound(_ packets: [RTCPPacket], to buffer: inout ByteBuffer) {
        for packet in packets { packet.write(to: &buffer) }
    }

    public func write(to buffer: inout ByteBuffer) {
        var body = ByteBuffer()
        let type: UInt8
        let count: UInt8
        func writeReports(_ reports: [ReportBlock]) {
            for report in reports.prefix(31) {
                body.writeInteger(report.ssrc)
                body.writeInteger(UInt32(report.fractionLost) << 24 | UInt32(bitPattern: report.cumulativeLost) & 0x00FF_FFFF)
                body.writeInteger(report.highestSequence)
                body.writeInteger(report.jitter)
                body.writeInteger(report.lastSenderReport)
                body.writeInteger(report.delaySinceLastSenderReport)
            }
        }
        switch self {
        case let .senderReport(ssrc, ntp, rtp, packets, octets, reports):
            (type, count) = (200, UInt8(min(reports.count, 31)))
            body.writeInteger(ssrc)
            body.writeInteger(ntp)
            body.writeInteger(rtp)
            body.writeInteger(packets)
            body.writeInteger(octets)
            writeReports(reports)
        case let .receiverReport(ssrc, reports):
            (type, count) = (201, UInt8(min(reports.count, 31)))
            body.writeInteger(ssrc)
            writeReports(reports)
        case .sourceDescription(let items):
            (type, count) = (202, UInt8(min(items.count, 31)))
            for item in items.prefix(31) {
                // At most 255 bytes, cut at a character boundary.
                var text = item.cname
                while text.utf8.count > 255 { text.removeLast() }
                let cname = Array(text.utf8)
                body.writeInteger(item.ssrc)
                body.writeInteger(UInt8(1))
                body.writeInteger(UInt8(cname.count))
                body.writeBytes(cname)
                // The end-of-items zero, then zeros to the next 32-bit boundary.
                body.writeRepeatingByte(0, count: 4 - (4 + 2 + cname.count) % 4)
            }
        case .goodbye(let ssrcs):
            (type, count) = (203, UInt8(min(ssrcs.count, 31)))
            for ssrc in ssrcs.prefix(31) { body.writeInteger(ssrc) }
        case let .nack(sender, media, lost):
            (type, count) = (205, 1)
            body.writeInteger(sender)
            body.writeInteger(media)
            for (pid, blp) in Self.nackEntries(lost) {
                body.writeInteger(pid)
                body.writeInteger(blp)
            }
        case let .pictureLossIndication(sender, media):
            (type, count) = (206, 1)
            body.writeInteger(sender)
            body.writeInteger(media)
        case let .fullIntraRequest(sender, requests):
            (type, count) = (206, 4)
            body.writeInteger(sender)
            body.writeInteger(UInt32(0))
            for request in requests {
                body.writeInteger(request.ssrc)
                body.writeInteger(UInt32(request.sequence) << 24)
            }
        case let .other(otherType, otherCount, otherBody):
            (type, count) = (otherType, otherCount & 0x1F)
            var copy = otherBody
            body.writeBuffer(&copy)
            body.writeRepeatingByte(0, count: (4 - body.readableBytes % 4) % 4)
        }
        buffer.writeInteger(0x80 | count)
        buffer.writeInteger(type)
        buffer.writeInteger(UInt16(body.readableBytes / 4))
        buffer.writeBuffer(&body)
    }

    /// Lost sequence numbers as (PID, BLP) pairs: each PID with a bitmask of the 16 after it.
    static func nackEntries(_ lost: [UInt16]) -> [(UInt16, UInt16)] {
        var entries: [(UInt16, UInt16)] = []
        for sequence in lost {
            if let last = entries.last, case let distance = sequence &- last.0, distance >= 1, distance <= 16 {
                entries[entries.count - 1].1 |= 1 << (distance - 1)
            } else if entries.last?.0 != sequence {
                entries.append((sequence, 0))
            }
        }
        return entries
    }
}
