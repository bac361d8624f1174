import NIOCore

/// H264 holds the H.264 facts a media edge needs: NAL unit types (ITU-T H.264 Table 7-1)
/// and RTP depacketizing for packetization-mode 1 (RFC 6184).
public enum H264 {
    /// nal_unit_type, the low 5 bits of a NAL unit's first byte.
    public enum NALUnitType: UInt8, Sendable {
        case nonIDRSlice = 1, partitionA = 2, partitionB = 3, partitionC = 4, idrSlice = 5, sei = 6
        case sequenceParameterSet = 7, pictureParameterSet = 8, accessUnitDelimiter = 9, endOfSequence = 10
        case endOfStream = 11, filler = 12
        /// RTP aggregation and fragmentation units (RFC 6184 §5.2).
        case stapA = 24, stapB = 25, mtap16 = 26, mtap24 = 27, fuA = 28, fuB = 29
    }

    public static func type(ofNALHeader byte: UInt8) -> UInt8 { byte & 0x1F }

    /// A NAL unit (without start code), with its RTP timestamp.
    public struct NALUnit: Sendable, Equatable {
        public var bytes: ByteBuffer
        public var timestamp: UInt32

        public init(bytes: ByteBuffer, timestamp: UInt32) {
            self.bytes = bytes
            self.timestamp = timestamp
        }

        public var type: UInt8 { bytes.getInteger(at: bytes.readerIndex, as: UInt8.self).map(H264.type(ofNALHeader:)) ?? 0 }
        public var isIDR: Bool { type == NALUnitType.idrSlice.rawValue }
        public var isParameterSet: Bool {
            type == NALUnitType.sequenceParameterSet.rawValue || type == NALUnitType.pictureParameterSet.rawValue
        }
    }

    public enum DepacketizeError: Error, Sendable, Equatable {
        case emptyPayload
        /// The forbidden_zero_bit is set (RFC 6184 §5.3).
        case forbiddenBit
        /// STAP-B, MTAP and FU-B need interleaved mode (2), which is not supported.
        case unsupportedType(UInt8)
        /// A STAP-A unit's size runs past the payload.
        case badAggregationSize
        /// An FU-A with both start and end bits, or a type of 24–31 inside it.
        case badFragment
    }

    /// Depacketizer turns the RTP payloads of one H.264 stream, in order, into NAL units:
    /// single NAL unit packets as they are, STAP-A split, FU-A reassembled. A sequence gap
    /// inside a fragmented unit drops that unit (counted) instead of emitting a broken one.
    public struct Depacketizer: Sendable {
        private var fragment: ByteBuffer?
        private var fragmentTimestamp: UInt32 = 0
        private var lastSequence: UInt16?
        /// NAL units dropped because a fragment was missing.
        public private(set) var droppedUnits = 0

        public init() {}

        public mutating func push(payload: ByteBuffer, sequenceNumber: UInt16, timestamp: UInt32) throws(DepacketizeError)
            -> [NALUnit]
        {
            let contiguous = lastSequence.map { sequenceNumber == $0 &+ 1 } ?? true
            lastSequence = sequenceNumber
            if !contiguous, fragment != nil {
                fragment = nil
                droppedUnits += 1
            }
            guard let header = payload.getInteger(at: payload.readerIndex, as: UInt8.self) else { throw .emptyPayload }
            guard header & 0x80 == 0 else { throw .forbiddenBit }
            let type = H264.type(ofNALHeader: header)
            switch type {
            case 1...23:
                return [NALUnit(bytes: payload, timestamp: timestamp)]
            case NALUnitType.stapA.rawValue:
                var body = payload.getSlice(at: payload.readerIndex + 1, length: payload.readableBytes - 1)!
                var units: [NALUnit] = []
                while body.readableBytes > 0 {
                    guard let size = body.readInteger(as: UInt16.self), size > 0,
                          let unit = body.readSlice(length: Int(size)) else { throw .badAggregationSize }
                    units.append(NALUnit(bytes: unit, timestamp: timestamp))
                }
                return units
            case NALUnitType.fuA.rawValue:
                guard let fuHeader = payload.getInteger(at: payload.readerIndex + 1, as: UInt8.self) else {
                    throw .badFragment
                }
                let start = fuHeader & 0x80 != 0
                let end = fuHeader & 0x40 != 0
                let innerType = fuHeader & 0x1F
                guard !(start && end), (1...23).contains(innerType) else { throw .badFragment }
                var data = payload.getSlice(at: payload.readerIndex + 2, length: payload.readableBytes - 2)!
                if start {
                    if fragment != nil { droppedUnits += 1 }  // the previous one never ended
                    var unit = ByteBuffer()
                    unit.writeInteger((header & 0xE0) | innerType)
                    unit.writeBuffer(&data)
                    fragment = unit
                    fragmentTimestamp = timestamp
                    return []
                }
                guard var unit = fragment else { return [] }  // a middle without its start: already dropped
                unit.writeBuffer(&data)
                if end {
                    fragment = nil
                    return [NALUnit(bytes: unit, timestamp: fragmentTimestamp)]
                }
                fragment = unit
                return []
            default:
                throw .unsupportedType(type)
            }
        }
    }
}
