"""`python -m server.healthcheck`: exit 0 when this container's server answers `/healthz`, else 1.

The runtime image has no curl; the container HEALTHCHECK runs this with the image's own Python. It
reads the same `MULTISTREAM_PORT` the server binds and always asks loopback, never another host.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping


def check(env: Mapping[str, str], timeout_s: float = 2.0) -> bool:
    """True if `GET http://127.0.0.1:$MULTISTREAM_PORT/healthz` answers 200 within `timeout_s`."""
    port = env.get("MULTISTREAM_PORT") or "8080"
    if not port.isdigit():
        return False
    url = f"http://127.0.0.1:{int(port)}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def main() -> int:
    return 0 if check(os.environ) else 1


if __name__ == "__main__":
    sys.exit(main())
