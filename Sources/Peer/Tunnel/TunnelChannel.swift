import NIOCore

/// TunnelChannel is one tunnelled byte stream over a peer connection (a data channel, in
/// the agent): bytes in order both ways, an end marker for each direction (TCP half-close),
/// and flow control. Every method and every delegate call happens on the event loop that
/// owns the peer connection.
///
/// The tunnel protocol on a data channel (docs/agent.md): label = the service name,
/// protocol = `switchboard-tcp`; binary messages carry bytes, an empty binary message means
/// "no more bytes from me" (half-close), a text message is a refusal reason from the side
/// that exposes the service (sent before it closes the channel).
public protocol TunnelChannel: AnyObject {
    /// Received bytes, end markers and refusals wait in the stream until a delegate is set
    /// (the exposing side sets it once its TCP connection to the service is up).
    var delegate: (any TunnelChannelDelegate)? { get set }
    /// Queues bytes to the other side. Returns false once the queue is above its high-water
    /// mark: the writer then stops reading its source until `tunnelWritable`.
    func send(_ bytes: ByteBuffer) -> Bool
    /// No more bytes from this side (the other side's TCP sees EOF); the other direction goes on.
    func sendEnd()
    /// Refuses the stream with a reason the other side can show, then closes it.
    func refuse(_ reason: String)
    /// Ends the stream both ways.
    func close()
    /// Stop and resume delivering received bytes (when the local TCP socket cannot take
    /// more): what is not delivered stays in the transport, whose window then slows the sender.
    func pauseReceiving()
    func resumeReceiving()
}

public protocol TunnelChannelDelegate: AnyObject {
    func tunnel(received bytes: ByteBuffer)
    /// The other side sent its end marker: no more bytes will come.
    func tunnelEnded()
    /// The other side refused the stream (unknown service, service unreachable).
    func tunnel(refused reason: String)
    /// The stream is gone (closed by either side, or the peer connection failed).
    func tunnelClosed()
    /// The send queue drained below its low-water mark.
    func tunnelWritable()
}
