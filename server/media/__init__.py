"""The media plane: WebRTC ingest per stream, encode-once fan-out, per-layout composites, recording.

`plane.MediaPlane` is the one service the rest of the server talks to, a facade over the rooms:
`peers` (connections and their lifecycle), `negotiation` (offer/answer), `feeds` (stream media and
the registries of encoders, scaled feeds, composites and recorders, keyed by `keys`), `adaptive`
(each viewer's rung) and `listener` (session events). The other modules each hold one concept (ICE
policy, codecs, shared encoders, packet fan-out, composites, recording).
"""

from server.media.plane import MediaPlane

__all__ = ["MediaPlane"]
