"""Render a contact sheet of composites to a PNG so a person can judge the overlay by eye.

    .venv/bin/python -m compositor.demo composite.png

Rows 1-3: overlay at 10 %, 25 % and 40 % of the width; columns: top-left, top-right, bottom-left,
bottom-right (rounded corners). Row 4: a 4-pixel white border, ``auto`` placement on a screen
whose only empty corner is top-left, the same with square corners, and a 4x nearest-neighbour zoom
of a rounded corner to show the anti-aliased edge. Everything is synthetic (no fonts needed): the
"text" is a random 5x7 bitmap script, the "camera" a shaded head-and-shoulders shape.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from compositor.frames import Compositor, plane_views
from compositor.layout import CORNERS, Layout

TILE_W, TILE_H = 640, 360
U8 = npt.NDArray[np.uint8]


def _frame_from_yuv(y: U8, u: U8, v: U8) -> av.VideoFrame:
    frame = av.VideoFrame(y.shape[1], y.shape[0], "yuv420p")
    for plane, data in zip(plane_views(frame), (y, u, v), strict=True):
        plane[...] = data
    return frame


def text_screen(
    width: int, height: int, seed: int = 7, blank: str | None = None, blank_frac: float = 0.4
) -> av.VideoFrame:
    """Dark glyph rows on a light page, like an editor or a slide; ``blank`` leaves a corner empty."""
    rng = np.random.default_rng(seed)
    glyphs = rng.random((64, 7, 5)) < 0.45
    y = np.full((height, width), 225, dtype=np.uint8)
    scale, line_h, margin = 2, 22, 16
    for top in range(margin, height - line_h, line_h):
        x = margin
        line_end = width - margin - int(rng.integers(0, width // 3))
        while x < line_end - 12:
            word = int(rng.integers(2, 9))
            for _ in range(word):
                if x >= line_end - 12:
                    break
                glyph = np.kron(glyphs[int(rng.integers(0, 64))], np.ones((scale, scale), bool))
                gh, gw = glyph.shape
                y[top : top + gh, x : x + gw][glyph] = 30
                x += gw + scale
            x += 4 * scale
    if blank is not None:
        bw, bh = int(width * blank_frac), int(height * blank_frac)
        ys = slice(0, bh) if blank.startswith("top") else slice(height - bh, height)
        xs = slice(0, bw) if blank.endswith("left") else slice(width - bw, width)
        y[ys, xs] = 225
    u = np.full(((height + 1) // 2, (width + 1) // 2), 128, dtype=np.uint8)
    v = u.copy()
    u[: 12 // 2, :] = 160  # a coloured title bar
    v[: 12 // 2, :] = 110
    y[:12, :] = 90
    return _frame_from_yuv(y, u, v)


def camera_frame(width: int = 1280, height: int = 720) -> av.VideoFrame:
    """A lit head-and-shoulders silhouette on a gradient backdrop, in colour."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    nx, ny = xx / width - 0.5, yy / height - 0.5
    y = 70 + 80 * (yy / height)
    head = (nx / 0.13) ** 2 + ((ny + 0.08) / 0.22) ** 2 < 1
    body = ((nx / 0.34) ** 2 + ((ny - 0.55) / 0.35) ** 2 < 1) & (ny > 0.15)
    y = np.where(head, 175 - 60 * np.abs(nx) / 0.13, y)
    y = np.where(body, 60 + 20 * (ny > 0.3), y)
    ch, cw = (height + 1) // 2, (width + 1) // 2
    small = (slice(0, height, 2), slice(0, width, 2))
    u = np.where(head[small], 110, np.where(body[small], 150, 140))[:ch, :cw]
    v = np.where(head[small], 155, np.where(body[small], 110, 120))[:ch, :cw]
    return _frame_from_yuv(
        np.clip(y, 0, 255).astype(np.uint8), u.astype(np.uint8), v.astype(np.uint8)
    )


def _planes(frame: av.VideoFrame) -> list[U8]:
    return [p.copy() for p in plane_views(frame)]


def contact_sheet() -> av.VideoFrame:
    """The composites of the module docstring, tiled 4 x 4 into one yuv420p frame."""
    screen = text_screen(TILE_W, TILE_H)
    camera = camera_frame()
    tiles: list[list[U8]] = []
    for size in (10, 25, 40):
        for corner in CORNERS:
            layout = Layout(corner=corner, size_pct=size, radius_pct=15)
            tiles.append(_planes(Compositor(layout).compose(screen, camera)))
    bordered = Layout(corner="bottom-right", size_pct=30, radius_pct=15, border_px=4)
    tiles.append(_planes(Compositor(bordered).compose(screen, camera)))
    sparse = text_screen(TILE_W, TILE_H, seed=8, blank="top-left")
    auto = Compositor(Layout(corner="auto", size_pct=30, radius_pct=15))
    tiles.append(_planes(auto.compose(sparse, camera)))
    square = Compositor(Layout(corner="auto", size_pct=30, radius_pct=0))
    tiles.append(_planes(square.compose(sparse, camera)))
    zoom_src = _planes(Compositor(bordered).compose(screen, camera))
    rect_x, rect_y = TILE_W - 16 - 192, TILE_H - 14 - 108  # 30 % overlay, 2 % margin
    crop_y = zoom_src[0][rect_y - 10 : rect_y + 80, rect_x - 10 : rect_x + 150]
    crop_c = [p[(rect_y - 10) // 2 :][:45, (rect_x - 10) // 2 :][:, :80] for p in zoom_src[1:]]
    zoom_y = np.repeat(np.repeat(crop_y, 4, 0), 4, 1)[:TILE_H, :TILE_W]
    zoom_c = [np.repeat(np.repeat(c, 4, 0), 4, 1)[: TILE_H // 2, : TILE_W // 2] for c in crop_c]
    tiles.append([zoom_y, *zoom_c])
    gap = 8
    sheet_w, sheet_h = 4 * TILE_W + 5 * gap, 4 * TILE_H + 5 * gap
    planes = [
        np.full((sheet_h, sheet_w), 16, np.uint8),
        np.full((sheet_h // 2, sheet_w // 2), 128, np.uint8),
        np.full((sheet_h // 2, sheet_w // 2), 128, np.uint8),
    ]
    for index, tile in enumerate(tiles):
        row, col = divmod(index, 4)
        x, y = gap + col * (TILE_W + gap), gap + row * (TILE_H + gap)
        planes[0][y : y + TILE_H, x : x + TILE_W] = tile[0]
        for i in (1, 2):
            planes[i][y // 2 : (y + TILE_H) // 2, x // 2 : (x + TILE_W) // 2] = tile[i]
    return _frame_from_yuv(*planes)


def write_png(frame: av.VideoFrame, path: Path) -> None:
    """Encode one frame as PNG with PyAV's png encoder (no imaging library needed)."""
    rgb = frame.reformat(format="rgb24")
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = rgb.width, rgb.height, "rgb24"
    data = b"".join(bytes(packet) for packet in codec.encode(rgb))
    path.write_bytes(data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a PNG contact sheet of composites.")
    parser.add_argument("out", type=Path, nargs="?", default=Path("composite.png"))
    args = parser.parse_args(argv)
    write_png(contact_sheet(), args.out)


if __name__ == "__main__":
    main()
