import DataChannel
import NIOCore

/// DataChannelTunnel is one tunnelled stream on one data channel of a peer connection, in
/// the tunnel protocol TunnelChannel describes. It lives on the peer connection's event loop.
/// What arrives before a delegate is set (or while paused) waits here. With a peer that
/// grants credit (`StreamCredit`, both sides our agents) that is bounded by the stream's
/// window and a pause holds up this stream alone; with any other peer the bound is the
/// association's receive window, and a paused tunnel pauses the association's reading.
final class DataChannelTunnel: TunnelChannel {
    enum Item {
        case bytes(ByteBuffer)
        case end
        case refused(String)
        case closed
    }

    private(set) var id: DataChannelID?
    let service: String
    private weak var connection: PeerConnection?
    private var inbox: [Item] = []
    private var paused = false
    /// This tunnel's pause stopped the association's reading (no credit with this peer).
    private var pausedAssociation = false
    /// Paused because nobody takes bytes yet (the service is still being dialled).
    private var pausedForReader = false
    /// Per-stream flow control, set when the channel opens if both sides use it.
    var credit: StreamCredit?
    /// Credit granted to the peer that SCTP could not take yet.
    var pendingGrant = 0
    private(set) var isClosed = false
    /// What waits to go into SCTP, in order: bytes, the end marker, a refusal.
    enum Outgoing {
        case bytes(ByteBuffer)
        case end
        case text(String)
    }
    var backlog = CircularBuffer<Outgoing>()
    var backlogBytes = 0
    /// The writer was told to stop: tell it `writable()` once the backlog drained.
    var blocked = false
    var closeAfterBacklog = false
    /// Above this much waiting, `send` tells the writer to stop reading.
    static let backlogLimit = 256 * 1024
    /// The peer opened this channel (as opposed to us).
    let incoming: Bool

    weak var delegate: (any TunnelChannelDelegate)? {
        didSet {
            if delegate != nil && pausedForReader { resumeReceiving() } else { deliver() }
        }
    }

    init(id: DataChannelID?, service: String, connection: PeerConnection, incoming: Bool = false) {
        self.id = id
        self.incoming = incoming
        self.service = service
        self.connection = connection
    }

    func assign(_ id: DataChannelID) {
        self.id = id
    }

    func send(_ bytes: ByteBuffer) -> Bool {
        guard !isClosed, bytes.readableBytes > 0, let connection else { return false }
        return connection.send(bytes, on: self)
    }

    func sendEnd() {
        guard !isClosed, let connection else { return }
        connection.sendEnd(on: self)
    }

    func refuse(_ reason: String) {
        guard !isClosed, let connection else { return }
        connection.refuse(self, reason: reason)
        close()
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        paused = false
        pausedForReader = false
        if pausedAssociation { pausedAssociation = false; connection?.resumeReceiving() }
        connection?.closeTunnel(self)
    }

    func pauseReceiving() {
        guard !paused, !isClosed else { return }
        paused = true
        if credit == nil {
            pausedAssociation = true
            connection?.pauseReceiving()
        }
    }

    func resumeReceiving() {
        guard paused else { return }
        paused = false
        pausedForReader = false
        if pausedAssociation {
            pausedAssociation = false
            connection?.resumeReceiving()
        }
        deliver()
    }

    // MARK: From the connection

    func arrived(_ item: Item) {
        inbox.append(item)
        if case .bytes(let bytes) = item { waiting += bytes.readableBytes }
        deliver()
        // Nobody takes bytes yet (the service is still being dialled): past a bound, let the
        // association's window hold the rest. (With credit, the stream's window is the bound.)
        if delegate == nil && credit == nil && waiting > Self.waitingLimit && !paused {
            pausedForReader = true
            pauseReceiving()
        }
    }

    static let waitingLimit = 256 * 1024
    private var waiting = 0

    func writable() {
        delegate?.tunnelWritable()
    }

    private func deliver() {
        while !paused, let delegate, !inbox.isEmpty {
            switch inbox.removeFirst() {
            case .bytes(let bytes):
                waiting -= bytes.readableBytes
                delegate.tunnel(received: bytes)
                if let grant = credit?.readerTook(bytes.readableBytes) { connection?.grant(grant, on: self) }
            case .end: delegate.tunnelEnded()
            case .refused(let reason): delegate.tunnel(refused: reason)
            case .closed: delegate.tunnelClosed()
            }
        }
    }
}
