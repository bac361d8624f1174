// Relay: the TURN server (RFC 8656) and STUN Binding over UDP, TCP and TLS.
// Built in the Relay issue; this target is empty until then.
