"""schemathesis hooks (SCHEMATHESIS_HOOKS) for tests/test_openapi_schemathesis.py: the WHIP/WHEP
bodies are SDP text (`application/sdp`, `application/trickle-ice-sdpfrag`), sent as plain text."""

import schemathesis

schemathesis.serializer.alias("application/sdp", "text/plain")
schemathesis.serializer.alias("application/trickle-ice-sdpfrag", "text/plain")
