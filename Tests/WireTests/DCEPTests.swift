import NIOCore
import Testing
@testable import Wire

@Suite struct DCEPTests {
    /// An ordered reliable OPEN for label "chat", protocol "json" (RFC 8832 §5.1 layout).
    static let chatOpen: [UInt8] = [
        0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x04,
        0x63, 0x68, 0x61, 0x74, 0x6A, 0x73, 0x6F, 0x6E,
    ]

    @Test func openSerializesToTheExactBytes() {
        var buffer = ByteBuffer()
        DataChannelOpen(label: "chat", protocol: "json").write(to: &buffer)
        #expect(Array(buffer.readableBytesView) == Self.chatOpen)
    }

    @Test func openParsesFromTheExactBytes() throws {
        var buffer = ByteBuffer(bytes: Self.chatOpen)
        let message = try DCEPMessage(parsing: &buffer)
        #expect(message == .open(DataChannelOpen(ordered: true, reliability: .reliable, priority: 256, label: "chat", protocol: "json")))
        #expect(buffer.readableBytes == 0)
    }

    @Test func ackIsTheSingleByte0x02() throws {
        var buffer = ByteBuffer()
        DCEPMessage.ack.write(to: &buffer)
        #expect(Array(buffer.readableBytesView) == [0x02])
        #expect(try DCEPMessage(parsing: &buffer) == .ack)
        #expect(buffer.readableBytes == 0)
    }

    @Test(arguments: [
        (true, DataChannelOpen.Reliability.reliable, UInt8(0x00), UInt32(0)),
        (false, .reliable, 0x80, 0),
        (true, .maxRetransmits(3), 0x01, 3),
        (false, .maxRetransmits(7), 0x81, 7),
        (true, .maxLifetime(milliseconds: 1500), 0x02, 1500),
        (false, .maxLifetime(milliseconds: 0xDEADBEEF), 0x82, 0xDEADBEEF),
    ])
    func channelTypeCarriesTheUnorderedBitAndParameter(ordered: Bool, reliability: DataChannelOpen.Reliability,
                                                       type: UInt8, parameter: UInt32) throws {
        let open = DataChannelOpen(ordered: ordered, reliability: reliability, priority: 0x1234, label: "", protocol: "")
        var buffer = ByteBuffer()
        open.write(to: &buffer)
        #expect(Array(buffer.readableBytesView) ==
            [0x03, type, 0x12, 0x34, UInt8(parameter >> 24), UInt8(parameter >> 16 & 0xFF), UInt8(parameter >> 8 & 0xFF),
             UInt8(parameter & 0xFF), 0, 0, 0, 0])
        #expect(try DataChannelOpen(parsing: &buffer) == open)
    }

    @Test func everyTruncationIsRefusedAndLeavesTheReaderIndex() {
        for length in 0..<Self.chatOpen.count {
            var buffer = ByteBuffer(bytes: [0xEE] + Self.chatOpen[0..<length])
            buffer.moveReaderIndex(forwardBy: 1)
            #expect(throws: DCEPParseError.truncated, "length \(length)") { try DCEPMessage(parsing: &buffer) }
            #expect(buffer.readerIndex == 1)
        }
    }

    @Test func trailingBytesAreALengthMismatch() {
        var buffer = ByteBuffer(bytes: Self.chatOpen + [0x00])
        #expect(throws: DCEPParseError.lengthMismatch(expected: 20, actual: 21)) { try DCEPMessage(parsing: &buffer) }
        #expect(buffer.readerIndex == 0)
        var ack = ByteBuffer(bytes: [0x02, 0x00])
        #expect(throws: DCEPParseError.lengthMismatch(expected: 1, actual: 2)) { try DCEPMessage(parsing: &ack) }
        #expect(ack.readerIndex == 0)
    }

    @Test func lengthFieldsLargerThanTheMessageAreTruncation() {
        var bytes = Self.chatOpen
        bytes[11] = 0x05  // protocol length 5, but only 4 bytes follow
        var buffer = ByteBuffer(bytes: bytes)
        #expect(throws: DCEPParseError.truncated) { try DCEPMessage(parsing: &buffer) }
        #expect(buffer.readerIndex == 0)
    }

    @Test func unknownTypesAreRefused() {
        var buffer = ByteBuffer(bytes: [0x04])
        #expect(throws: DCEPParseError.unknownMessageType(0x04)) { try DCEPMessage(parsing: &buffer) }
        var bytes = Self.chatOpen
        bytes[1] = 0x03
        buffer = ByteBuffer(bytes: bytes)
        #expect(throws: DCEPParseError.unknownChannelType(0x03)) { try DCEPMessage(parsing: &buffer) }
        #expect(buffer.readerIndex == 0)
    }

    @Test func utf8LabelsRoundTripAndLengthsCountBytes() throws {
        let open = DataChannelOpen(label: "tünnel-📡", protocol: "τ")
        var buffer = ByteBuffer()
        open.write(to: &buffer)
        #expect(buffer.getInteger(at: 8, as: UInt16.self) == UInt16("tünnel-📡".utf8.count))
        #expect(buffer.getInteger(at: 10, as: UInt16.self) == 2)
        #expect(buffer.readableBytes == 12 + "tünnel-📡".utf8.count + 2)
        #expect(try DataChannelOpen(parsing: &buffer) == open)
    }

    @Test func invalidUTF8IsRefused() {
        var label = ByteBuffer(bytes: [0x03, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xFF])
        #expect(throws: DCEPParseError.labelNotUTF8) { try DCEPMessage(parsing: &label) }
        var proto = ByteBuffer(bytes: [0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0xC3, 0x28])
        #expect(throws: DCEPParseError.protocolNotUTF8) { try DCEPMessage(parsing: &proto) }
        #expect(proto.readerIndex == 0)
    }

    @Test func ppidsMapEmptyAndBinaryMessages() {
        #expect(DataChannelPPID.outgoing(binary: false, empty: false) == .string)
        #expect(DataChannelPPID.outgoing(binary: true, empty: false) == .binary)
        #expect(DataChannelPPID.outgoing(binary: false, empty: true).rawValue == 56)
        #expect(DataChannelPPID.outgoing(binary: true, empty: true).rawValue == 57)
        #expect(DataChannelPPID(rawValue: 50) == .dcep)
        #expect(DataChannelPPID(rawValue: 52)?.isPartial == true && DataChannelPPID(rawValue: 52)?.isBinary == false)
        #expect(DataChannelPPID(rawValue: 54)?.isPartial == true && DataChannelPPID(rawValue: 54)?.isBinary == true)
        #expect(DataChannelPPID(rawValue: 55) == nil)
        #expect(DataChannelPPID.binaryEmpty.isEmptyMessage && !DataChannelPPID.binary.isEmptyMessage)
    }
}
