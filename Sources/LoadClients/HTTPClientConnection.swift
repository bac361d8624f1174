import NIOCore
import NIOHTTP1
import NIOPosix

/// One keep-alive HTTP/1.1 connection that sends one request at a time: a worker task owns
/// the channel and takes requests from a queue.
package final class HTTPClientConnection: Sendable {
    struct Job: Sendable {
        var head: HTTPRequestHead
        var body: String
        var done: CheckedContinuation<Reply, any Error>
    }

    package struct Reply: Sendable {
        package var status: Int
        package var headers: HTTPHeaders
        package var body: String
    }

    private let jobs: AsyncStream<Job>.Continuation
    private let worker: Task<Void, Never>
    private let host: String

    private init(jobs: AsyncStream<Job>.Continuation, worker: Task<Void, Never>, host: String) {
        self.jobs = jobs
        self.worker = worker
        self.host = host
    }

    package static func connect(host: String, port: Int, group: any EventLoopGroup) async throws -> HTTPClientConnection {
        let channel = try await ClientBootstrap(group: group)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(
                        wrappingChannelSynchronously: channel)
                }
            }
        let (stream, continuation) = AsyncStream.makeStream(of: Job.self)
        let worker = Task {
            try? await channel.executeThenClose { inbound, outbound in
                var responses = inbound.makeAsyncIterator()
                for await job in stream {
                    do {
                        try await outbound.write(contentsOf: [
                            .head(job.head), .body(.byteBuffer(ByteBuffer(string: job.body))), .end(nil)])
                        var reply = Reply(status: 0, headers: [:], body: "")
                        var finished = false
                        while !finished, let part = try await responses.next() {
                            switch part {
                            case .head(let response):
                                reply.status = Int(response.status.code)
                                reply.headers = response.headers
                            case .body(let buffer): reply.body += String(buffer: buffer)
                            case .end: finished = true
                            }
                        }
                        if finished { job.done.resume(returning: reply) } else { throw LoadError("connection closed") }
                    } catch {
                        job.done.resume(throwing: error)
                        throw error
                    }
                }
            }
            // Anything still queued after the channel went: fail it.
            for await job in stream { job.done.resume(throwing: LoadError("connection closed")) }
        }
        return HTTPClientConnection(jobs: continuation, worker: worker, host: "\(host):\(port)")
    }

    /// Sends a request and returns the response status.
    package func request(_ method: HTTPMethod, _ uri: String, token: String, contentType: String, body: String,
                 extraHeaders: [(String, String)] = []) async throws -> Int {
        try await send(method, uri, token: token, contentType: contentType, body: body, extraHeaders: extraHeaders).status
    }

    /// Sends a request and returns the whole response.
    package func send(_ method: HTTPMethod, _ uri: String, token: String, contentType: String, body: String,
              extraHeaders: [(String, String)] = []) async throws -> Reply {
        var head = HTTPRequestHead(version: .http1_1, method: method, uri: uri)
        head.headers.add(name: "Host", value: host)
        head.headers.add(name: "Authorization", value: "Bearer \(token)")
        head.headers.add(name: "Content-Type", value: contentType)
        head.headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        for (name, value) in extraHeaders { head.headers.add(name: name, value: value) }
        return try await withCheckedThrowingContinuation { continuation in
            if case .terminated = jobs.yield(Job(head: head, body: body, done: continuation)) {
                continuation.resume(throwing: LoadError("connection closed"))
            }
        }
    }

    package func close() async {
        jobs.finish()
        await worker.value
    }
}

