"""The media plane: WebRTC ingest per stream, encode-once fan-out, per-layout composites, recording.

`plane.MediaPlane` is the one service the rest of the server talks to; the other modules each hold
one concept (ICE policy, codecs, shared encoders, packet fan-out, composites, recording).
"""

from server.media.plane import MediaPlane

__all__ = ["MediaPlane"]
