import MediaEdge
import Rendezvous
import Wire

/// MediaEdgeWHEP puts the media edge behind the WHEP routes' `WHEPEdge`: Rendezvous does not
/// import MediaEdge, the executable joins the two.
struct MediaEdgeWHEP: WHEPEdge {
    let edge: MediaEdge

    func play(stream: String, offer: String, token: String?, from client: IPAddress?) async throws(WHEPEdgeError)
        -> WHEPViewerAnswer
    {
        do {
            let viewer = try await edge.play(stream: stream, offer: offer, token: token, from: client)
            return WHEPViewerAnswer(id: viewer.id, answer: viewer.answer)
        } catch {
            throw WHEPEdgeError(error)
        }
    }

    func viewer(id: String) async -> WHEPViewerInfo? {
        await edge.viewer(id: id).map { WHEPViewerInfo(stream: $0.stream, remoteUfrag: $0.remoteUfrag) }
    }

    func stop(viewer id: String, of stream: String) async -> Bool {
        await edge.stop(viewer: id, of: stream)
    }
}

extension WHEPEdgeError {
    init(_ error: WHEPError) {
        let kind: Kind = switch error {
        case .unknownStream: .unknownStream
        case .unauthorized: .unauthorized
        case .noData: .noData
        case .badOffer: .badOffer
        case .noCommonCodec: .noCommonCodec
        case .unknownViewer: .unknownViewer
        case .streamBusy: .streamBusy
        case .sourceBusy: .sourceBusy
        case .internalError: .internalError
        }
        self.init(kind, detail: error.description)
    }
}
