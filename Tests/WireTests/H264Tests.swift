import NIOCore
import Testing
@testable import Wire

@Suite struct H264Tests {
    static let sps: [UInt8] = [0x67, 0x42, 0xC0, 0x1F, 0xDA, 0x01]
    static let pps: [UInt8] = [0x68, 0xCE, 0x3C, 0x80]

    func bytes(_ units: [H264.NALUnit]) -> [[UInt8]] { units.map { Array($0.bytes.readableBytesView) } }

    @Test func aSingleNALUnitPacketIsTheUnit() throws {
        var depacketizer = H264.Depacketizer()
        let units = try depacketizer.push(payload: ByteBuffer(bytes: Self.sps), sequenceNumber: 1, timestamp: 3000)
        #expect(bytes(units) == [Self.sps])
        #expect(units[0].isParameterSet && units[0].timestamp == 3000)
    }

    @Test func aSTAPAIsSplitIntoItsUnits() throws {
        // RFC 6184 §5.7.1: STAP-A header (NRI of the highest unit, type 24), then size + unit pairs.
        let payload: [UInt8] = [0x78, 0, UInt8(Self.sps.count)] + Self.sps + [0, UInt8(Self.pps.count)] + Self.pps
        var depacketizer = H264.Depacketizer()
        let units = try depacketizer.push(payload: ByteBuffer(bytes: payload), sequenceNumber: 1, timestamp: 1)
        #expect(bytes(units) == [Self.sps, Self.pps])
    }

    @Test func fuAFragmentsAreReassembledWithTheOriginalHeader() throws {
        // An IDR slice (0x65: NRI 3, type 5) of 9 bytes after its header, in three fragments.
        let body: [UInt8] = Array(1...9)
        let indicator: UInt8 = 0x60 | 28
        var depacketizer = H264.Depacketizer()
        #expect(try depacketizer.push(payload: ByteBuffer(bytes: [indicator, 0x80 | 5] + body[0..<3]), sequenceNumber: 10,
                                      timestamp: 9000).isEmpty)
        #expect(try depacketizer.push(payload: ByteBuffer(bytes: [indicator, 5] + body[3..<6]), sequenceNumber: 11,
                                      timestamp: 9000).isEmpty)
        let units = try depacketizer.push(payload: ByteBuffer(bytes: [indicator, 0x40 | 5] + body[6..<9]),
                                          sequenceNumber: 12, timestamp: 9000)
        #expect(bytes(units) == [[0x65] + body])
        #expect(units[0].isIDR && depacketizer.droppedUnits == 0)
    }

    @Test func aLostFragmentDropsTheUnitAndTheNextUnitStillComes() throws {
        let indicator: UInt8 = 0x60 | 28
        var depacketizer = H264.Depacketizer()
        _ = try depacketizer.push(payload: ByteBuffer(bytes: [indicator, 0x80 | 5, 1]), sequenceNumber: 1, timestamp: 1)
        // Sequence 2 is lost; 3 is the end fragment.
        #expect(try depacketizer.push(payload: ByteBuffer(bytes: [indicator, 0x40 | 5, 3]), sequenceNumber: 3,
                                      timestamp: 1).isEmpty)
        #expect(depacketizer.droppedUnits == 1)
        let next = try depacketizer.push(payload: ByteBuffer(bytes: [0x41, 7, 7]), sequenceNumber: 4, timestamp: 2)
        #expect(bytes(next) == [[0x41, 7, 7]])
    }

    @Test func sequenceNumbersWrapAroundInsideAUnit() throws {
        let indicator: UInt8 = 0x60 | 28
        var depacketizer = H264.Depacketizer()
        _ = try depacketizer.push(payload: ByteBuffer(bytes: [indicator, 0x80 | 1, 1]), sequenceNumber: 65535, timestamp: 5)
        let units = try depacketizer.push(payload: ByteBuffer(bytes: [indicator, 0x40 | 1, 2]), sequenceNumber: 0,
                                          timestamp: 5)
        #expect(bytes(units) == [[0x61, 1, 2]])
    }

    @Test(arguments: [
        ([UInt8](), H264.DepacketizeError.emptyPayload),
        ([0x85, 1], .forbiddenBit),
        ([0x19, 0, 1], .unsupportedType(25)),   // STAP-B
        ([0x1D, 0x85], .unsupportedType(29)),   // FU-B
        ([0x78, 0, 9, 0x67], .badAggregationSize),
        ([0x78, 0, 0], .badAggregationSize),
        ([0x7C], .badFragment),
        ([0x7C, 0xC5, 1], .badFragment),         // start and end at once
        ([0x7C, 0x98, 1], .badFragment),         // a STAP-A inside an FU
    ])
    func malformedPayloadsAreRefused(bytes: [UInt8], error: H264.DepacketizeError) {
        var depacketizer = H264.Depacketizer()
        #expect(throws: error) { try depacketizer.push(payload: ByteBuffer(bytes: bytes), sequenceNumber: 1, timestamp: 1) }
    }
}
