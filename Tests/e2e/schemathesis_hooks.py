"""Schemathesis hooks: send SDP bodies as the text they are."""
import schemathesis


@schemathesis.serializer("application/sdp", "application/trickle-ice-sdpfrag")
def sdp_serializer(ctx, value):
    return value if isinstance(value, bytes) else str(value).encode("utf8")
