"""The owner's end of a relay link: another instance's offer to pull one stream.

Not a public API (no `/api/` path, not in the OpenAPI document): only a request carrying a valid
internal mark (`server.internal`, the HMAC every instance of the deployment shares) is served; one
without is refused with 403 before its body is read. The answer is the owner's SDP answer for a
passthrough connection of the stream (`MediaPlane.serve_relay`).
"""

from __future__ import annotations

from handlers.base import ApiHandler
from handlers.forward import is_forwarded, session_of_stream
from server.errors import Forbidden, Invalid, NotFound, Unavailable
from server.media.relay import relay_answer
from server.validation import check_id


class RelayOfferHandler(ApiHandler):
    """POST `{"type": "offer", "sdp", "instance_id"}` from a relaying instance."""

    async def post(self, stream_id: str) -> None:
        if not is_forwarded(self):
            raise Forbidden(
                "internal endpoint: only another instance of this deployment may call it",
                code="not_internal",
            )
        body = self.json_body()
        instance_id = body.get("instance_id")
        if not isinstance(instance_id, str) or not 0 < len(instance_id) <= 64:
            raise Invalid("instance_id must be a string of 1-64 characters", code="invalid_field")
        session_id = await session_of_stream(self.services, check_id(stream_id, "stream"))
        if session_id is None:
            raise NotFound("stream not found", code="stream_not_found")
        if await self.services.ownership.route(session_id) is not None:
            # The lease moved: the relaying instance asks again and learns the new owner.
            raise Unavailable("this instance does not serve the session", code="not_owner")
        answer = await self.services.media.serve_relay(stream_id, body, instance_id)
        self.write_json(relay_answer(answer))


routes = [(r"/internal/relay/([^/]+)", RelayOfferHandler)]
