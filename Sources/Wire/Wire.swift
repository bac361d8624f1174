// Wire: the byte formats Switchboard speaks (STUN/TURN messages and attributes, ChannelData,
// RTP/RTCP, SDP, RFC 7983 demultiplexing) as pure values with parse and serialize — no I/O.
// The codecs arrive with the Relay and MediaEdge issues; this target is empty until then.
