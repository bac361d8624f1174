import FuzzSupport
import MediaEdge
import NIOCore
import Wire

/// The WHEP answerer on any offer: the first byte picks what the stream sends (H.264 profile,
/// audio or not, IPv4 or IPv6 candidates), the rest is the offer. Whatever offer is answered,
/// the answer must be SDP a viewer can take: it passes the API's own SDP gate, parses, has a
/// section per offered section with the offer's mid (RFC 8829 §5.3.1), the edge's ICE
/// credentials and fingerprint in every section, and the payload types the edge will send
/// with are the ones it answered with, taken from the offer.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    var input = FuzzInput(start, count)
    let choice = input.byte()
    let profiles = ["42e01f", "42001f", "640028", "4d0032", "f4001f"]
    let video = choice & 7 < 5 ? H264.ProfileLevelID(hex: profiles[Int(choice & 7)]) : nil
    let source = WHEPAnswer.Source(name: "cam", video: video, audio: choice & 8 == 0 || video == nil)
    let candidate = choice & 16 == 0 ? TransportAddress(ip: IPAddress("192.0.2.7")!, port: 8189)
        : TransportAddress(ip: IPAddress("2001:db8::7")!, port: 8189)
    let local = WHEPAnswer.Local(
        ufrag: "EdgeUfrg", password: "edge-password-0123456789", fingerprint: fingerprint,
        candidates: choice & 32 == 0 ? [candidate] : [], sessionID: 42, videoSSRC: 1111, rtxSSRC: 2222, audioSSRC: 3333,
        cname: "switchboard-fuzz")
    guard let text = String(validating: input.rest(), as: UTF8.self),
          let offer = try? SessionDescription(parsing: text) else { return 0 }
    _ = try? SDPText.validateDescription(text)
    guard let (sdp, negotiated) = try? WHEPAnswer.answer(offer: offer, source: source, local: local) else { return 0 }

    do {
        try SDPText.validateDescription(sdp)
    } catch {
        violated("the answer fails the SDP gate (\(error)):\n\(sdp)\nto the offer:\n\(text)")
    }
    guard let answer = try? SessionDescription(parsing: sdp) else { violated("the answer does not parse:\n\(sdp)") }
    guard answer.media.count == offer.media.count else {
        violated("\(offer.media.count) offered sections, \(answer.media.count) answered:\n\(sdp)\nto the offer:\n\(text)")
    }
    for (offered, answered) in zip(offer.media, answer.media) {
        guard answered.kind == offered.kind, answered.mid == offered.mid else {
            violated("section \(offered.kind) mid \(offered.mid ?? "-") answered as \(answered.kind) mid \(answered.mid ?? "-")")
        }
        guard let credentials = answer.iceCredentials(for: answered), credentials.ufrag == local.ufrag,
              credentials.password == local.password,
              answer.fingerprints(for: answered).contains(where: { $0.hash == "sha-256" && $0.value == fingerprint })
        else { violated("a section without the edge's ICE credentials or fingerprint:\n\(sdp)") }
    }
    for (type, kind) in [(negotiated.videoPayloadType, SessionDescription.MediaKind.video), (negotiated.audioPayloadType, .audio)] {
        guard let type else { continue }
        guard answer.media.contains(where: { $0.kind == kind && $0.direction == .sendonly && $0.formats.first == "\(type)" }),
              offer.media.contains(where: { $0.kind == kind && $0.formats.contains("\(type)") }) else {
            violated("\(kind) goes out as payload type \(type), which the answer does not send with:\n\(sdp)")
        }
    }
    if let rtx = negotiated.rtxPayloadType,
       !answer.media.contains(where: { $0.kind == .video && $0.formats.contains("\(rtx)") }) {
        violated("RTX as payload type \(rtx), not in the answer")
    }
    if negotiated.videoPayloadType == nil && negotiated.audioPayloadType == nil { violated("an answer that sends nothing") }
    if negotiated.videoPayloadType != nil && video == nil { violated("video answered for a stream without video") }
    return 0
}

let fingerprint = (0..<32).map { _ in "AB" }.joined(separator: ":")

@_cdecl("WHEPFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, length in fuzz(start, length) }
}
