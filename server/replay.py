"""Composite replay: a session's per-stream recordings rendered offline into one video with the
Cython compositor, as viewers saw the default composite live.

The recordings are Matroska files, one per stream and per start/stop (see `media.recorder`), each
stamped with the wall-clock time its first packet arrived. The renderer lays them on one timeline
from the session's first recording to its last end, and at every output frame takes the newest
decoded screen and camera frame at that instant (a stream off at that moment is simply absent:
screen alone, camera alone, or black), composes them with `compositor.Compositor` in the session's
default layout, and encodes H.264 into MP4 with the camera's Opus audio remuxed in place. It runs on
a worker thread as a background job; the `replays` document (id = session id) carries its status
and progress so any instance can show it, and the file lands next to the recordings.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, cast

import av

from compositor import Compositor, CornerChoice, Layout
from server.clock import now_iso, parse_iso
from server.domain import default_pip
from server.errors import Conflict, NotFound
from server.settings import Settings
from store.protocol import Doc, DuplicateKey, Store

log = logging.getLogger(__name__)

FPS: Final = 15
MAX_WIDTH: Final = 1280
# A frame older than this past its segment's end means the stream had stopped.
_GRACE_S: Final = 0.5
_PROGRESS_EVERY_S: Final = 1.0
AUDIO_RATE: Final = 48000


class RenderCancelled(Exception):
    """A render stopped before the end (shutdown)."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One recording file on the session timeline (`start_s` seconds after the first one)."""

    kind: str
    path: Path
    start_s: float
    duration_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


def segments_of(recordings: list[Doc], root: Path) -> list[Segment]:
    """Finished recordings with a file, on one timeline starting at the earliest."""
    done = [
        r
        for r in recordings
        if r.get("status") == "complete" and r.get("duration_s") and (root / r["file"]).is_file()
    ]
    if not done:
        return []
    origin = min(parse_iso(r["started_at"]) for r in done)
    return sorted(
        (
            Segment(
                kind=r["kind"],
                path=root / r["file"],
                start_s=(parse_iso(r["started_at"]) - origin).total_seconds(),
                duration_s=float(r["duration_s"]),
            )
            for r in done
        ),
        key=lambda s: (s.start_s, s.kind),
    )


def layout_of(session: Doc) -> Layout:
    """The session's default layout (the studio's choice when the session has one), else the
    product default: what a viewer who never chose got live."""
    pip = session.get("default_pip") or default_pip()
    try:
        return Layout(corner=cast(CornerChoice, pip["corner"]), size_pct=int(pip["size_pct"]))
    except (KeyError, TypeError, ValueError):
        fallback = default_pip()
        return Layout(corner=cast(CornerChoice, fallback["corner"]), size_pct=fallback["size_pct"])


class _Source:
    """The decoded frames of one stream kind across its segments, read forward in time."""

    def __init__(self, segments: list[Segment]) -> None:
        self._frames = self._iterate(segments)
        self._next: tuple[float, float, av.VideoFrame] | None = None
        self._current: tuple[float, av.VideoFrame] | None = None  # (segment end, frame)
        self._advance()

    @staticmethod
    def _iterate(segments: list[Segment]) -> Iterator[tuple[float, float, av.VideoFrame]]:
        for seg in segments:
            try:
                container = av.open(str(seg.path))
            except av.error.FFmpegError:
                log.warning("replay: cannot open %s; skipped", seg.path)
                continue
            with container:
                if not container.streams.video:
                    continue
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                first: int | None = None
                try:
                    for frame in container.decode(stream):
                        if frame.pts is None or frame.time_base is None:
                            continue
                        first = frame.pts if first is None else first
                        at = seg.start_s + float((frame.pts - first) * frame.time_base)
                        yield at, seg.end_s, frame
                except av.error.FFmpegError:
                    log.warning(
                        "replay: %s is damaged past some point; the rest is skipped", seg.path
                    )

    def _advance(self) -> None:
        self._next = next(self._frames, None)

    def at(self, t: float) -> av.VideoFrame | None:
        """The newest frame shown at `t`, or None when the stream is off then."""
        while self._next is not None and self._next[0] <= t:
            self._current = (self._next[1], self._next[2])
            self._advance()
        if self._current is None or t > self._current[0] + _GRACE_S:
            return None
        return self._current[1]


def _canvas(segments: list[Segment]) -> tuple[int, int]:
    """The screen's size (else the camera's), capped at `MAX_WIDTH`, even dimensions."""
    for kind in ("screen", "camera"):
        for seg in segments:
            if seg.kind != kind:
                continue
            with contextlib.suppress(av.error.FFmpegError), av.open(str(seg.path)) as c:
                if c.streams.video:
                    cc = c.streams.video[0].codec_context
                    w, h = cc.width, cc.height
                    if w and h:
                        if w > MAX_WIDTH:
                            w, h = MAX_WIDTH, round(h * MAX_WIDTH / w)
                        return w - w % 2, h - h % 2
    return 1280, 720


def render(
    segments: list[Segment],
    out_path: Path,
    layout: Layout,
    *,
    fps: int = FPS,
    progress: Callable[[float], None] | None = None,
    kernels: str | None = None,
) -> dict[str, Any]:
    """Render the composite of `segments` to `out_path` (MP4, H.264 + the camera's Opus).

    Blocking (decode, compose, encode): call it on a worker thread. Returns what was made.
    `kernels` picks the compositor's implementation (`bench.replay_render` compares them)."""
    if not segments:
        raise ValueError("nothing to render: no finished recording")
    started = time.monotonic()
    end_s = max(s.end_s for s in segments)
    width, height = _canvas(segments)
    compositor = Compositor(layout, size=(width, height), kernels=kernels)
    sources = {
        kind: _Source([s for s in segments if s.kind == kind]) for kind in ("screen", "camera")
    }
    total = max(1, int(end_s * fps))
    tmp = out_path.with_suffix(".part")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    black = av.VideoFrame(width, height, "yuv420p")
    for plane, value in zip(black.planes, (16, 128, 128), strict=True):
        plane.update(bytes([value]) * plane.buffer_size)
    with av.open(str(tmp), "w", format="mp4") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "veryfast", "crf": "23", "tune": "stillimage"}
        video.codec_context.time_base = fractions.Fraction(1, fps)
        audio_segments = [s for s in segments if s.kind == "camera"]
        audio = _audio_stream(out, audio_segments)
        for i in range(total):
            t = i / fps
            screen, camera = sources["screen"].at(t), sources["camera"].at(t)
            if screen is None and camera is None:
                frame = black
            else:
                frame = compositor.compose(screen, camera)
            picture = frame.reformat(format="yuv420p") if frame.format.name != "yuv420p" else frame
            picture.pts = i
            picture.time_base = fractions.Fraction(1, fps)
            for packet in video.encode(picture):
                out.mux(packet)
            if progress is not None and i % fps == 0:
                progress(i / total)
        for packet in video.encode(None):
            out.mux(packet)
        if audio is not None:
            _remux_audio(out, audio, audio_segments)
    tmp.replace(out_path)
    elapsed = time.monotonic() - started
    if progress is not None:
        progress(1.0)
    return {
        "duration_s": round(end_s, 3),
        "frames": total,
        "width": width,
        "height": height,
        "render_s": round(elapsed, 3),
        "speed_x_realtime": round(end_s / elapsed, 2) if elapsed > 0 else None,
        "bytes": out_path.stat().st_size,
    }


def _audio_stream(out: Any, segments: list[Segment]) -> Any:
    """An Opus output stream when any camera recording has audio (copied, not re-encoded)."""
    for seg in segments:
        with contextlib.suppress(av.error.FFmpegError), av.open(str(seg.path)) as c:
            if c.streams.audio:
                stream = out.add_stream("libopus", rate=AUDIO_RATE)
                stream.time_base = fractions.Fraction(1, AUDIO_RATE)
                extradata = c.streams.audio[0].codec_context.extradata
                if extradata:
                    stream.codec_context.extradata = extradata
                return stream
    return None


def _remux_audio(out: Any, stream: Any, segments: list[Segment]) -> None:
    """Each camera segment's Opus packets, shifted to where the segment sits on the timeline."""
    last = -1
    for seg in segments:
        with contextlib.suppress(av.error.FFmpegError), av.open(str(seg.path)) as c:
            if not c.streams.audio:
                continue
            src = c.streams.audio[0]
            offset = round(seg.start_s * AUDIO_RATE)
            for packet in c.demux(src):
                if packet.pts is None or packet.size == 0:
                    continue
                pts = offset + round(float(packet.pts * packet.time_base) * AUDIO_RATE)
                if pts <= last:
                    continue  # overlapping segments: keep the timeline increasing
                last = pts
                packet.pts = packet.dts = pts
                packet.time_base = fractions.Fraction(1, AUDIO_RATE)
                packet.stream = stream
                out.mux(packet)


# -- the background job ----------------------------------------------------------------------


def public_replay(doc: Doc | None) -> dict[str, Any]:
    if doc is None:
        return {"status": "none", "progress": 0.0}
    keys = ("status", "progress", "created_at", "finished_at", "duration_s", "bytes", "error")
    out = {k: doc.get(k) for k in keys if doc.get(k) is not None}
    out.setdefault("progress", 0.0)
    if doc.get("speed_x_realtime") is not None:
        out["speed_x_realtime"] = doc["speed_x_realtime"]
    return out


class ReplayJobs:
    """Starts composite renders (one per session at a time) and reports their progress."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._progress: dict[str, float] = {}
        self._stopping = False

    @property
    def root(self) -> Path:
        return self.settings.recordings_dir

    async def state(self, session_id: str) -> dict[str, Any]:
        doc = await self.store.get("replays", session_id)
        if doc is not None and doc["status"] == "rendering":
            if session_id in self._progress:
                doc["progress"] = round(self._progress[session_id], 3)
            elif doc.get("instance_id") == self.settings.instance_id:
                doc = {**doc, "status": "failed", "error": "interrupted by a restart"}
        return public_replay(doc)

    async def start(self, session: Doc) -> dict[str, Any]:
        """Begin rendering an ended session's composite (idempotent while one runs or is done)."""
        if session["status"] != "ended":
            raise Conflict(
                "the composite replay is rendered once the session has ended", code="session_live"
            )
        sid = session["id"]
        current = await self.state(sid)
        if current["status"] in ("rendering", "done"):
            return current
        recordings = await self.store.find(
            "recordings", {"session_id": sid}, order_by="started_at", limit=1000
        )
        segments = segments_of(recordings, self.root)
        if not any(s.kind in ("screen", "camera") for s in segments):
            raise NotFound("this session has no finished recording to render", code="no_recordings")
        doc: Doc = {
            "id": sid,
            "session_id": sid,
            "status": "rendering",
            "progress": 0.0,
            "created_at": now_iso(),
            "instance_id": self.settings.instance_id,
            "file": f"{sid}/composite-{sid}.mp4",
            "kinds": sorted({s.kind for s in segments}),
        }
        if current["status"] == "none":
            try:
                await self.store.insert("replays", doc)
            except DuplicateKey:
                return await self.state(sid)  # another request started it a moment ago
        else:
            await self.store.upsert("replays", doc)
        self._progress[sid] = 0.0
        task = asyncio.get_running_loop().create_task(
            self._run(sid, segments, layout_of(session), self.root / doc["file"]),
            name=f"replay {sid}",
        )
        self._tasks[sid] = task
        task.add_done_callback(lambda _t: self._tasks.pop(sid, None))
        log.info("session=%s composite replay started segments=%d", sid, len(segments))
        return await self.state(sid)

    async def _run(self, sid: str, segments: list[Segment], layout: Layout, path: Path) -> None:
        def report(value: float) -> None:
            if self._stopping:
                raise RenderCancelled("the server is shutting down")
            self._progress[sid] = value

        work = asyncio.ensure_future(
            asyncio.to_thread(render, segments, path, layout, progress=report)
        )
        try:
            while not work.done():
                await asyncio.wait({work}, timeout=_PROGRESS_EVERY_S)
                if not work.done():
                    await self.store.update(
                        "replays", sid, {"progress": round(self._progress.get(sid, 0.0), 3)}
                    )
            made = work.result()
            await self.store.update(
                "replays",
                sid,
                {"status": "done", "progress": 1.0, "finished_at": now_iso(), **made},
            )
            log.info(
                "session=%s composite replay done duration=%.1fs render=%.1fs speed=%sx",
                sid,
                made["duration_s"],
                made["render_s"],
                made["speed_x_realtime"],
            )
        except Exception as exc:
            log.exception("session=%s composite replay failed", sid)
            path.with_suffix(".part").unlink(missing_ok=True)
            await self.store.update("replays", sid, {"status": "failed", "error": str(exc)[:200]})
        finally:
            self._progress.pop(sid, None)

    async def file(self, session_id: str) -> tuple[Doc, str]:
        doc = await self.store.get("replays", session_id)
        if doc is None or doc["status"] != "done" or not (self.root / doc["file"]).is_file():
            raise NotFound("no composite replay for this session yet", code="replay_not_found")
        return doc, str(doc["file"])

    async def close(self) -> None:
        """Stop running renders at their next progress report (within a second of frames)."""
        self._stopping = True
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
