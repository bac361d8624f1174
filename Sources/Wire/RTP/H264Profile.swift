/// H.264 facts an SDP answerer and an RTP forwarder need without decoding video: what NAL
/// units an RTP packet starts (RFC 6184 §5.6–5.8) and the profile-level-id of a stream
/// (RFC 6184 §8.1, from the SPS's first three bytes).
extension H264 {
    /// The types of the NAL units an RTP payload begins: the unit of a single-NAL packet,
    /// every unit of a STAP-A, the inner type of an FU-A's first fragment; empty for an FU-A
    /// continuation and for anything that does not parse.
    public static func nalTypes(startingIn payload: some Collection<UInt8>) -> [UInt8] {
        guard let header = payload.first, header & 0x80 == 0 else { return [] }
        let type = H264.type(ofNALHeader: header)
        switch type {
        case 1...23:
            return [type]
        case NALUnitType.stapA.rawValue:
            var types: [UInt8] = []
            var index = payload.index(after: payload.startIndex)
            while payload.distance(from: index, to: payload.endIndex) >= 3 {
                let high = Int(payload[index])
                let low = Int(payload[payload.index(index, offsetBy: 1)])
                let size = high << 8 | low
                let unit = payload.index(index, offsetBy: 2)
                guard size > 0, payload.distance(from: unit, to: payload.endIndex) >= size else { break }
                types.append(H264.type(ofNALHeader: payload[unit]))
                index = payload.index(unit, offsetBy: size)
            }
            return types
        case NALUnitType.fuA.rawValue:
            let second = payload.index(after: payload.startIndex)
            guard second < payload.endIndex, payload[second] & 0x80 != 0 else { return [] }
            return [payload[second] & 0x1F]
        default:
            return []
        }
    }

    /// ProfileLevelID is `profile_idc`, the constraint flags byte and `level_idc`, as in the
    /// SDP `profile-level-id` parameter (six hex digits) and the SPS's bytes 1–3.
    public struct ProfileLevelID: Sendable, Hashable, CustomStringConvertible {
        public var profileIDC: UInt8
        public var constraints: UInt8
        public var levelIDC: UInt8

        public init(profileIDC: UInt8, constraints: UInt8, levelIDC: UInt8) {
            self.profileIDC = profileIDC
            self.constraints = constraints
            self.levelIDC = levelIDC
        }

        /// From six hex digits, e.g. "42e01f".
        public init?(hex: String) {
            guard hex.utf8.count == 6, let value = UInt32(hex, radix: 16) else { return nil }
            self.init(profileIDC: UInt8(value >> 16), constraints: UInt8(value >> 8 & 0xFF), levelIDC: UInt8(value & 0xFF))
        }

        /// From a sequence parameter set NAL unit (header byte first).
        public init?(sps: some Collection<UInt8>) {
            let bytes = Array(sps.prefix(4))
            guard bytes.count == 4, H264.type(ofNALHeader: bytes[0]) == NALUnitType.sequenceParameterSet.rawValue else {
                return nil
            }
            self.init(profileIDC: bytes[1], constraints: bytes[2], levelIDC: bytes[3])
        }

        public var description: String {
            hexString([profileIDC, constraints, levelIDC])
        }

        /// The profile a decoder must support, as WebRTC stacks name them (constraint_set1
        /// on Baseline is Constrained Baseline; constraint_set4+5 on High is Constrained High).
        public enum Profile: Sendable, Hashable {
            case constrainedBaseline, baseline, main, extended, constrainedHigh, high, other(UInt8)
        }

        public var profile: Profile {
            let set0 = constraints & 0x80 != 0, set1 = constraints & 0x40 != 0
            let set4 = constraints & 0x08 != 0, set5 = constraints & 0x04 != 0
            switch profileIDC {
            case 66: return set1 ? .constrainedBaseline : .baseline
            case 77: return set0 && set1 ? .constrainedBaseline : .main
            case 88: return set0 && set1 ? .constrainedBaseline : (set0 ? .baseline : .extended)
            case 100: return set4 && set5 ? .constrainedHigh : .high
            default: return .other(profileIDC)
            }
        }

        /// Whether a decoder for `other`'s profile decodes a stream of this profile: the same
        /// profile, or a Constrained Baseline stream (every profile decodes those), or
        /// Constrained High under High.
        public func isDecodable(by other: ProfileLevelID) -> Bool {
            let mine = profile, theirs = other.profile
            if mine == theirs { return true }
            switch mine {
            case .constrainedBaseline: return [.baseline, .main, .constrainedHigh, .high, .extended].contains(theirs)
            case .constrainedHigh: return theirs == .high
            case .baseline: return theirs == .extended
            default: return false
            }
        }
    }
}
