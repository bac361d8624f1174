// MediaEdge: RTP ingest and WHEP playback (ICE-lite, DTLS-SRTP, RTCP, keyframe cache).
// Built in the MediaEdge issue; this target is empty until then.
