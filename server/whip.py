"""WHIP ingest (RFC 9725) and WHEP playback, as a thin protocol layer over the media plane.

Why a layer and not a second media path: a WHIP offer is the same SDP offer our own signaling API
carries, only wrapped in HTTP semantics (`application/sdp`, `201 Created` + `Location`, `PATCH` with
`application/trickle-ice-sdpfrag`, `DELETE`). So every offer goes through `MediaPlane.publish`,
`subscribe` and `subscribe_composite` and every authorisation through `SessionService` — recording,
fan-out, composites and payment entitlement behave exactly as for the web client.

URL shape (one publication per stream kind of a session, as OBS wants one URL per output):
- `POST /api/v1/whip/{session_id}/{kind}` (kind `screen` | `camera`), broadcaster token;
- `POST /api/v1/whep/{session_id}/{kind}` and `/api/v1/whep/{session_id}/composite`, viewer token;
- the created resource is `<endpoint>/{pc_id}`: `PATCH` trickles candidates, `DELETE` ends it.

What aiortc cannot do, answered honestly:
- aiortc gathers all its candidates before answering (no server-side trickle): the answer carries
  them all and `a=end-of-candidates`. Client candidates trickled with `PATCH` are added with
  `addIceCandidate`.
- aiortc has no ICE restart: a `PATCH` with new ICE credentials gets 422 (RFC 9725 §4.3.1: a session
  that supports trickle but not restarts answers 422); the client should `DELETE` and `POST` again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from server.auth import Claims
from server.domain import PIP_FIXED_CORNERS, PIP_SIZE_MAX, PIP_SIZE_MIN, STREAM_KINDS
from server.errors import DomainError, Forbidden, Invalid, NotFound
from server.media import MediaPlane, offers
from server.sessions import SessionService

log = logging.getLogger(__name__)

SDP = "application/sdp"
SDPFRAG = "application/trickle-ice-sdpfrag"
MAX_SDPFRAG_CHARS = 16 * 1024


class UnsupportedMediaType(DomainError):
    """The body is not the media type the endpoint takes (415)."""

    status = 415
    code = "unsupported_media_type"


class PreconditionFailed(DomainError):
    """`If-Match` names another ICE session than the resource's current one (412)."""

    status = 412
    code = "precondition_failed"


class PreconditionRequired(DomainError):
    """An ICE restart without `If-Match: *` (428, RFC 9725 §4.3.2)."""

    status = 428
    code = "precondition_required"


class Unprocessable(DomainError):
    """Understood but not supportable here, e.g. an ICE restart (422)."""

    status = 422
    code = "unprocessable"


@dataclass(frozen=True, slots=True)
class Created:
    """A new WHIP/WHEP resource: its id (the plane's `pc_id`), the SDP answer and its ETag."""

    resource_id: str
    sdp: str
    etag: str


@dataclass(frozen=True, slots=True)
class SdpFrag:
    """A parsed `application/trickle-ice-sdpfrag` body (RFC 8840)."""

    ufrag: str | None
    pwd: str | None
    candidates: tuple[dict[str, Any], ...]  # {"candidate", "sdpMid", "sdpMLineIndex"}


def require_type(content_type: str | None, wanted: str) -> None:
    """415 unless the request's media type (parameters ignored) is `wanted`."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != wanted:
        raise UnsupportedMediaType(f"Content-Type must be {wanted}")


def decode_text(body: bytes, limit: int = offers.MAX_SDP_CHARS) -> str:
    if len(body) > limit:
        raise Invalid(f"body is longer than {limit} bytes", code="sdp_too_large")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("body is not UTF-8 text", code="invalid_sdp") from None


def parse_sdpfrag(text: str) -> SdpFrag:
    """Candidates per `m=` section (mid from `a=mid`), plus the ICE credentials if present."""
    if len(text) > MAX_SDPFRAG_CHARS:
        raise Invalid("sdpfrag is too long", code="invalid_sdpfrag")
    ufrag = pwd = None
    mid: str | None = None
    index = -1
    candidates: list[dict[str, Any]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("m="):
            index += 1
            mid = None
        elif line.startswith("a=mid:"):
            mid = line[len("a=mid:") :]
        elif line.startswith("a=ice-ufrag:"):
            ufrag = line[len("a=ice-ufrag:") :]
        elif line.startswith("a=ice-pwd:"):
            pwd = line[len("a=ice-pwd:") :]
        elif line.startswith("a=candidate:"):
            candidates.append(
                {"candidate": line[2:], "sdpMid": mid, "sdpMLineIndex": max(index, 0)}
            )
        elif not line.startswith(("a=", "m=", "c=")) or "=" not in line[:2]:
            raise Invalid(f"not an SDP fragment line: {line[:40]!r}", code="invalid_sdpfrag")
    return SdpFrag(ufrag, pwd, tuple(candidates))


def ice_credentials(sdp: str) -> tuple[str | None, str | None]:
    """The first `a=ice-ufrag` / `a=ice-pwd` of a description (bundled: one ICE session)."""
    ufrag = pwd = None
    for line in sdp.splitlines():
        if ufrag is None and line.startswith("a=ice-ufrag:"):
            ufrag = line[len("a=ice-ufrag:") :].strip()
        elif pwd is None and line.startswith("a=ice-pwd:"):
            pwd = line[len("a=ice-pwd:") :].strip()
    return ufrag, pwd


def etag_of(answer_sdp: str) -> str:
    """The entity tag of a resource names its ICE session: our ICE ufrag (quoted, RFC 9110)."""
    ufrag, _ = ice_credentials(answer_sdp)
    return f'"{ufrag or "none"}"'


def link_headers(ice_servers: tuple[str, ...] | list[str], *, credentials: bool) -> list[str]:
    """RFC 9725 §4.6 `Link: <stun:…>; rel="ice-server"` values. TURN credentials only go to an
    authenticated client (the 201 answer), never to an anonymous `OPTIONS`."""
    links = []
    for url in ice_servers:
        scheme, _, rest = url.partition(":")
        if "@" in rest:
            creds, _, host = rest.rpartition("@")
            user, _, password = creds.partition(":")
            link = f'<{scheme}:{host}>; rel="ice-server"'
            if credentials:
                link += f'; username="{user}"; credential="{password}"; credential-type="password"'
            links.append(link)
        else:
            links.append(f'<{url}>; rel="ice-server"')
    return links


def pip_from_query(corner: str | None, size: str | None) -> dict[str, Any] | None:
    """The composite layout from `?corner=&size=` (both optional); None keeps the saved one."""
    if corner is None and size is None:
        return None
    pip: dict[str, Any] = {}
    if corner is not None:
        if corner not in PIP_FIXED_CORNERS:
            raise Invalid(
                f"corner must be one of {', '.join(PIP_FIXED_CORNERS)}", code="invalid_layout"
            )
        pip["corner"] = corner
    if size is not None:
        if not size.isdigit() or not PIP_SIZE_MIN <= int(size) <= PIP_SIZE_MAX:
            raise Invalid(
                f"size must be an integer percentage {PIP_SIZE_MIN}..{PIP_SIZE_MAX}",
                code="invalid_layout",
            )
        pip["size_pct"] = int(size)
    return pip


class WhipService:
    """WHIP/WHEP resources on top of the session service and the media plane."""

    def __init__(self, sessions: SessionService, media: MediaPlane) -> None:
        self.sessions = sessions
        self.media = media

    def _plane(self) -> MediaPlane:
        return self.media

    async def _stream_of(self, session_id: str, kind: str) -> dict[str, Any]:
        if kind not in STREAM_KINDS:
            raise NotFound(f"no stream kind {kind[:20]!r}", code="stream_not_found")
        await self.sessions.get_session(session_id)
        for stream in await self.sessions.streams_of(session_id):
            if stream["kind"] == kind:
                return dict(stream)
        raise NotFound(f"session has no {kind} stream", code="stream_not_found")

    # -- WHIP --------------------------------------------------------------------------------

    async def publish(self, claims: Claims, session_id: str, kind: str, sdp: str) -> Created:
        """POST: (re)open the stream if needed, then the same publish path as the web client."""
        if kind not in STREAM_KINDS:
            raise NotFound(f"no stream kind {kind[:20]!r}", code="stream_not_found")
        body = {"sdp": sdp, "type": "offer"}
        offers.check_publisher(offers.parse_offer(body), kind)  # 400 before any state changes
        if claims.role != "broadcaster":
            raise Forbidden("only the broadcaster may publish", code="not_publisher")
        if claims.session_id != session_id:
            await self.sessions.get_session(session_id)  # 404 for an unknown session first
            raise Forbidden("token belongs to another session")
        plane = self._plane()
        before = {s["kind"]: s["status"] for s in await self.sessions.streams_of(session_id)}
        # OBS reconnects after a stop: publishing reopens a stopped stream (idempotent when open).
        stream = await self.sessions.start_stream(claims, session_id, kind)
        try:
            answer = await plane.publish(claims, stream["id"], body)
        except DomainError:
            if before.get(kind) not in ("pending", "live"):
                # Refused offer: the stream goes back to not publishing, as before the request.
                await self.sessions.stop_stream(claims, session_id, kind)
            raise
        return Created(answer["pc_id"], answer["sdp"], etag_of(answer["sdp"]))

    async def end_publication(self, claims: Claims, session_id: str, kind: str, pc_id: str) -> None:
        """DELETE: the stream goes `stopped` (its peer, recorder and viewers with it)."""
        peer = self._peer(claims, session_id, pc_id, role="publisher", kind=kind)
        if self._plane().current_publisher(peer.stream_id) == pc_id:
            await self.sessions.stop_stream(claims, session_id, kind)
        else:  # an older connection a newer POST already replaced
            await self._plane().close_peer(pc_id)

    # -- WHEP --------------------------------------------------------------------------------

    async def play(self, claims: Claims, session_id: str, kind: str, sdp: str) -> Created:
        stream = await self._stream_of(session_id, kind)
        answer = await self._plane().subscribe(claims, stream["id"], {"sdp": sdp, "type": "offer"})
        return Created(answer["pc_id"], answer["sdp"], etag_of(answer["sdp"]))

    async def play_composite(
        self, claims: Claims, session_id: str, sdp: str, pip: dict[str, Any] | None
    ) -> Created:
        answer = await self._plane().subscribe_composite(
            claims, session_id, {"sdp": sdp, "type": "offer"}, layout=pip, whep=True
        )
        return Created(answer["pc_id"], answer["sdp"], etag_of(answer["sdp"]))

    async def stop_playing(self, claims: Claims, session_id: str, pc_id: str) -> None:
        self._peer(claims, session_id, pc_id, role="viewer")
        await self._plane().close_peer(pc_id)

    # -- both --------------------------------------------------------------------------------

    def _peer(
        self,
        claims: Claims,
        session_id: str,
        pc_id: str,
        *,
        role: str,
        kind: str | None = None,
    ) -> Any:
        """The resource's peer if this token opened it; 404 otherwise (never says whose it is)."""
        peer = self._plane().peer(pc_id)
        publisher = peer is not None and peer.role == "publisher"
        if (
            peer is None
            or peer.session_id != session_id
            or peer.session_id != claims.session_id
            or publisher != (role == "publisher")
            or (publisher and claims.role != "broadcaster")
            or (not publisher and peer.viewer_id != claims.viewer_id)
            or (kind is not None and peer.kind != kind)
        ):
            raise NotFound("no such WHIP/WHEP resource", code="resource_not_found")
        return peer

    async def patch(
        self,
        claims: Claims,
        session_id: str,
        pc_id: str,
        frag_text: str,
        if_match: str | None,
        *,
        role: str,
        kind: str | None = None,
    ) -> None:
        """Trickle ICE (RFC 8840 fragment); an ICE restart is refused with 422 (see module doc)."""
        peer = self._peer(claims, session_id, pc_id, role=role, kind=kind)
        frag = parse_sdpfrag(frag_text)
        remote = peer.pc.remoteDescription
        current_ufrag, _ = ice_credentials(remote.sdp if remote is not None else "")
        restart = frag.ufrag is not None and frag.ufrag != current_ufrag
        if restart:
            if if_match != "*":
                raise PreconditionRequired("an ICE restart needs If-Match: *")
            raise Unprocessable(
                "ICE restarts are not supported (aiortc cannot restart ICE); "
                "DELETE this resource and POST a new offer",
                code="ice_restart_unsupported",
            )
        local = peer.pc.localDescription
        etag = etag_of(local.sdp if local is not None else "")
        if if_match is not None and if_match != "*" and if_match != etag:
            raise PreconditionFailed("If-Match does not name this resource's ICE session")
        for candidate in frag.candidates:
            await self._plane().add_candidate(claims, pc_id, candidate)
