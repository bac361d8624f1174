import Admission
import DTLS
import Datagram
import NIOCore
import SRTP
import Store
import Wire

/// Viewers: WHEP admission (the offer, the answer, the caps on viewers still connecting) and
/// removal, with the records the service writes to the Store.
extension MediaCore {
    // MARK: - Viewers

    /// What a stream can send right now, or why it cannot be played.
    package func source(stream name: String, token: String?) throws(WHEPError) -> WHEPAnswer.Source {
        guard let state = streams[name] else { throw .unknownStream(name) }
        guard state.config.admits(token: token) else { throw .unauthorized }
        if let video = state.video {
            guard let profile = video.profile, !video.keyframe.isEmpty else { throw .noData(name) }
            return WHEPAnswer.Source(name: name, video: profile, audio: state.audio != nil)
        }
        guard state.audio?.hasData == true else { throw .noData(name) }
        return WHEPAnswer.Source(name: name, video: nil, audio: true)
    }

    /// A WHEP offer, parsed: callers do it before they hand the offer to the media loop.
    package static func parse(offer text: String) -> Result<SessionDescription, WHEPError> {
        Result { () throws(SessionDescription.ParseError) in try SessionDescription(parsing: text) }
            .mapError { .badOffer($0.description) }
    }

    /// Answers a WHEP offer from `client` (the POST's address): a new viewer, waiting for its
    /// ICE checks.
    package func addViewer(stream name: String, offer text: String, token: String?, from client: IPAddress? = nil,
                           now: MediaTime) throws(WHEPError) -> (id: String, answer: String)
    {
        try addViewer(stream: name, offer: Self.parse(offer: text), token: token, from: client, now: now)
    }

    /// As above, with the offer parsed off the media loop; a parse error is reported after the
    /// stream's own refusals (unknown, unauthorized, busy), as if the core had parsed it.
    package func addViewer(stream name: String, offer parsed: Result<SessionDescription, WHEPError>, token: String?,
                           from client: IPAddress? = nil, now: MediaTime) throws(WHEPError) -> (id: String, answer: String)
    {
        let source = try source(stream: name, token: token)
        let client = client.map(ClientSource.init)
        if let client, pendingBySource.isFull(client) {
            counters.refusedSourceBusy += 1
            throw .sourceBusy
        }
        if streams[name]!.pending >= configuration.maxPendingPerStream {
            counters.refusedStreamBusy += 1
            throw .streamBusy(name)
        }
        let offer = try parsed.get()
        var generator = SystemRandomNumberGenerator()
        let id = Self.randomString(22, &generator)
        var ufrag = Self.randomString(8, &generator)
        while byUfrag[ufrag] != nil { ufrag = Self.randomString(8, &generator) }
        let password = Self.randomString(24, &generator)
        var ssrcs = Set<UInt32>()
        while ssrcs.count < 3 { ssrcs.insert(.random(in: 1...UInt32.max, using: &generator)) }
        let ssrcList = Array(ssrcs)
        let local = WHEPAnswer.Local(
            ufrag: ufrag, password: password, fingerprint: context.certificate.fingerprint,
            candidates: configuration.candidates, sessionID: .random(in: 1...(UInt64.max >> 2), using: &generator),
            videoSSRC: ssrcList[0], rtxSSRC: ssrcList[1], audioSSRC: ssrcList[2], cname: "switchboard-\(id.prefix(8))")
        let answer: (sdp: String, negotiated: WHEPAnswer.Negotiated)
        do {
            answer = try WHEPAnswer.answer(offer: offer, source: source, local: local)
        } catch {
            switch error {
            case .badOffer(let text): throw .badOffer(text)
            case .noCommonCodec(let text): throw .noCommonCodec(text)
            }
        }
        let dtls: DTLSEndpoint
        do {
            // The certificate is checked against the offer once DTLS is up (`connected`), so
            // that a mismatch is counted as one.
            dtls = try DTLSEndpoint(context: context, role: answer.negotiated.dtlsClient ? .client : .server,
                                    remoteFingerprints: nil)
        } catch {
            throw .internalError("DTLS: \(error)")
        }
        let viewer = Viewer(id: id, stream: name, localUfrag: ufrag, localPassword: password,
                            negotiated: answer.negotiated, local: local, dtls: dtls, source: client, nowNanos: now.nanos,
                            wallSeconds: now.wall)
        viewers[id] = viewer
        byUfrag[ufrag] = viewer
        streams[name]!.viewers.append(viewer)
        streams[name]!.pending += 1
        if let client { _ = pendingBySource.acquire(client) }  // room checked above
        return (id, answer.sdp)
    }

    /// The viewer plays or ends: it no longer counts against the pending caps.
    func leavePending(_ viewer: Viewer) {
        guard viewer.countedPending else { return }
        viewer.countedPending = false
        streams[viewer.stream]?.pending -= 1
        if let source = viewer.source { pendingBySource.release(source) }
    }

    /// The viewer's stream, or nil if there is no such viewer.
    package func viewerStream(id: String) -> String? { viewers[id]?.stream }

    /// The ICE ufrag the viewer's offer used (a trickle fragment must use it too).
    package func viewerRemoteUfrag(id: String) -> String? { viewers[id]?.negotiated.remoteUfrag }

    /// Ends a viewer (WHEP DELETE); false if it did not exist.
    @discardableResult
    package func removeViewer(id: String, reason: String = "deleted") -> Bool {
        guard let viewer = viewers[id] else { return false }
        if viewer.state == .playing, let selected = viewer.selected {
            for datagram in viewer.dtls.close() { send(ByteBuffer(bytes: datagram), to: selected) }
        }
        remove(viewer, reason: reason)
        return true
    }

    func remove(_ viewer: Viewer, reason: String) {
        guard viewers.removeValue(forKey: viewer.id) != nil else { return }
        leavePending(viewer)
        byUfrag.removeValue(forKey: viewer.localUfrag)
        for address in viewer.addresses where byAddress[address] === viewer { byAddress.removeValue(forKey: address) }
        streams[viewer.stream]?.viewers.removeAll { $0 === viewer }
        // The history is for viewers that got as far as DTLS: an offer that never did ICE
        // (a flood of POSTs, a player that gave up) is only counted.
        if viewer.reachedDTLS {
            ended.append((viewer.record, reason))
        } else {
            counters.viewersNeverConnected += 1
        }
    }

    /// Live viewers and those that ended since the last call, for the Store.
    package func takeRecords() -> (live: [ViewerRecord], ended: [(record: ViewerRecord, reason: String)]) {
        defer { ended = [] }
        return (viewers.values.map(\.record), ended)
    }

    package var viewerCount: Int { viewers.count }

    package func viewerCounts() -> [String: Int] {
        streams.mapValues { $0.viewers.count }
    }
}
