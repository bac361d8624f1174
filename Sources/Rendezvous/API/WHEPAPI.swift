import Admission
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Store
import Wire

/// WHEPAPI is playback over WHEP (draft-ietf-wish-whep, shaped like WHIP, RFC 9725):
/// `POST /whep/{name}` with an SDP offer creates a viewer and answers; the viewer resource
/// takes trickled candidates (PATCH) and ends with DELETE. `GET /play/{name}` is a page that
/// plays the stream in a browser.
enum WHEPAPI {
    /// CORS (browsers on other origins play too): what a WHEP client needs to see and send.
    static let cors: HTTPFields = [
        .accessControlAllowOrigin: "*",
        .accessControlAllowMethods: "POST, PATCH, DELETE, OPTIONS",
        .accessControlAllowHeaders: "Authorization, Content-Type, If-Match",
        .accessControlExposeHeaders: "Location, ETag, Link, Retry-After",
    ]

    static func addRoutes(to router: Router<SwitchboardRequestContext>, edge: any WHEPEdge, maximumBodyBytes: Int,
                          offers: SourceLimiter) {
        router.post("whep/:name") { request, context -> Response in
            var request = request
            let name = try context.parameters.require("name")
            // Every offer costs the edge an SDP parse and a DTLS object, and costs the caller
            // nothing: each takes a token of its source's, answered or not.
            let client = context.remoteAddress.flatMap(TransportAddress.init)?.ip
            if let wait = offers.admit(ClientSource(client)) {
                throw Problem(.tooManyRequests, detail: "too many offers from this address; try again later",
                              headers: cors.merging([.retryAfter: "\(SourceLimiter.retryAfterSeconds(wait))"]))
            }
            let offer = try await SessionsAPI.body(&request, contentType: "application/sdp", limit: maximumBodyBytes)
            let token = RendezvousAPI.bearerToken(header: request.headers[.authorization])
            let viewer: WHEPViewerAnswer
            do throws(WHEPEdgeError) {
                viewer = try await edge.play(stream: name, offer: offer, token: token, from: client)
            } catch {
                throw problem(error)
            }
            var headers = cors
            headers[.contentType] = "application/sdp"
            headers[.location] = "/whep/\(name)/\(viewer.id)"
            headers[.eTag] = etag(viewer.id)
            return Response(status: .created, headers: headers, body: .init(byteBuffer: ByteBuffer(string: viewer.answer)))
        }

        router.on("whep/:name", method: .options) { _, context -> Response in
            guard isStreamName(try context.parameters.require("name")) else {
                throw Problem(.notFound, detail: "no such stream", headers: cors)
            }
            var headers = cors
            headers[.allow] = "POST, OPTIONS"
            headers[HTTPField.Name("Accept-Post")!] = "application/sdp"
            return Response(status: .noContent, headers: headers)
        }

        router.patch("whep/:name/:viewer") { request, context -> Response in
            var request = request
            let (name, id) = (try context.parameters.require("name"), try context.parameters.require("viewer"))
            guard let viewer = await edge.viewer(id: id), viewer.stream == name else {
                throw Problem(.notFound, detail: "no such viewer", headers: cors)
            }
            if let ifMatch = request.headers[.ifMatch]?.trimmingOWS, ifMatch != "*",
               ifMatch != etag(id) {
                throw Problem(.preconditionFailed, detail: "If-Match does not match this viewer's ETag", headers: cors)
            }
            let fragment = try await SessionsAPI.body(&request, contentType: "application/trickle-ice-sdpfrag",
                                                      limit: maximumBodyBytes)
            try checkFragment(fragment, remoteUfrag: viewer.remoteUfrag)
            var headers = cors
            headers[.eTag] = etag(id)
            return Response(status: .noContent, headers: headers)
        }

        router.delete("whep/:name/:viewer") { _, context -> Response in
            let (name, id) = (try context.parameters.require("name"), try context.parameters.require("viewer"))
            guard await edge.stop(viewer: id, of: name) else {
                throw Problem(.notFound, detail: "no such viewer", headers: cors)
            }
            return Response(status: .noContent, headers: cors)
        }

        router.on("whep/:name/:viewer", method: .options) { _, context -> Response in
            let (name, id) = (try context.parameters.require("name"), try context.parameters.require("viewer"))
            guard isStreamName(name), (1...64).contains(id.utf8.count),
                  id.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0)) }) else {
                throw Problem(.notFound, detail: "no such viewer", headers: cors)
            }
            var headers = cors
            headers[.allow] = "PATCH, DELETE, OPTIONS"
            return Response(status: .noContent, headers: headers)
        }

        router.get("play/:name") { _, context -> Response in
            let name = try context.parameters.require("name")
            guard Self.isStreamName(name) else { throw Problem(.notFound, detail: "no such stream") }
            return Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                            body: .init(byteBuffer: ByteBuffer(string: EmbeddedFiles.playHTML)))
        }
    }

    /// A trickled fragment (RFC 8840) for a viewer whose offer used `remoteUfrag`: its shape,
    /// and no ICE restart. ICE-lite learns the viewer's address from its checks, so candidates
    /// need no action.
    static func checkFragment(_ fragment: String, remoteUfrag: String) throws(Problem) {
        do { try SDPText.validateFragment(fragment) } catch {
            throw Problem(.badRequest, detail: "not an SDP fragment: \(error)", headers: cors)
        }
        // A different ufrag is an ICE restart, which this edge does not do.
        for line in fragment.split(whereSeparator: \.isNewline) where line.hasPrefix("a=ice-ufrag:") {
            guard line.dropFirst("a=ice-ufrag:".count).trimmingCharacters(in: .whitespaces) == remoteUfrag else {
                throw Problem(.unprocessableContent, detail: "ICE restarts are not supported; start a new viewer",
                              headers: cors)
            }
        }
    }

    static func etag(_ id: String) -> String { "\"\(id)\"" }

    static func isStreamName(_ name: String) -> Bool { SwitchboardDatabase.isValidStreamName(name) }

    static func problem(_ error: WHEPEdgeError) -> Problem {
        switch error.kind {
        case .unknownStream: Problem(.notFound, detail: error.description, headers: cors)
        case .unauthorized:
            Problem(.unauthorized, detail: error.description,
                    headers: cors.merging([.wwwAuthenticate: #"Bearer realm="switchboard""#]))
        case .noData:
            Problem(.conflict, detail: error.description + "; retry shortly", headers: cors.merging([.retryAfter: "1"]))
        case .badOffer: Problem(.badRequest, detail: error.description, headers: cors)
        case .noCommonCodec: Problem(.notAcceptable, detail: error.description, headers: cors)
        case .unknownViewer: Problem(.notFound, detail: error.description, headers: cors)
        case .streamBusy:
            Problem(.serviceUnavailable, detail: error.description + "; retry shortly", headers: cors.merging([.retryAfter: "2"]))
        case .sourceBusy:
            Problem(.tooManyRequests, detail: error.description + "; let them connect or DELETE them first",
                    headers: cors.merging([.retryAfter: "5"]))
        case .internalError: Problem(.serviceUnavailable, detail: error.description, headers: cors)
        }
    }
}

extension HTTPFields {
    func merging(_ other: HTTPFields) -> HTTPFields {
        var merged = self
        for field in other { merged[field.name] = field.value }
        return merged
    }
}
