import Foundation
import FuzzSupport
import NIOCore
import Wire
@testable import ICE
@testable import Peer

/// What another peer sends a peer agent, through the server or on the data channel: its SDP
/// offer or answer (`DataChannelSDP`), trickled fragments, ICE candidate lines, DCEP messages
/// and tunnel control messages. The first byte picks the parser, the rest is its input.
/// Checked besides "no trap": whatever parses writes back to text (or bytes) that parses to
/// the same value, so what the agent understood is what it would say.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    var input = FuzzInput(start, count)
    let which = input.byte() % 5
    let bytes = input.rest()
    switch which {
    case 0:
        guard let text = String(validating: bytes, as: UTF8.self), let description = try? DataChannelSDP(parsing: text) else {
            return 0
        }
        let written = description.text(sessionID: 1)
        guard let again = try? DataChannelSDP(parsing: written) else { violated("our own SDP does not parse:\n\(written)") }
        if again != description { violated("SDP changed in a round trip:\n\(text)\n---\n\(written)") }
    case 1:
        guard let text = String(validating: bytes, as: UTF8.self) else { return 0 }
        let fragment = TrickleFragment(parsing: text)
        if fragment.candidates.count > 64 { violated("\(fragment.candidates.count) candidates kept") }
        let again = TrickleFragment(parsing: fragment.text)
        if again != fragment { violated("fragment changed in a round trip:\n\(text)\n---\n\(fragment.text)") }
    case 2:
        guard let text = String(validating: bytes, as: UTF8.self), let candidate = try? ICECandidate(sdpAttribute: text) else {
            return 0
        }
        let written = candidate.sdpAttribute
        guard let again = try? ICECandidate(sdpAttribute: written) else { violated("our own candidate does not parse: \(written)") }
        if again != candidate { violated("candidate changed in a round trip: \(text) -> \(written)") }
    case 3:
        var buffer = ByteBuffer(bytes: bytes)
        guard let message = try? DCEPMessage(parsing: &buffer) else { return 0 }
        var written = ByteBuffer()
        message.write(to: &written)
        guard let again = try? DCEPMessage(parsing: &written) else { violated("our own DCEP message does not parse") }
        if again != message { violated("DCEP message changed in a round trip") }
    default:
        guard let control = try? TunnelControl.decode(ByteBuffer(bytes: bytes)) else { return 0 }
        guard let again = try? TunnelControl.decode(control.encoded()) else { violated("our own control message does not decode") }
        if again != control { violated("control message changed in a round trip") }
    }
    return 0
}

@_cdecl("PeerFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, length in fuzz(start, length) }
}
