import CUSRSCTP
import NIOCore
import Wire

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// DataChannelID names a data channel by its SCTP stream id (the same id both ways).
package struct DataChannelID: Hashable, Sendable, Comparable, CustomStringConvertible {
    package let stream: UInt16
    package init(stream: UInt16) { self.stream = stream }
    package static func < (lhs: Self, rhs: Self) -> Bool { lhs.stream < rhs.stream }
    package var description: String { "channel \(stream)" }
}

/// SCTPAssociation is one SCTP association over an unreliable datagram pipe the caller
/// carries (RFC 8261: the bytes travel inside DTLS), through usrsctp in AF_CONN mode, with
/// WebRTC data channels (RFC 8831) and DCEP (RFC 8832) on top.
///
/// **Threading:** usrsctp has process-global state and runs here with no threads of its own
/// (`usrsctp_init_nothreads`). Every association in the process, and every call on one, must be
/// made from one and the same thread — the caller's SCTP event loop — and that thread also calls
/// `handleTimers(now:)` about every 10 ms (`nextTimerDeadline`). Debug builds assert it.
/// Callbacks (`output`, `onEvent`) run on that thread after usrsctp has returned, never from
/// inside usrsctp, so they may call back into any association.
///
/// Flow control: `send` queues beyond usrsctp's 1 MiB send buffer up to `sendHighWaterMark`
/// bytes per association and answers `.wouldBlock` from there on; `.bufferedAmountLow` says
/// when to write again. `pauseReceiving()` stops reading, so usrsctp's receive window (1 MiB)
/// fills and the peer's sender stalls.
package final class SCTPAssociation {
    /// The DTLS role decides the stream id parity (RFC 8832 §6): client even, server odd.
    package enum Role: Sendable { case client, server }

    package struct Configuration: Sendable {
        package var localPort: UInt16 = 5000
        package var remotePort: UInt16 = 5000
        /// Largest message accepted from the peer (larger ones are dropped and their channel
        /// closed).
        package var maxMessageSize = 256 * 1024
        /// Largest message the peer accepts (its SDP `a=max-message-size`); larger sends refused.
        package var remoteMaxMessageSize = 256 * 1024
        /// Bytes queued above usrsctp's send buffer at which `send` answers `.wouldBlock`; the
        /// queue never holds more than this plus one message.
        package var sendHighWaterMark = 1 << 20
        /// `.bufferedAmountLow` fires when the queue drains to this after a `.wouldBlock`.
        package var sendLowWaterMark = 256 * 1024
        /// usrsctp's socket buffers each way.
        package var socketBufferSize = 1 << 20
        package var streams: UInt16 = 1024
        /// Path MTU, fixed, no discovery (RFC 8261 §5). usrsctp counts it without the SCTP
        /// common header: packets are at most this + 12 bytes (1184), which leaves room for DTLS
        /// (≤ 37), UDP and IPv6 headers within 1280.
        package var pathMTU: UInt32 = 1172
        /// Retransmission timeout bounds (ms). A path that comes back (an ICE restart after a
        /// NAT rebinding) carries data again at the next retransmission: a lower maximum
        /// means a shorter wait after long losses.
        package var minimumRTO: UInt32 = 200
        package var maximumRTO: UInt32 = 10_000
        /// Retransmissions of one chunk before the association gives up (RFC 4960
        /// Association.Max.Retrans); with `maximumRTO` it sets how long an outage it survives.
        package var maximumRetransmissions: UInt16 = 10
        package init() {}
    }

    package enum DownReason: Sendable, Equatable {
        case lost, shutdown, couldNotStart, restartRefused
    }

    package enum Event: Sendable, Equatable {
        case associationUp
        /// The peer opened a channel (its DCEP OPEN arrived; the ACK is on its way).
        case channelOpened(DataChannelID, label: String, protocol: String)
        /// The peer acknowledged a channel we opened.
        case channelOpenAcked(DataChannelID)
        case message(DataChannelID, ByteBuffer, binary: Bool)
        /// The peer reset its side of the channel (or our close completed): nothing more arrives.
        case channelClosed(DataChannelID)
        /// After a `.wouldBlock`, the send queue drained: write again.
        case bufferedAmountLow(DataChannelID)
        case associationDown(DownReason)
    }

    package enum SendResult: Sendable, Equatable {
        /// Accepted; keep writing.
        case sent
        /// Accepted, but the queue reached the high-water mark: wait for `.bufferedAmountLow`.
        case wouldBlock(buffered: Int)
        /// Not accepted.
        case refused(SendRefusal)
    }

    package enum SendRefusal: Sendable, Equatable {
        case notConnected, unknownChannel, channelClosing, tooLarge, queueFull
    }

    package enum OpenError: Error, Sendable, Equatable {
        case notConnected, noFreeStream, labelTooLong
    }

    /// Counters of what was dropped; none of these stop the association.
    package struct Statistics: Sendable, Equatable {
        package var packetsDropped = 0
        package var oversizedMessages = 0
        package var messagesDropped = 0
        package var messagesSent = 0
        package var messagesReceived = 0
    }

    private enum State { case idle, connecting, up, down, closed }

    private enum ChannelState { case awaitingAck, open, closing }

    private struct Channel {
        var state: ChannelState
        var ordered: Bool
        var reliability: DataChannelOpen.Reliability
        var queuedBytes = 0
        var blocked = false
        var incomingReset = false
        var outgoingResetDone = false
        var resetRequested = false
        var closedReported = false
    }

    private enum Outgoing {
        case message(stream: UInt16, ppid: DataChannelPPID, payload: ByteBuffer, counted: Int)
        case reset(stream: UInt16)
    }

    package let role: Role
    package let configuration: Configuration
    private let output: ([UInt8]) -> Void
    private let onEvent: (Event) -> Void
    private var token: UInt = 0
    private var socket: OpaquePointer?
    private var state = State.idle
    private var initSent = false
    private var earlyInput: [[UInt8]] = []
    private var pendingOutput: [[UInt8]] = []
    private var pendingEvents: [Event] = []
    private var channels: [UInt16: Channel] = [:]
    private var sendQueue = CircularBuffer<Outgoing>()
    private var queuedBytes = 0
    private var streamLimit: UInt16 = 0
    private var paused = false
    private var partial: [UInt16: ByteBuffer] = [:]
    private var legacyPartial: [UInt16: ByteBuffer] = [:]
    private var partialBytes = 0
    private var discarding: Set<UInt16> = []
    private var notification: [UInt8] = []
    private var scratch: UnsafeMutableRawBufferPointer
    private let allocator = ByteBufferAllocator()
    package private(set) var statistics = Statistics()

    static let maxEarlyPackets = 32
    static let maxNotificationBytes = 64 * 1024

    /// Creates the association and its usrsctp socket; nothing is sent until `start()`.
    /// `output` receives each SCTP packet to carry to the peer (inside DTLS).
    package init(role: Role, configuration: Configuration = .init(),
                 output: @escaping ([UInt8]) -> Void, onEvent: @escaping (Event) -> Void) {
        self.role = role
        self.configuration = configuration
        self.output = output
        self.onEvent = onEvent
        self.scratch = .allocate(byteCount: 64 * 1024, alignment: 8)
        self.token = SCTPStack.register(self)
    }

    deinit {
        teardown()
        scratch.deallocate()
    }

    // MARK: Public operations

    /// Starts the association: binds and connects (both sides do, RFC 8841 simultaneous open).
    package func start() {
        SCTPStack.enter()
        guard state == .idle else { return }
        usrsctp_register_address(SCTPStack.pointer(token))
        guard let socket = usrsctp_socket(Int32(switchboard_AF_CONN()), Int32(switchboard_SOCK_STREAM()),
                                          Int32(switchboard_IPPROTO_SCTP()), nil, nil, 0, nil) else {
            fail(.couldNotStart)
            return
        }
        self.socket = socket
        configureSocket(socket)
        var local = address(port: configuration.localPort)
        var remote = address(port: configuration.remotePort)
        let bound = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                usrsctp_bind(socket, UnsafeMutablePointer(mutating: $0), socklen_t(MemoryLayout<sockaddr_conn>.size))
            }
        }
        guard bound == 0 else {
            fail(.couldNotStart)
            return
        }
        state = .connecting
        let connected = withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                usrsctp_connect(socket, UnsafeMutablePointer(mutating: $0), socklen_t(MemoryLayout<sockaddr_conn>.size))
            }
        }
        if connected != 0 && switchboard_errno() != switchboard_EINPROGRESS() {
            fail(.couldNotStart)
            return
        }
        feedEarlyInput()
        finishCall()
    }

    /// Takes one SCTP packet from the peer (one decrypted DTLS record). Packets that arrive
    /// before our INIT went out wait (at most 32); packets with a wrong checksum are dropped.
    package func input(_ packet: [UInt8]) {
        SCTPStack.enter()
        guard state != .closed, state != .down else { return }
        guard packet.count >= 12, packet.count <= 65536, Self.checksumIsValid(packet) else {
            statistics.packetsDropped += 1
            return
        }
        guard initSent else {
            if earlyInput.count < Self.maxEarlyPackets { earlyInput.append(packet) } else { statistics.packetsDropped += 1 }
            return
        }
        packet.withUnsafeBytes { usrsctp_conninput(SCTPStack.pointer(token), $0.baseAddress, $0.count, 0) }
        finishCall()
    }

    package func input(_ packet: ByteBuffer) { input(Array(packet.readableBytesView)) }

    /// Drives usrsctp's timers (retransmission, delayed SACK, heartbeats) for every association
    /// in the process. Call about every 10 ms from the SCTP thread.
    package func handleTimers(now: NIODeadline) { SCTPStack.handleTimers(now: now) }

    package static func handleTimers(now: NIODeadline) { SCTPStack.handleTimers(now: now) }

    /// When the next `handleTimers(now:)` is due.
    package var nextTimerDeadline: NIODeadline { SCTPStack.nextTimerDeadline }

    package var isUp: Bool { state == .up }

    /// Opens a channel on the lowest free stream id of our parity: sends DCEP OPEN; the peer's
    /// ACK arrives as `.channelOpenAcked`. Data may be sent at once (ordered until the ACK).
    package func openChannel(label: String, protocol: String = "", ordered: Bool = true,
                             reliability: DataChannelOpen.Reliability = .reliable,
                             priority: UInt16 = 256) throws(OpenError) -> DataChannelID {
        SCTPStack.enter()
        guard state == .up else { throw .notConnected }
        let open = DataChannelOpen(ordered: ordered, reliability: reliability, priority: priority, label: label,
                                   protocol: `protocol`)
        guard open.fitsLengthFields else { throw .labelTooLong }
        var stream: UInt16 = role == .client ? 0 : 1
        while stream < streamLimit, channels[stream] != nil { stream += 2 }
        guard stream < streamLimit else { throw .noFreeStream }
        channels[stream] = Channel(state: .awaitingAck, ordered: ordered, reliability: reliability)
        var bytes = allocator.buffer(capacity: DataChannelOpen.fixedLength + label.utf8.count + `protocol`.utf8.count)
        open.write(to: &bytes)
        enqueue(.message(stream: stream, ppid: .dcep, payload: bytes, counted: 0))
        finishCall()
        return DataChannelID(stream: stream)
    }

    /// Sends one message. Empty messages travel as PPID 56/57 with one 0x00 byte.
    @discardableResult
    package func send(_ bytes: ByteBuffer, on id: DataChannelID, binary: Bool = true) -> SendResult {
        SCTPStack.enter()
        guard state == .up else { return .refused(.notConnected) }
        guard let channel = channels[id.stream] else { return .refused(.unknownChannel) }
        guard channel.state != .closing else { return .refused(.channelClosing) }
        guard bytes.readableBytes <= configuration.remoteMaxMessageSize else { return .refused(.tooLarge) }
        guard queuedBytes < configuration.sendHighWaterMark else {
            channels[id.stream]?.blocked = true
            return .refused(.queueFull)
        }
        let empty = bytes.readableBytes == 0
        let payload = empty ? ByteBuffer(bytes: [0]) : bytes
        enqueue(.message(stream: id.stream, ppid: .outgoing(binary: binary, empty: empty), payload: payload,
                         counted: payload.readableBytes))
        statistics.messagesSent += 1
        finishCall()
        if queuedBytes >= configuration.sendHighWaterMark {
            channels[id.stream]?.blocked = true
            return .wouldBlock(buffered: queuedBytes)
        }
        return .sent
    }

    @discardableResult
    package func send(_ bytes: [UInt8], on id: DataChannelID, binary: Bool = true) -> SendResult {
        send(ByteBuffer(bytes: bytes), on: id, binary: binary)
    }

    @discardableResult
    package func send(text: String, on id: DataChannelID) -> SendResult {
        send(ByteBuffer(string: text), on: id, binary: false)
    }

    /// Bytes queued for this channel that usrsctp has not taken yet.
    package func bufferedAmount(on id: DataChannelID) -> Int { channels[id.stream]?.queuedBytes ?? 0 }

    /// Bytes queued for all channels (never above `sendHighWaterMark` plus one message).
    package var bufferedAmount: Int { queuedBytes }

    /// Stops reading from usrsctp: its receive buffer fills and the peer's sender stalls.
    package func pauseReceiving() {
        SCTPStack.enter()
        paused = true
    }

    package func resumeReceiving() {
        SCTPStack.enter()
        guard paused else { return }
        paused = false
        finishCall()
    }

    /// The channels open or opening now.
    package var openChannels: [DataChannelID] {
        channels.filter { $0.value.state != .closing }.keys.sorted().map(DataChannelID.init(stream:))
    }

    /// Closes a channel by resetting our outgoing stream after what is queued for it
    /// (RFC 8831 §6.7). `.channelClosed` follows when the peer resets its side; the id is free
    /// again when both are reset.
    package func closeChannel(_ id: DataChannelID) {
        SCTPStack.enter()
        guard var channel = channels[id.stream], channel.state != .closing else { return }
        channel.state = .closing
        channels[id.stream] = channel
        requestReset(id.stream)
        finishCall()
    }

    /// Ends the association at once (ABORT, as browsers do on close). No events follow.
    package func close() {
        SCTPStack.enter()
        guard state != .closed else { return }
        teardown(silently: false)
    }

    // MARK: usrsctp setup

    private func address(port: UInt16) -> sockaddr_conn {
        var address = sockaddr_conn()
        address.sconn_family = UInt16(switchboard_AF_CONN())
        address.sconn_port = port.bigEndian
        address.sconn_addr = SCTPStack.pointer(token)
        return address
    }

    /// The path under the association changed or came back (ICE selected a pair): a
    /// HEARTBEAT goes at once, so usrsctp confirms the path (and measures its round trip)
    /// without waiting for the next one, 30 s away.
    @discardableResult
    package func pathChanged() -> Bool {
        SCTPStack.enter()
        guard state == .up, let socket else { return false }
        var params = sctp_paddrparams()
        var remote = address(port: configuration.remotePort)
        withUnsafeMutableBytes(of: &params.spp_address) { target in
            withUnsafeBytes(of: &remote) { target.copyMemory(from: $0) }
        }
        params.spp_flags = UInt32(SPP_HB_DEMAND)
        let demanded = setOption(socket, Int32(switchboard_IPPROTO_SCTP()), SCTP_PEER_ADDR_PARAMS, params)
        finishCall()
        return demanded
    }

    @discardableResult
    private func setOption<T>(_ socket: OpaquePointer, _ level: Int32, _ name: Int32, _ value: T) -> Bool {
        var value = value
        return withUnsafePointer(to: &value) {
            usrsctp_setsockopt(socket, level, name, $0, socklen_t(MemoryLayout<T>.size))
        } == 0
    }

    private func configureSocket(_ socket: OpaquePointer) {
        _ = usrsctp_set_non_blocking(socket, 1)
        _ = usrsctp_set_upcall(socket, SCTPStack.upcall, SCTPStack.pointer(token))
        let sctp = Int32(switchboard_IPPROTO_SCTP())
        let sol = Int32(switchboard_SOL_SOCKET())
        setOption(socket, sol, Int32(switchboard_SO_LINGER()), linger(l_onoff: 1, l_linger: 0))
        setOption(socket, sol, Int32(switchboard_SO_RCVBUF()), Int32(configuration.socketBufferSize))
        setOption(socket, sol, Int32(switchboard_SO_SNDBUF()), Int32(max(configuration.socketBufferSize,
                                                                          configuration.remoteMaxMessageSize)))
        setOption(socket, sctp, SCTP_ENABLE_STREAM_RESET,
                  sctp_assoc_value(assoc_id: sctp_assoc_t(SCTP_ALL_ASSOC),
                                   assoc_value: UInt32(SCTP_ENABLE_RESET_STREAM_REQ | SCTP_ENABLE_CHANGE_ASSOC_REQ)))
        setOption(socket, sctp, SCTP_RECVRCVINFO, Int32(1))
        setOption(socket, sctp, SCTP_NODELAY, Int32(1))
        setOption(socket, sctp, SCTP_FRAGMENT_INTERLEAVE, Int32(0))
        setOption(socket, sctp, SCTP_MAX_BURST, sctp_assoc_value(assoc_id: sctp_assoc_t(SCTP_FUTURE_ASSOC), assoc_value: 10))
        setOption(socket, sctp, SCTP_DELAYED_SACK,
                  sctp_sack_info(sack_assoc_id: sctp_assoc_t(SCTP_FUTURE_ASSOC), sack_delay: 20, sack_freq: 2))
        // usrsctp refuses the whole option unless min ≤ initial ≤ max (and then keeps its
        // defaults, 200 ms–10 s, without a word): the initial RTO is 1 s within the bounds.
        let initialRTO = max(configuration.minimumRTO, min(1000, configuration.maximumRTO))
        let rtoSet = setOption(socket, sctp, SCTP_RTOINFO,
                               sctp_rtoinfo(srto_assoc_id: sctp_assoc_t(SCTP_FUTURE_ASSOC), srto_initial: initialRTO,
                                            srto_max: configuration.maximumRTO, srto_min: configuration.minimumRTO))
        assert(rtoSet, "usrsctp refused RTO bounds \(configuration.minimumRTO)–\(configuration.maximumRTO) ms")
        var associationParameters = sctp_assocparams()
        associationParameters.sasoc_assoc_id = sctp_assoc_t(SCTP_FUTURE_ASSOC)
        associationParameters.sasoc_asocmaxrxt = configuration.maximumRetransmissions
        setOption(socket, sctp, SCTP_ASSOCINFO, associationParameters)
        var initmsg = sctp_initmsg()
        initmsg.sinit_num_ostreams = configuration.streams
        initmsg.sinit_max_instreams = configuration.streams
        setOption(socket, sctp, SCTP_INITMSG, initmsg)
        var params = sctp_paddrparams()
        params.spp_assoc_id = sctp_assoc_t(SCTP_FUTURE_ASSOC)
        params.spp_flags = UInt32(SPP_HB_ENABLE | SPP_PMTUD_DISABLE)
        params.spp_pathmtu = configuration.pathMTU
        // One path, which ICE keeps working (or fails the whole connection): usrsctp must never
        // mark it unreachable before the association itself gives up. At the default (5
        // timeouts, 3.4 s at these RTOs) it did, and then sent no new data on it until a
        // heartbeat (30 s apart) confirmed it again, since acknowledged retransmissions do not
        // count (Karn's rule): a transfer stalled for half a minute after a 4 s outage.
        params.spp_pathmaxrxt = configuration.maximumRetransmissions
        setOption(socket, sctp, SCTP_PEER_ADDR_PARAMS, params)
        for type in [SCTP_ASSOC_CHANGE, SCTP_SENDER_DRY_EVENT, SCTP_STREAM_RESET_EVENT, SCTP_STREAM_CHANGE_EVENT] {
            setOption(socket, sctp, SCTP_EVENT, sctp_event(se_assoc_id: sctp_assoc_t(SCTP_ALL_ASSOC), se_type: UInt16(type), se_on: 1))
        }
    }

    /// Closes the socket (with linger 0: an ABORT), hands out that last packet unless
    /// `silently`, and forgets the association in the stack's table.
    private func teardown(silently: Bool = true) {
        if let socket {
            self.socket = nil
            usrsctp_close(socket)
        }
        let last = pendingOutput
        SCTPStack.unregister(token)
        if state != .idle { usrsctp_deregister_address(SCTPStack.pointer(token)) }
        state = .closed
        sendQueue.removeAll()
        queuedBytes = 0
        pendingOutput.removeAll()
        pendingEvents.removeAll()
        earlyInput.removeAll()
        partial.removeAll()
        legacyPartial.removeAll()
        partialBytes = 0
        if !silently { for packet in last { output(packet) } }
    }

    private func fail(_ reason: DownReason) {
        if let socket {
            self.socket = nil
            usrsctp_close(socket)
        }
        state = .down
        pendingEvents.append(.associationDown(reason))
        finishCall()
    }

    // MARK: Callbacks and the work they queue

    /// Called from usrsctp's output callback: copy the packet and set its checksum.
    func queueOutput(_ packet: UnsafeMutableRawBufferPointer) {
        guard state != .closed else { return }
        var bytes = [UInt8](packet)
        Self.setChecksum(&bytes)
        pendingOutput.append(bytes)
        initSent = true
        SCTPStack.markDirty(token)
    }

    private func finishCall() {
        SCTPStack.markDirty(token)
        SCTPStack.drain()
    }

    private func feedEarlyInput() {
        guard initSent, !earlyInput.isEmpty else { return }
        let packets = earlyInput
        earlyInput.removeAll()
        for packet in packets {
            guard socket != nil else { return }
            packet.withUnsafeBytes { usrsctp_conninput(SCTPStack.pointer(token), $0.baseAddress, $0.count, 0) }
        }
    }

    /// Reads, sends what is queued, then hands out output and events (called by `SCTPStack.drain`).
    func process() {
        feedEarlyInput()
        if !paused { receive() }
        flushSendQueue()
        while !pendingOutput.isEmpty || !pendingEvents.isEmpty {
            let packets = pendingOutput
            pendingOutput.removeAll()
            for packet in packets { output(packet) }
            let events = pendingEvents
            pendingEvents.removeAll()
            for event in events {
                guard state != .closed else { return }
                onEvent(event)
            }
        }
    }

    // MARK: Receiving

    private func receive() {
        let eor = Int32(switchboard_MSG_EOR())
        let notificationFlag = Int32(switchboard_MSG_NOTIFICATION())
        while let socket, !paused, state != .closed {
            var info = sctp_rcvinfo()
            var infoLength = socklen_t(MemoryLayout<sctp_rcvinfo>.size)
            var infoType: UInt32 = 0
            var flags: Int32 = 0
            var fromLength: socklen_t = 0
            let count = usrsctp_recvv(socket, scratch.baseAddress, scratch.count, nil, &fromLength, &info, &infoLength,
                                      &infoType, &flags)
            guard count >= 0 else { return }  // EWOULDBLOCK, or the association is gone
            if count == 0 && flags == 0 { return }  // end of stream
            let bytes = UnsafeRawBufferPointer(rebasing: scratch[0..<count])
            if flags & notificationFlag != 0 {
                if notification.count + count <= Self.maxNotificationBytes { notification.append(contentsOf: bytes) }
                if flags & eor != 0 {
                    let complete = notification
                    notification.removeAll()
                    handleNotification(complete)
                }
            } else {
                receiveData(bytes, stream: info.rcv_sid, ppid: UInt32(bigEndian: info.rcv_ppid), endOfRecord: flags & eor != 0)
            }
        }
    }

    private func receiveData(_ bytes: UnsafeRawBufferPointer, stream: UInt16, ppid rawPPID: UInt32, endOfRecord: Bool) {
        if discarding.contains(stream) {
            if endOfRecord { discarding.remove(stream) }
            return
        }
        let limit = rawPPID == DataChannelPPID.dcep.rawValue ? 64 * 1024 : configuration.maxMessageSize
        var message = partial.removeValue(forKey: stream) ?? allocator.buffer(capacity: endOfRecord ? bytes.count : 64 * 1024)
        partialBytes -= message.readableBytes
        guard message.readableBytes + bytes.count <= limit,
              partialBytes + message.readableBytes + bytes.count <= configuration.maxMessageSize * 4 else {
            statistics.oversizedMessages += 1
            if !endOfRecord { discarding.insert(stream) }
            if channels[stream] != nil { closeChannel(DataChannelID(stream: stream)) }
            return
        }
        message.writeBytes(bytes)
        guard endOfRecord else {
            partialBytes += message.readableBytes
            partial[stream] = message
            return
        }
        guard let ppid = DataChannelPPID(rawValue: rawPPID) else {
            statistics.messagesDropped += 1
            return
        }
        handleMessage(message, stream: stream, ppid: ppid)
    }

    private func handleMessage(_ message: ByteBuffer, stream: UInt16, ppid: DataChannelPPID) {
        if ppid == .dcep {
            handleDCEP(message, stream: stream)
            return
        }
        guard let channel = channels[stream], !channel.incomingReset else {
            statistics.messagesDropped += 1
            return
        }
        if ppid.isPartial {
            // Deprecated PPIDs 52/54: the message continues in the next SCTP message.
            var joined = legacyPartial.removeValue(forKey: stream) ?? ByteBuffer()
            partialBytes -= joined.readableBytes
            guard joined.readableBytes + message.readableBytes <= configuration.maxMessageSize else {
                statistics.oversizedMessages += 1
                closeChannel(DataChannelID(stream: stream))
                return
            }
            var message = message
            joined.writeBuffer(&message)
            partialBytes += joined.readableBytes
            legacyPartial[stream] = joined
            return
        }
        var payload = ppid.isEmptyMessage ? ByteBuffer() : message
        if var joined = legacyPartial.removeValue(forKey: stream) {
            partialBytes -= joined.readableBytes
            guard joined.readableBytes + payload.readableBytes <= configuration.maxMessageSize else {
                statistics.oversizedMessages += 1
                closeChannel(DataChannelID(stream: stream))
                return
            }
            joined.writeBuffer(&payload)
            payload = joined
        }
        statistics.messagesReceived += 1
        pendingEvents.append(.message(DataChannelID(stream: stream), payload, binary: ppid.isBinary))
    }

    private func handleDCEP(_ message: ByteBuffer, stream: UInt16) {
        var buffer = message
        guard let dcep = try? DCEPMessage(parsing: &buffer) else {
            statistics.messagesDropped += 1
            return
        }
        let id = DataChannelID(stream: stream)
        switch dcep {
        case .open(let open):
            let peerParity: UInt16 = role == .client ? 1 : 0
            guard stream % 2 == peerParity, stream < streamLimit, channels[stream] == nil else {
                statistics.messagesDropped += 1
                return
            }
            channels[stream] = Channel(state: .open, ordered: open.ordered, reliability: open.reliability)
            var ack = allocator.buffer(capacity: 1)
            DCEPMessage.ack.write(to: &ack)
            enqueue(.message(stream: stream, ppid: .dcep, payload: ack, counted: 0))
            pendingEvents.append(.channelOpened(id, label: open.label, protocol: open.protocol))
        case .ack:
            guard channels[stream]?.state == .awaitingAck else {
                statistics.messagesDropped += 1
                return
            }
            channels[stream]?.state = .open
            pendingEvents.append(.channelOpenAcked(id))
        }
    }

    private func handleNotification(_ bytes: [UInt8]) {
        guard bytes.count >= 8 else { return }
        let type = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: UInt16.self) }
        let length = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self) }
        guard Int(length) == bytes.count else { return }
        switch Int32(type) {
        case SCTP_ASSOC_CHANGE:
            guard bytes.count >= MemoryLayout<sctp_assoc_change>.size else { return }
            let change = bytes.withUnsafeBytes { $0.loadUnaligned(as: sctp_assoc_change.self) }
            handleAssociationChange(change)
        case SCTP_STREAM_RESET_EVENT:
            handleStreamReset(bytes)
        case SCTP_STREAM_CHANGE_EVENT:
            guard bytes.count >= MemoryLayout<sctp_stream_change_event>.size else { return }
            let change = bytes.withUnsafeBytes { $0.loadUnaligned(as: sctp_stream_change_event.self) }
            streamLimit = min(change.strchange_instrms, change.strchange_outstrms)
        default:
            break  // SENDER_DRY: the queue is flushed after every read anyway
        }
    }

    private func handleAssociationChange(_ change: sctp_assoc_change) {
        switch Int32(change.sac_state) {
        case SCTP_COMM_UP:
            guard state == .connecting else { return }
            state = .up
            streamLimit = min(change.sac_outbound_streams, change.sac_inbound_streams)
            pendingEvents.append(.associationUp)
        case SCTP_RESTART:
            // A peer restart loses all stream state: end here rather than carry on half-known.
            down(.restartRefused)
        case SCTP_COMM_LOST:
            down(.lost)
        case SCTP_SHUTDOWN_COMP:
            down(.shutdown)
        case SCTP_CANT_STR_ASSOC:
            down(.couldNotStart)
        default:
            break
        }
    }

    private func down(_ reason: DownReason) {
        guard state == .up || state == .connecting else { return }
        state = .down
        sendQueue.removeAll()
        queuedBytes = 0
        pendingEvents.append(.associationDown(reason))
    }

    private func handleStreamReset(_ bytes: [UInt8]) {
        let header = MemoryLayout<sctp_stream_reset_event>.size
        guard bytes.count >= header else { return }
        let flags = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 2, as: UInt16.self) }
        let streams = stride(from: header, to: bytes.count - 1, by: 2).map { offset in
            bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: UInt16.self) }
        }
        let failed = Int32(flags) & (SCTP_STREAM_RESET_DENIED | SCTP_STREAM_RESET_FAILED) != 0
        for stream in streams {
            guard var channel = channels[stream] else { continue }
            if failed {
                if Int32(flags) & SCTP_STREAM_RESET_OUTGOING_SSN != 0 { channel.resetRequested = false }
            } else {
                if Int32(flags) & SCTP_STREAM_RESET_INCOMING_SSN != 0 {
                    channel.incomingReset = true
                    partial[stream].map { partialBytes -= $0.readableBytes }
                    partial[stream] = nil
                    legacyPartial[stream].map { partialBytes -= $0.readableBytes }
                    legacyPartial[stream] = nil
                    if !channel.closedReported {
                        channel.closedReported = true
                        pendingEvents.append(.channelClosed(DataChannelID(stream: stream)))
                    }
                    channel.state = .closing
                }
                if Int32(flags) & SCTP_STREAM_RESET_OUTGOING_SSN != 0 { channel.outgoingResetDone = true }
            }
            channels[stream] = channel
            if channel.incomingReset && !channel.resetRequested { requestReset(stream) }
            if channel.incomingReset && channel.outgoingResetDone { channels[stream] = nil }
        }
    }

    // MARK: Sending

    private func requestReset(_ stream: UInt16) {
        guard channels[stream]?.resetRequested == false else { return }
        channels[stream]?.resetRequested = true
        enqueue(.reset(stream: stream))
    }

    private func enqueue(_ item: Outgoing) {
        if case .message(let stream, _, _, let counted) = item {
            queuedBytes += counted
            channels[stream]?.queuedBytes += counted
        }
        sendQueue.append(item)
    }

    private func flushSendQueue() {
        guard state == .up, let socket else { return }
        while let item = sendQueue.first {
            switch item {
            case .message(let stream, let ppid, let payload, let counted):
                guard trySend(socket, stream: stream, ppid: ppid, payload: payload) else { return }
                queuedBytes -= counted
                channels[stream]?.queuedBytes -= counted
            case .reset(let stream):
                guard tryReset(socket, stream: stream) else { return }
            }
            sendQueue.removeFirst()
        }
        if queuedBytes <= configuration.sendLowWaterMark {
            for (stream, channel) in channels where channel.blocked {
                channels[stream]?.blocked = false
                pendingEvents.append(.bufferedAmountLow(DataChannelID(stream: stream)))
            }
        }
    }

    /// False when usrsctp cannot take the message now (send buffer full or a stream reset in
    /// flight); other errors drop the message.
    private func trySend(_ socket: OpaquePointer, stream: UInt16, ppid: DataChannelPPID, payload: ByteBuffer) -> Bool {
        var spa = sctp_sendv_spa()
        spa.sendv_flags = UInt32(SCTP_SEND_SNDINFO_VALID)
        spa.sendv_sndinfo.snd_sid = stream
        spa.sendv_sndinfo.snd_ppid = ppid.rawValue.bigEndian
        if let channel = channels[stream], ppid != .dcep, channel.state == .open {
            if !channel.ordered { spa.sendv_sndinfo.snd_flags |= UInt16(SCTP_UNORDERED) }
            switch channel.reliability {
            case .reliable: break
            case .maxRetransmits(let count):
                spa.sendv_flags |= UInt32(SCTP_SEND_PRINFO_VALID)
                spa.sendv_prinfo.pr_policy = UInt16(SCTP_PR_SCTP_RTX)
                spa.sendv_prinfo.pr_value = count
            case .maxLifetime(let milliseconds):
                spa.sendv_flags |= UInt32(SCTP_SEND_PRINFO_VALID)
                spa.sendv_prinfo.pr_policy = UInt16(SCTP_PR_SCTP_TTL)
                spa.sendv_prinfo.pr_value = milliseconds
            }
        }
        let result = payload.withUnsafeReadableBytes { bytes in
            usrsctp_sendv(socket, bytes.baseAddress, bytes.count, nil, 0, &spa,
                          socklen_t(MemoryLayout<sctp_sendv_spa>.size), UInt32(SCTP_SENDV_SPA), 0)
        }
        if result >= 0 { return true }
        let error = switchboard_errno()
        if error == switchboard_EWOULDBLOCK() || error == switchboard_EAGAIN() { return false }
        statistics.messagesDropped += 1
        return true
    }

    private func tryReset(_ socket: OpaquePointer, stream: UInt16) -> Bool {
        let size = MemoryLayout<sctp_reset_streams>.size + MemoryLayout<UInt16>.size
        var request = [UInt8](repeating: 0, count: size)
        request.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt16(SCTP_STREAM_RESET_OUTGOING), toByteOffset: MemoryLayout<sctp_reset_streams>.offset(of: \.srs_flags)!, as: UInt16.self)
            raw.storeBytes(of: UInt16(1), toByteOffset: MemoryLayout<sctp_reset_streams>.offset(of: \.srs_number_streams)!, as: UInt16.self)
            raw.storeBytes(of: stream, toByteOffset: MemoryLayout<sctp_reset_streams>.size, as: UInt16.self)
        }
        let result = request.withUnsafeBytes {
            usrsctp_setsockopt(socket, Int32(switchboard_IPPROTO_SCTP()), SCTP_RESET_STREAMS, $0.baseAddress, socklen_t(size))
        }
        if result == 0 { return true }
        let error = switchboard_errno()
        if error == switchboard_EWOULDBLOCK() || error == switchboard_EAGAIN() || error == EBUSY { return false }
        return true  // EINVAL: already reset, or the stream is gone
    }

    // MARK: Checksum (CRC32c offloaded from usrsctp)

    static func setChecksum(_ packet: inout [UInt8]) {
        guard packet.count >= 12 else { return }
        packet.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt32(0), toByteOffset: 8, as: UInt32.self)
            // usrsctp_crc32c returns the value in the byte order the header stores.
            let checksum = usrsctp_crc32c(raw.baseAddress, raw.count)
            raw.storeBytes(of: checksum, toByteOffset: 8, as: UInt32.self)
        }
    }

    static func checksumIsValid(_ packet: [UInt8]) -> Bool {
        guard packet.count >= 12 else { return false }
        var copy = packet
        let received = copy.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self) }
        setChecksum(&copy)
        return copy.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self) } == received
    }
}

@available(*, unavailable)
extension SCTPAssociation: Sendable {}
