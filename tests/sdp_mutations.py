"""Deterministic (seeded) mutations of a real aiortc SDP offer, for the hostile-input tests.

Each mutation is one small, realistic corruption a buggy or hostile client could send: a line
dropped, duplicated, truncated or garbled, `a=mid` removed, ports, payload types or directions
nonsensical, media kinds unknown. Same seed, same list: a failure names its index and reproduces.
"""

from __future__ import annotations

import random
from collections.abc import Callable

Mutation = Callable[[list[str], random.Random], list[str]]

_GARBAGE = ["", "x", "-1", "99999999999999999999", "\u202e", "a=", "=", ":::", "0" * 300, "é"]


def _drop_line(lines: list[str], rng: random.Random) -> list[str]:
    i = rng.randrange(len(lines))
    return lines[:i] + lines[i + 1 :]


def _dup_line(lines: list[str], rng: random.Random) -> list[str]:
    i = rng.randrange(len(lines))
    return [*lines[: i + 1], lines[i], *lines[i + 1 :]]


def _drop_mids(lines: list[str], rng: random.Random) -> list[str]:
    return [ln for ln in lines if not ln.startswith("a=mid:") and not ln.startswith("a=group:")]


def _drop_mids_keep_group(lines: list[str], rng: random.Random) -> list[str]:
    return [ln for ln in lines if not ln.startswith("a=mid:")]


def _drop_prefix(prefix: str) -> Mutation:
    def mutate(lines: list[str], rng: random.Random) -> list[str]:
        return [ln for ln in lines if not ln.startswith(prefix)]

    return mutate


def _garble_value(lines: list[str], rng: random.Random) -> list[str]:
    i = rng.randrange(len(lines))
    key, sep, _ = lines[i].partition("=")
    out = list(lines)
    out[i] = key + sep + rng.choice(_GARBAGE)
    return out


def _garble_field(lines: list[str], rng: random.Random) -> list[str]:
    i = rng.randrange(len(lines))
    parts = lines[i].split(" ")
    j = rng.randrange(len(parts))
    parts[j] = rng.choice(_GARBAGE)
    out = list(lines)
    out[i] = " ".join(parts)
    return out


def _truncate(lines: list[str], rng: random.Random) -> list[str]:
    text = "\r\n".join(lines)
    return text[: rng.randrange(1, len(text))].split("\r\n")


def _swap(lines: list[str], rng: random.Random) -> list[str]:
    out = list(lines)
    i, j = rng.randrange(len(out)), rng.randrange(len(out))
    out[i], out[j] = out[j], out[i]
    return out


def _media_line(lines: list[str], rng: random.Random) -> list[str]:
    out = list(lines)
    idx = [i for i, ln in enumerate(out) if ln.startswith("m=")]
    if not idx:
        return out
    i = rng.choice(idx)
    kind, port, proto, *fmts = out[i][2:].split(" ")
    choice = rng.randrange(5)
    if choice == 0:
        kind = rng.choice(["text", "application", "", "VIDEO", "audio"])
    elif choice == 1:
        port = rng.choice(["0", "-9", "70000", "x"])
    elif choice == 2:
        proto = rng.choice(["RTP/AVP", "UDP/DTLS/SCTP", "", "TCP"])
    elif choice == 3:
        fmts = [rng.choice(["999", "-1", "x", "96"]) for _ in range(rng.randrange(0, 4))]
    else:
        fmts = []
    out[i] = "m=" + " ".join([kind, port, proto, *fmts])
    return out


def _direction(lines: list[str], rng: random.Random) -> list[str]:
    dirs = ("a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive")
    bad = rng.choice(["a=sendonly", "a=recvonly", "a=inactive", "a=bogus", "a=sendrecv"])
    return [bad if ln in dirs else ln for ln in lines]


def _rtpmap(lines: list[str], rng: random.Random) -> list[str]:
    out = []
    for ln in lines:
        if ln.startswith(("a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")) and rng.random() < 0.5:
            head = ln.partition(" ")[0]
            ln = rng.choice([head, f"{head} {rng.choice(_GARBAGE)}", ln.replace(":", ":x", 1)])
        out.append(ln)
    return out


def _insert_noise(lines: list[str], rng: random.Random) -> list[str]:
    noise = rng.choice(
        [
            "a=candidate:garbage",
            "a=ssrc:abc",
            "a=ssrc-group:FID 1",
            "a=extmap:999999 urn:x",
            "c=IN IP4",
            "b=AS:-5",
            "a=rtcp:x",
            "a=fingerprint:sha-256 ZZ",
            "a=setup:sideways",
            "a=ice-ufrag:",
            "m=video 9",
            "\x00",
            "a=msid:" + "x" * 5000,
        ]
    )
    i = rng.randrange(len(lines) + 1)
    return [*lines[:i], noise, *lines[i:]]


def _line_endings(lines: list[str], rng: random.Random) -> list[str]:
    return ["\n".join(lines)]


MUTATIONS: tuple[Mutation, ...] = (
    _drop_line,
    _dup_line,
    _drop_mids,
    _drop_mids_keep_group,
    _drop_prefix("a=fingerprint"),
    _drop_prefix("a=ice-ufrag"),
    _drop_prefix("a=setup"),
    _drop_prefix("a=rtpmap"),
    _drop_prefix("v="),
    _garble_value,
    _garble_field,
    _truncate,
    _swap,
    _media_line,
    _direction,
    _rtpmap,
    _insert_noise,
    _line_endings,
)


def mutate_sdp(sdp: str, count: int, seed: int) -> list[str]:
    """`count` corrupted variants of `sdp`, 1-3 mutations each, from `seed`."""
    rng = random.Random(seed)
    base = [ln for ln in sdp.split("\r\n") if ln]
    out = []
    for _ in range(count):
        lines = list(base)
        for _ in range(rng.randint(1, 3)):
            lines = rng.choice(MUTATIONS)(lines, rng) or ["v=0"]
        out.append("\r\n".join(lines) + "\r\n")
    return out
