import Wire

/// WHEPEdge is what the WHEP routes need from a media edge: a viewer made from an offer, a
/// viewer looked up, a viewer ended. The executable wires the real edge to it, so Rendezvous
/// never imports a media target (and a peer agent that uses Rendezvous's types drags no
/// server in).
package protocol WHEPEdge: Sendable {
    /// Answers a viewer's offer for `stream` (`token`: the request's bearer token, `client`:
    /// its source address, for the edge's per-source limits).
    func play(stream: String, offer: String, token: String?, from client: IPAddress?) async throws(WHEPEdgeError)
        -> WHEPViewerAnswer
    /// The stream a viewer plays and the ufrag of its offer, or nil when there is no such viewer.
    func viewer(id: String) async -> WHEPViewerInfo?
    /// Ends a viewer of `stream`; false if there was none.
    func stop(viewer id: String, of stream: String) async -> Bool
}

/// A new viewer: its id (the resource's last path segment) and the SDP answer.
package struct WHEPViewerAnswer: Sendable, Equatable {
    package var id: String
    package var answer: String

    package init(id: String, answer: String) {
        self.id = id
        self.answer = answer
    }
}

/// What the PATCH route checks a trickled fragment against.
package struct WHEPViewerInfo: Sendable, Equatable {
    package var stream: String
    package var remoteUfrag: String

    package init(stream: String, remoteUfrag: String) {
        self.stream = stream
        self.remoteUfrag = remoteUfrag
    }
}

/// Why the edge could not make a viewer: the kind picks the HTTP status, the detail is the
/// edge's own words for the problem document.
package struct WHEPEdgeError: Error, Sendable, Equatable, CustomStringConvertible {
    package enum Kind: Sendable, Equatable {
        case unknownStream
        case unauthorized
        /// Registered, but no media (or no keyframe yet): try again shortly.
        case noData
        case badOffer
        case noCommonCodec
        case unknownViewer
        /// The stream has as many viewers still connecting as it takes.
        case streamBusy
        /// This source has as many viewers still connecting as it may.
        case sourceBusy
        case internalError
    }

    package var kind: Kind
    package var detail: String

    package init(_ kind: Kind, detail: String) {
        self.kind = kind
        self.detail = detail
    }

    package var description: String { detail }
}
