/// What an SCTP packet asks of the peer, read from its chunk headers (RFC 9260 §3.2). Used on
/// packets usrsctp wrote, before they are encrypted.
package enum SCTPPacket {
    /// Chunk types the peer acknowledges or answers: DATA, I-DATA and FORWARD-TSN (a SACK),
    /// INIT, HEARTBEAT, SHUTDOWN, COOKIE ECHO, ASCONF, I-FORWARD-TSN. RE-CONFIG (130) is
    /// answered only when it carries a request, not when it is itself the response.
    static let answered: Set<UInt8> = [0, 1, 4, 7, 10, 64, 192, 193, 194]
    static let reconfig: UInt8 = 130
    /// RE-CONFIG parameters that are requests (RFC 6525 §4): outgoing, incoming and SSN/TSN
    /// reset, add outgoing and incoming streams. 16 is the response.
    static let reconfigRequests: Set<Int> = [13, 14, 15, 17, 18]

    /// Whether the packet holds a chunk the peer must answer. A packet of SACKs, HEARTBEAT
    /// ACKs and other answers asks for nothing, so no reply to it is no sign of a broken path.
    /// A packet too short for its common header, or whose chunk lengths do not add up, asks
    /// for nothing either.
    package static func asksForAnswer(_ packet: [UInt8]) -> Bool {
        var offset = 12
        while offset + 4 <= packet.count {
            let length = Int(packet[offset + 2]) << 8 | Int(packet[offset + 3])
            guard length >= 4, offset + length <= packet.count else { return false }
            if answered.contains(packet[offset]) { return true }
            if packet[offset] == reconfig, reconfigAsks(packet[(offset + 4)..<(offset + length)]) { return true }
            offset += (length + 3) & ~3
        }
        return false
    }

    private static func reconfigAsks(_ parameters: ArraySlice<UInt8>) -> Bool {
        var offset = parameters.startIndex
        while offset + 4 <= parameters.endIndex {
            let type = Int(parameters[offset]) << 8 | Int(parameters[offset + 1])
            let length = Int(parameters[offset + 2]) << 8 | Int(parameters[offset + 3])
            guard length >= 4 else { return false }
            if reconfigRequests.contains(type) { return true }
            offset += (length + 3) & ~3
        }
        return false
    }
}
