import Foundation
import NIOCore

/// StreamCredit is per-stream flow control between two agents (credit-based, as in HTTP/2 or
/// QUIC): each side grants the other a window of bytes it may send on the stream, and grants
/// more as its local reader takes what arrived. A stream whose reader is slow therefore stops
/// its writer without holding up the other streams of the peer connection, and what waits for a
/// reader is bounded by the window. Pure state; the connection carries the grants.
///
/// Both sides use it only when both descriptions carry `a=x-switchboard-stream-window`
/// (docs/agent.md); with any other WebRTC peer the association's receive window is the only
/// flow control.
struct StreamCredit: Sendable, Equatable {
    /// The window we grant the peer for this stream.
    let window: Int
    /// Bytes we may still send before the peer grants more.
    private(set) var sendable: Int
    /// Bytes the peer may still send before we grant more.
    private(set) var receivable: Int
    /// Bytes our reader took since our last grant.
    private var taken = 0

    /// Largest credit one side may hold: a peer that grants past it is broken.
    static let maximumCredit = 1 << 30

    enum Violation: Error, Equatable, CustomStringConvertible {
        /// The peer sent more than we granted.
        case overrun(by: Int)
        /// The peer granted a negative amount, or so much that its credit passes the maximum.
        case badGrant(Int)

        var description: String {
            switch self {
            case .overrun(let bytes): "the peer sent \(bytes) bytes past its credit"
            case .badGrant(let amount): "the peer granted \(amount) bytes"
            }
        }
    }

    /// `window`: what we grant; `peerWindow`: what the peer's description grants us.
    init(window: Int, peerWindow: Int) {
        self.window = window
        self.sendable = peerWindow
        self.receivable = window
    }

    // MARK: Sending

    /// How many of `count` bytes may go now (taken from the credit).
    mutating func take(upTo count: Int) -> Int {
        let allowed = min(max(count, 0), sendable)
        sendable -= allowed
        return allowed
    }

    /// The peer granted `amount` more bytes.
    mutating func granted(_ amount: Int) throws(Violation) {
        guard amount > 0, amount <= Self.maximumCredit - sendable else { throw .badGrant(amount) }
        sendable += amount
    }

    // MARK: Receiving

    /// `count` bytes arrived from the peer.
    mutating func received(_ count: Int) throws(Violation) {
        guard count <= receivable else { throw .overrun(by: count - receivable) }
        receivable -= count
    }

    /// Our reader took `count` bytes. Returns a grant to send the peer once a quarter of the
    /// window was taken (fewer, larger grants; the peer never waits on a nearly full window).
    mutating func readerTook(_ count: Int) -> Int? {
        taken += max(count, 0)
        guard taken >= max(window / 4, 1) else { return nil }
        let grant = taken
        taken = 0
        receivable += grant
        return grant
    }
}

/// TunnelControl is a text message on a stream that uses credit (docs/agent.md): a grant of
/// more bytes, or the exposing side's refusal. JSON, through Foundation's coder.
struct TunnelControl: Codable, Sendable, Equatable {
    var credit: Int?
    var refused: String?

    /// Control messages are small; a longer text message is a broken peer.
    static let maximumSize = 4096

    enum DecodeError: Error, Equatable { case tooLong, notControl }

    static func decode(_ bytes: ByteBuffer) throws(DecodeError) -> TunnelControl {
        guard bytes.readableBytes <= maximumSize else { throw .tooLong }
        guard let control = try? JSONDecoder().decode(TunnelControl.self, from: Data(bytes.readableBytesView)),
              (control.credit == nil) != (control.refused == nil) else { throw .notControl }
        return control
    }

    func encoded() -> ByteBuffer {
        // Encoding two optional scalars cannot fail.
        ByteBuffer(bytes: (try? JSONEncoder().encode(self)) ?? Data())
    }
}
