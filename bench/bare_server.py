"""The yardstick for `bench.api_load`: a bare Tornado JSON handler, nothing else, in its own process.

    .venv/bin/python -m bench.bare_server --port 0     # prints `listening on http://HOST:PORT/`

One `RequestHandler` that writes a small JSON dict: the cost of Tornado's HTTP/1.1 server, routing
and JSON encoding on this machine, which no handler of the real app can beat.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import tornado.httpserver
import tornado.netutil
import tornado.web


class BareJsonHandler(tornado.web.RequestHandler):
    def get(self, session_id: str) -> None:
        self.write({"id": session_id, "status": "live", "viewer_count": 0})


async def serve(host: str, port: int) -> None:
    app = tornado.web.Application([(r"/bare/([^/]+)", BareJsonHandler)])
    server = tornado.httpserver.HTTPServer(app)
    sockets = tornado.netutil.bind_sockets(port, host)
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    print(f"listening on http://{host}:{bound}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
