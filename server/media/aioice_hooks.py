"""Every place the media plane reaches into aioice's internals, in one module.

aioice (under aiortc) gathers host candidates on every interface except loopback and on any port;
`server.media.ice` needs exactly the configured addresses and a port range. aioice has no public
knob for either, so these hooks replace one `Connection`'s gathering (one object instance, never the
class) and build host candidates the way aioice does, from names `aioice.ice` does not export. Each
hook checks what it relies on and raises `AioiceShapeError` naming itself if aioice changed;
`tests/test_media_aioice_hooks.py` runs each against a real aioice connection.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aioice.ice
from aioice import Candidate

# What `gather_with(conn, gather)` installs: (component, addresses, timeout) -> candidates.
Gather = Callable[[int, list[str], int], Awaitable[list[Candidate]]]
# The instance attribute marking a connection whose gathering is already ours.
_MARK = "_multistream_gathering"


class AioiceShapeError(RuntimeError):
    """aioice no longer has the internal a hook relies on: the pin must not be lifted blindly."""


def _require(obj: object, attr: str, hook: str) -> Any:
    try:
        return getattr(obj, attr)
    except AttributeError:
        name = getattr(obj, "__name__", type(obj).__name__)  # a module, or an instance's class
        raise AioiceShapeError(
            f"aioice hook {hook!r}: {name} has no {attr!r} (aioice changed)"
        ) from None


def gather_with(
    conn: Any, gather: Callable[[Gather, int, list[str], int], Awaitable[list[Candidate]]]
) -> None:
    """Replace `conn`'s host-candidate gathering (`Connection.get_component_candidates`) by
    `gather(original, component, addresses, timeout)`, once per connection; `original` is aioice's
    own (still used for STUN/TURN candidates). Must run before gathering starts."""
    original = _require(conn, "get_component_candidates", "gather_with")
    if getattr(conn, _MARK, False):
        return

    async def aioice_gather(component: int, addresses: list[str], timeout: int) -> list[Candidate]:
        return list(await original(component=component, addresses=addresses, timeout=timeout))

    async def replaced(component: int, addresses: list[str], timeout: int = 5) -> list[Candidate]:
        return await gather(aioice_gather, component, addresses, timeout)

    conn.get_component_candidates = replaced
    setattr(conn, _MARK, True)


async def bind_host_candidate(
    conn: Any, component: int, address: str, port: int
) -> Candidate | None:
    """A host candidate of `conn` on `address:port`, bound and registered like aioice's own
    (its STUN protocol on the socket, foundation and priority by aioice's rules); None when the
    port is taken."""
    protocols: list[Any] = _require(conn, "_protocols", "bind_host_candidate")
    stun_protocol = _require(aioice.ice, "StunProtocol", "bind_host_candidate")
    foundation = _require(aioice.ice, "candidate_foundation", "bind_host_candidate")
    priority = _require(aioice.ice, "candidate_priority", "bind_host_candidate")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: stun_protocol(conn), local_addr=(address, port), family=family
        )
    except OSError:
        return None
    host, bound = protocol.transport.get_extra_info("sockname")[:2]
    protocol.local_candidate = Candidate(
        foundation=foundation("host", "udp", host),
        component=component,
        transport="udp",
        priority=priority(component, "host"),
        host=host,
        port=bound,
        type="host",
    )
    protocols.append(protocol)
    return protocol.local_candidate  # type: ignore[no-any-return]


def datagram_send(conn: Any) -> Callable[[bytes], Awaitable[None] | None]:
    """A send on `conn`'s component 1 without aioice's chain of coroutines (`send` -> `sendto`
    -> `StunProtocol.send_data` -> the socket transport's `sendto`, per packet). For a UDP pair
    the returned function hands the datagram to the pair's asyncio transport at once and returns
    None; for anything else (a TURN relay, no pair nominated yet: aioice raises ConnectionError)
    it returns aioice's own `send(data)` awaitable."""
    _require(conn, "_nominated", "datagram_send")
    stun_protocol = _require(aioice.ice, "StunProtocol", "datagram_send")
    _require(stun_protocol, "send_data", "datagram_send")

    # The nominated pair's socket transport and address, looked up again when the pair changes.
    cached: list[Any] = [None, None, None]

    def send(data: bytes) -> Awaitable[None] | None:
        pair = conn._nominated.get(1)
        if pair is not None:
            if pair is not cached[0]:
                udp = type(pair.protocol) is stun_protocol
                cached[:] = [pair, pair.protocol.transport if udp else None, pair.remote_addr]
            transport = cached[1]
            if transport is not None:
                # `StunProtocol.send_data` is exactly this, behind one more coroutine.
                transport.sendto(data, cached[2])
                return None
        awaitable: Awaitable[None] = conn.send(data)
        return awaitable

    return send
