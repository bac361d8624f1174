import Foundation
import HTTPTypes
import Hummingbird
import Store

/// Problem is an RFC 9457 problem document, the body of every HTTP error Switchboard sends.
package struct Problem: Error, HTTPResponseError, Sendable {
    package var status: HTTPResponse.Status
    package var title: String
    package var detail: String?
    package var type: String
    package var headers: HTTPFields

    package static let contentType = "application/problem+json"

    package init(
        _ status: HTTPResponse.Status, title: String? = nil, detail: String? = nil,
        type: String = "about:blank", headers: HTTPFields = [:]
    ) {
        self.status = status
        self.title = title ?? status.reasonPhrase
        self.detail = detail
        self.type = type
        self.headers = headers
    }

    package func response(from request: Request, context: some RequestContext) throws -> Response {
        let data = try json(instance: request.uri.path)
        var fields = headers
        fields[.contentType] = Self.contentType
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

extension Problem {
    /// The problem document as JSON; `instance` is the path that failed.
    package func json(instance: String) throws -> Data {
        let body = ProblemBody(type: type, title: title, status: status.code, detail: detail, instance: instance)
        return try RendezvousAPI.encoder.encode(body)
    }
}

/// ProblemMiddleware turns every error that reaches it — Hummingbird's own (unknown route,
/// wrong method, body too large) and unexpected ones — into a problem document, so clients
/// never see a bare text error. Unexpected errors become 500 without their internals.
package struct ProblemMiddleware<Context: RequestContext>: RouterMiddleware {
    /// The methods a path takes, when it is a known path: a request with another method gets
    /// 405 with `Allow` (RFC 9110 §15.5.6) instead of the router's 404.
    let allowedMethods: @Sendable (String) -> [HTTPRequest.Method]?

    package init(allowedMethods: @escaping @Sendable (String) -> [HTTPRequest.Method]? = { _ in nil }) {
        self.allowedMethods = allowedMethods
    }

    package func handle(
        _ request: Request, context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let problem as Problem {
            throw problem
        } catch let error as HTTPError {
            if error.status == .notFound, let methods = allowedMethods(request.uri.path), !methods.isEmpty {
                throw Problem(.methodNotAllowed, detail: "\(request.method) is not allowed here",
                              headers: [.allow: methods.map(\.rawValue).joined(separator: ", ")])
            }
            throw Problem(error.status, detail: error.body, headers: error.headers)
        } catch StoreError.busy(_) {
            // Another process held the write lock past the write timeout; nothing was written.
            throw Problem(.serviceUnavailable, detail: "the database is busy with another write; try again shortly",
                          headers: [.retryAfter: "1"])
        } catch let error as any HTTPResponseError {
            throw Problem(error.status)
        } catch {
            context.logger.error("unhandled error", metadata: ["error": "\(String(reflecting: error))"])
            throw Problem(.internalServerError)
        }
    }
}

/// The JSON members of a problem document (RFC 9457 §3.1).
private struct ProblemBody: Encodable {
    var type: String
    var title: String
    var status: Int
    var detail: String?
    var instance: String
}
