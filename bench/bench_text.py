"""Text readability in the composite as a pytest-benchmark: a short run of `bench.text_psnr`.

    .venv/bin/python -m pytest bench/bench_text.py --benchmark-only

Three settings of the composite encoder (today's, 15 fps, 15 fps + superfast + tune=psnr) on a
static 1080p document page; the timed call is the whole compose-encode-decode pass and the figures
that matter -- PSNR of the text region through the composite and through passthrough, bitrate and
the encoder's CPU ms per frame -- are in `extra_info`. All settings: `python -m bench.text_psnr`.
"""

from __future__ import annotations

from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

from bench import text_psnr

SECONDS = 3.0
NAMES = ["today", "x264-ultrafast-15", "x264-superfast-15-psnr"]


@pytest.fixture(scope="module")
def published() -> tuple[list[npt.NDArray[np.uint8]], list[av.VideoFrame], Any]:
    originals, frames = text_psnr.publisher_frames(SECONDS, 0, 2_500_000, False)
    return originals, frames, text_psnr.text_mask()


@pytest.mark.parametrize("name", NAMES)
def test_text_psnr(benchmark: Any, published: Any, name: str) -> None:
    originals, frames, mask = published
    setting = next(s for s in text_psnr.SETTINGS if s.name == name)
    result: dict[str, float] = {}
    benchmark.group = "text readability: PSNR of the text region, 1080p document page"
    benchmark.pedantic(
        lambda: result.update(text_psnr.composite_psnr(setting, originals, frames, mask)),
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(
        {
            "setting": name,
            "preset": setting.preset,
            "tune": setting.tune,
            "fps": setting.fps,
            "composite_psnr_db": round(result["psnr_db"], 1),
            "composite_psnr_min_db": round(result["psnr_min_db"], 1),
            "passthrough_psnr_db": round(text_psnr.passthrough_psnr(originals, frames, mask), 1),
            "mbps": round(result["mbps"], 2),
            "encode_ms_per_frame": round(result["ms_per_frame"], 1),
        }
    )
    assert result["psnr_db"] > 20  # a decodable picture of the page, not noise
