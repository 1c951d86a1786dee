"""Run `multistream` with every RTCP packet the server receives logged as one JSON line.

`python -m tests.netlab.rtcp_log serve ...` installs the hook, then runs the ordinary CLI. The hook
wraps aiortc's `RTCDtlsTransport._handle_rtcp_data`, i.e. it sees each decrypted compound packet
before aiortc routes it, including kinds aiortc drops silently (XR, transport-cc). The lab uses it to
answer "what feedback does a browser viewer send?" (docs/netlab.md); it changes nothing it observes.
Output: the file named by `MULTISTREAM_NETLAB_RTCP_LOG`, lines `{"t", "from", "pt", "fmt", ...}`.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from typing import IO, Any

from aiortc import rtcdtlstransport
from aiortc.rtp import unpack_remb_fci

NAMES = {
    200: "SR",
    201: "RR",
    202: "SDES",
    203: "BYE",
    204: "APP",
    205: "RTPFB",
    206: "PSFB",
    207: "XR",
}
RTPFB = {1: "NACK", 15: "TWCC"}
PSFB = {1: "PLI", 4: "FIR", 15: "REMB"}


def _reports(body: bytes, count: int, offset: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        block = body[offset + 24 * i : offset + 24 * (i + 1)]
        if len(block) < 24:
            break
        ssrc, lost_word, highest, jitter, lsr, dlsr = struct.unpack("!IIIIII", block)
        lost = lost_word & 0xFFFFFF
        out.append(
            {
                "ssrc": ssrc,
                "fraction_lost": round((lost_word >> 24) / 256, 4),
                "cumulative_lost": lost - (1 << 24) if lost & 0x800000 else lost,
                "highest_seq": highest,
                "jitter": jitter,
                "lsr": lsr,
                "dlsr": round(dlsr / 65536, 4),
            }
        )
    return out


def parse(data: bytes) -> list[dict[str, Any]]:
    """Every packet of a compound RTCP datagram, by type, with the fields that matter for rate."""
    packets: list[dict[str, Any]] = []
    pos = 0
    while pos + 4 <= len(data):
        first, pt, length = struct.unpack("!BBH", data[pos : pos + 4])
        count = first & 0x1F
        body = data[pos + 4 : pos + 4 + 4 * length]
        pos += 4 + 4 * length
        item: dict[str, Any] = {"pt": NAMES.get(pt, str(pt)), "fmt": count}
        if pt == 200 and len(body) >= 24:
            item["ssrc"] = struct.unpack("!I", body[:4])[0]
            item["reports"] = _reports(body, count, 24)
        elif pt == 201 and len(body) >= 4:
            item["ssrc"] = struct.unpack("!I", body[:4])[0]
            item["reports"] = _reports(body, count, 4)
        elif pt == 205 and len(body) >= 8:
            item["fb"] = RTPFB.get(count, str(count))
            item["media_ssrc"] = struct.unpack("!I", body[4:8])[0]
            if count == 1:
                lost = 0
                for i in range(8, len(body) - 3, 4):
                    _pid, blp = struct.unpack("!HH", body[i : i + 4])
                    lost += 1 + bin(blp).count("1")
                item["nacked"] = lost
        elif pt == 206 and len(body) >= 8:
            item["fb"] = PSFB.get(count, str(count))
            item["media_ssrc"] = struct.unpack("!I", body[4:8])[0]
            if count == 15 and body[8:12] == b"REMB":
                bitrate, ssrcs = unpack_remb_fci(body[8:])
                item["remb_bps"] = bitrate
                item["remb_ssrcs"] = ssrcs
        elif pt == 207 and len(body) >= 8:
            item["ssrc"] = struct.unpack("!I", body[:4])[0]
            item["xr_block_types"] = []
            i = 4
            while i + 4 <= len(body):
                bt, _, blen = struct.unpack("!BBH", body[i : i + 4])
                item["xr_block_types"].append(bt)
                i += 4 + 4 * blen
        packets.append(item)
    return packets


def summarise(records: list[dict[str, Any]], source_ip: str, t0: float, t1: float) -> str:
    """One line on the feedback `source_ip` sent between wall times t0 and t1: packets per second
    by kind, the REMB range, and loss and jitter on the media SSRC from the receiver reports
    (loss over the window from cumulative lost / extended highest sequence deltas, since one RR's
    fraction_lost covers only the tens of ms since the previous RR when NACKs are flowing)."""
    recs = [r for r in records if t0 <= r["t"] <= t1 and r["from"].startswith(source_ip + ":")]
    seconds = max(t1 - t0, 1e-3)

    def rate(pred: Any) -> float:
        return sum(1 for r in recs if pred(r)) / seconds

    remb = sorted(r["remb_bps"] / 1e6 for r in recs if "remb_bps" in r)
    media = [r["media_ssrc"] for r in recs if r.get("fb") in ("PLI", "NACK")]
    media += [r["remb_ssrcs"][0] for r in recs if r.get("remb_ssrcs")]
    parts = [
        f"RR {rate(lambda r: r['pt'] == 'RR'):.1f}/s",
        f"REMB {rate(lambda r: r.get('fb') == 'REMB'):.1f}/s"
        + (
            f" ({remb[0]:.2f}–{remb[-1]:.2f}, median {remb[len(remb) // 2]:.2f} Mb/s)"
            if remb
            else ""
        ),
        f"NACK {rate(lambda r: r.get('fb') == 'NACK'):.1f}/s naming "
        f"{sum(r.get('nacked', 0) for r in recs) / seconds:.0f} seqs/s",
        f"PLI {rate(lambda r: r.get('fb') == 'PLI'):.2f}/s",
        f"FIR {rate(lambda r: r.get('fb') == 'FIR'):.1f}/s",
        f"transport-cc {rate(lambda r: r.get('fb') == 'TWCC'):.1f}/s",
        f"XR {rate(lambda r: r['pt'] == 'XR'):.1f}/s",
    ]
    if media:
        ssrc = max(set(media), key=media.count)
        blocks = [
            b for r in recs if r["pt"] in ("RR", "SR") for b in r["reports"] if b["ssrc"] == ssrc
        ]
        if len(blocks) >= 2:
            expected = blocks[-1]["highest_seq"] - blocks[0]["highest_seq"]
            lost = blocks[-1]["cumulative_lost"] - blocks[0]["cumulative_lost"]
            jitter = sorted(b["jitter"] / 90 for b in blocks)
            loss = f"{100 * lost / expected:.1f} %" if expected > 0 else "n/a"
            parts.append(f"media SSRC loss {loss}, jitter median {jitter[len(jitter) // 2]:.0f} ms")
    return ", ".join(parts)


def _remote(transport: Any) -> str:
    try:
        pair = next(iter(transport.transport._connection._nominated.values()))
        return f"{pair.remote_addr[0]}:{pair.remote_addr[1]}"
    except Exception:
        return "?"


def install(out: IO[str]) -> None:
    original = rtcdtlstransport.RTCDtlsTransport._handle_rtcp_data

    async def logged(self: Any, data: bytes) -> None:
        stamp, remote = round(time.time(), 3), _remote(self)
        for item in parse(data):
            out.write(json.dumps({"t": stamp, "from": remote, **item}) + "\n")
        out.flush()
        await original(self, data)

    rtcdtlstransport.RTCDtlsTransport._handle_rtcp_data = logged  # type: ignore[method-assign]


def main() -> int:
    from multistream.cli import main as cli_main

    path = os.environ.get("MULTISTREAM_NETLAB_RTCP_LOG")
    if path:
        install(open(path, "a", buffering=1))  # noqa: SIM115 - open for the process's lifetime
    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
