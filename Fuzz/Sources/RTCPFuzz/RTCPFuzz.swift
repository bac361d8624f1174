import FuzzSupport
import MediaEdge
import MediaRig
import NIOCore
import Wire

/// RTCP feedback from a playing viewer: the input is a series of RTCP compounds as the fuzzer
/// writes them (the words 1, 2, 3 stand for the viewer's video, RTX and audio SSRCs), each
/// SRTCP-protected by the viewer (or sent bare), with live frames and clock moves between
/// them so that NACKs find packets and PLIs insert keyframes. `MediaRig.drain` checks every
/// packet the viewer gets back.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    var input = FuzzInput(start, count)
    let rig = MediaRig(video: true, audio: true)
    func frame(_ payloads: [[UInt8]]) {
        rig.video[0].timestamp &+= 3000
        rig.ingest(.video, payloads.enumerated().map { rig.packet(.video, $1, marker: $0 == payloads.count - 1) })
        rig.audio[0].timestamp &+= 960
        rig.ingest(.audio, [rig.packet(.audio, [0xFC, 0x01], marker: false)])
    }
    let keyframe: [[UInt8]] = [[0x67, 0x42, 0xC0, 0x1E, 0xDA], [0x68, 0xCE, 0x3C, 0x80], [0x7C, 0x85, 0xAA], [0x7C, 0x45, 0xBB]]
    frame(keyframe)
    frame([[0x41, 0x9A, 0x01]])
    guard let viewer = rig.connect(from: TransportAddress(ip: IPAddress("127.0.0.1")!, port: 40000)) else {
        violated("a viewer could not join a stream with a keyframe")
    }
    frame([[0x41, 0x9A, 0x02]])
    while !input.isEmpty {
        let flags = input.byte()
        let bytes = input.blob()
        if flags & 1 == 0 {
            rig.rtcp(bytes: bytes, from: viewer)
        } else {
            rig.receive(ByteBuffer(bytes: bytes), from: viewer)
        }
        if flags & 2 != 0 { rig.advance(nanos: UInt64(flags >> 2) * 20_000_000) }
        if flags & 4 != 0 { frame(flags & 8 != 0 ? keyframe : [[0x41, 0x9A, flags]]) }
        if flags & 0x80 != 0 { rig.tick() }
    }
    return 0
}

@_cdecl("RTCPFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    runFuzzer(argc, argv) { start, length in fuzz(start, length) }
}
