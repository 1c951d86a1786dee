"""What a real Chromium viewer gets over an impaired link, next to Chromium -> Chromium on that link.

    sudo .venv/bin/python -m bench.netlab                    # 4 links x 4 paths, 30 s each (~9 min)
    sudo .venv/bin/python -m bench.netlab --seconds 20 --warmup 8 --links cap+loss

The network lab (tests/netlab, root): the real server in its namespace, an aiortc publisher there
(screen + camera, 1280x720, VP8 up to 1.5 Mb/s each, multi-packet frames), a headless Chromium in the
viewer's namespace on `/watch/<id>`. Links: clean, 3 % loss, a 1 Mbit cap (tbf), cap + loss. Paths:
`separate` (the screen stream alone), `composite` (the server's PiP of screen + camera), and the
anchors `chromium-detail` / `chromium-motion` — a second Chromium in the server namespace sending the
same screen pictures (VP8, 1.5 Mb/s cap) straight to the viewer Chromium, with content hint `detail`
(screen-share mode: keeps resolution, drops frames) or `motion` (keeps frame rate, drops
resolution): what a browser-grade sender with congestion control achieves on the same link.
Per case: the viewer's median frames decoded per second after the warm-up, seconds with
no new frame, the resolution shown, key frames decoded, and the UDP rate sent toward the viewer
(counted by nftables before the cap), plus the median REMB the viewer sent the server.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.browser.chromium import find_chromium
from tests.netlab.lab import Lab, unavailable_reason
from tests.netlab.rtcp_log import summarise as rtcp_summary
from tests.netlab.scenario import LabRun, LabSession, LabViewer

LINKS: dict[str, dict[str, int]] = {
    "clean": {},
    "loss": {"loss_pct": 3},
    "cap": {"rate_kbit": 1000},
    "cap+loss": {"rate_kbit": 1000, "loss_pct": 3},
}
PATHS = ("separate", "composite", "chromium-detail", "chromium-motion")
LABELS = {"clean": "clean", "loss": "3 % loss", "cap": "1 Mbit", "cap+loss": "1 Mbit + 3 %"}


@dataclass
class Row:
    link: str
    path: str
    median_fps: float
    stalled_s: int
    window_s: int
    resolution: str
    key_frames: int
    send_mbps: float
    remb_mbps: float | None
    nacks: int
    plis: int
    rtcp: str  # what the viewer's RTCP said (one line, see tests/netlab/rtcp_log.summarise)
    source_fps: float | None  # what the aiortc publisher made (None for the Chromium anchor)


def measure(
    run: LabRun, session: LabSession, link: str, path: str, warmup: float, seconds: float
) -> Row:
    viewer: LabViewer
    if path.startswith("chromium-"):
        viewer = run.open_browser_pair(0, content_hint=path.removeprefix("chromium-"))
    else:
        streams = ("screen",) if path == "separate" else ("screen", "camera")
        viewer = run.open_viewer(session, 0, path, streams)
    try:
        start = run.mark_after(viewer, warmup)
        wall0 = time.time()
        time.sleep(seconds)
        result = run.result(viewer, start, run.mark())
        wall1 = time.time()
    finally:
        if path.startswith("chromium-"):
            run.close_browser_pair(viewer)
        else:
            run.close_viewer(viewer)
    (view,) = result.views.values()
    viewer_ip = run.lab.links[0].viewer_ip
    records = run.rtcp_records()
    remb = [
        r["remb_bps"]
        for r in records
        if "remb_bps" in r and wall0 <= r["t"] <= wall1 and r["from"].startswith(viewer_ip + ":")
    ]
    return Row(
        link=link,
        path=path,
        median_fps=view.median_fps,
        stalled_s=view.stalled_seconds,
        window_s=len(view.seconds),
        resolution=view.resolution,
        key_frames=view.key_frames,
        send_mbps=result.send_mbps,
        remb_mbps=statistics.median(remb) / 1e6 if remb else None,
        nacks=view.nacks,
        plis=view.plis,
        rtcp=rtcp_summary(records, viewer_ip, wall0, wall1)
        if path in ("separate", "composite")
        else "",
        source_fps=next(iter(result.source_fps.values()), None),
    )


def table(rows: list[Row]) -> str:
    head = (
        "| link | path | median fps | stalled s | resolution | key frames | sent toward viewer "
        "| viewer's REMB | viewer NACKs / PLIs | publisher fps |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    lines = [head]
    for r in rows:
        remb = f"{r.remb_mbps:.2f} Mb/s" if r.remb_mbps is not None else "—"
        source = f"{r.source_fps:.1f}" if r.source_fps is not None else "—"
        lines.append(
            f"| {LABELS[r.link]} | {r.path} | {r.median_fps:.1f} | {r.stalled_s} / {r.window_s} "
            f"| {r.resolution} | {r.key_frames} | {r.send_mbps:.2f} Mb/s | {remb} "
            f"| {r.nacks} / {r.plis} | {source} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds per case")
    parser.add_argument("--warmup", type=float, default=10, help="seconds before measuring")
    parser.add_argument("--links", default=",".join(LINKS), help="comma list of " + ",".join(LINKS))
    parser.add_argument("--paths", default=",".join(PATHS), help="comma list of " + ",".join(PATHS))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--rtcp", action="store_true", help="also print what RTCP each server viewer sent"
    )
    args = parser.parse_args(argv)
    links = [name for name in args.links.split(",") if name]
    paths = [name for name in args.paths.split(",") if name]
    if unknown := [n for n in links if n not in LINKS] + [p for p in paths if p not in PATHS]:
        parser.error(f"unknown link or path: {unknown}")
    reason = unavailable_reason()
    chromium = find_chromium()
    if reason or chromium is None:
        print(f"bench.netlab cannot run: {reason or 'Chromium not installed'}", file=sys.stderr)
        return 2
    cases = [(link, path) for link in links for path in paths]
    print(
        f"{len(cases)} cases x ({args.warmup:.0f} s warm-up + {args.seconds:.0f} s) "
        f"≈ {len(cases) * (args.warmup + args.seconds + 4) / 60:.1f} min",
        file=sys.stderr,
    )
    rows: list[Row] = []
    load_before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(prefix="bench-netlab-") as tmp,
        Lab(viewers=1) as lab,
        LabRun(lab, Path(tmp), chromium, rtcp_log=True) as run,
    ):
        session = run.publish()
        for link, path in cases:
            lab.shape(0, **LINKS[link])
            row = measure(run, session, link, path, args.warmup, args.seconds)
            rows.append(row)
            print(f"  {LABELS[link]:>13} {path:>9}: {row.median_fps:5.1f} fps, "
                  f"{row.stalled_s} stalled, {row.resolution}, {row.send_mbps:.2f} Mb/s",
                  file=sys.stderr, flush=True)  # fmt: skip
            time.sleep(1)
    load_after = os.getloadavg()[0]
    print(table(rows))
    print(
        f"\nload average (1 min) {load_before:.1f} at start, {load_after:.1f} at end "
        f"on {os.cpu_count()} CPUs; {args.warmup:.0f} s warm-up, {args.seconds:.0f} s measured per case"
    )
    if args.rtcp:
        print("\nRTCP the viewer sent the server, per case:")
        for r in rows:
            if r.rtcp:
                print(f"- {LABELS[r.link]}, {r.path}: {r.rtcp}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
