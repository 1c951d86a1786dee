// Picture-in-picture placement shared by the studio preview and the viewer page: the stage carries
// `data-corner` and a `--pip-size` percentage, and CSS positions the small video from them. Corners,
// limits and defaults come from the server's vocabulary (server/domain.py), never retyped here.

import { VOCABULARY } from "./vocabulary.js";

const PIP = VOCABULARY.pip;
export const CORNERS = PIP.fixed_corners;
export const DEFAULT_PIP = PIP.default;
const CORNER_LABELS = { auto: "Auto (least busy corner)" };

// Until a page lays its stage out, the small video already has the default width.
document.documentElement.style.setProperty("--pip-size", `${DEFAULT_PIP.size_pct}%`);

export function cornerLabel(corner) {
  const words = corner.replace("-", " ");
  return CORNER_LABELS[corner] || words[0].toUpperCase() + words.slice(1);
}

// Fill a corner <select> (with "auto" first when `auto`) and a size range (with its <output>).
export function setupPipControls(select, range, output, { auto = false } = {}) {
  const corners = auto ? [...PIP.corners.filter((c) => !CORNERS.includes(c)), ...CORNERS] : CORNERS;
  select.replaceChildren(
    ...corners.map((c) => new Option(cornerLabel(c), c, c === DEFAULT_PIP.corner, c === DEFAULT_PIP.corner)),
  );
  range.min = String(PIP.size_min);
  range.max = String(PIP.size_max);
  range.step = "1";
  range.value = String(DEFAULT_PIP.size_pct);
  output.textContent = `${DEFAULT_PIP.size_pct}%`;
}

export function applyPip(stage, corner, sizePct) {
  stage.dataset.corner = CORNERS.includes(corner) ? corner : DEFAULT_PIP.corner;
  const size = Math.min(PIP.size_max, Math.max(PIP.size_min, Number(sizePct) || DEFAULT_PIP.size_pct));
  stage.style.setProperty("--pip-size", `${size}%`);
}

// For corner "auto": the corner of the main video with the least detail, so the PiP covers the least
// content. Detail = mean absolute difference between neighbouring luma samples in a small grab.
export function quietestCorner(video, sizePct = DEFAULT_PIP.size_pct) {
  if (!video || video.readyState < 2 || !video.videoWidth) return null;
  const w = 64;
  const h = 36;
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(video, 0, 0, w, h);
  const data = ctx.getImageData(0, 0, w, h).data;
  const luma = (x, y) => {
    const i = (y * w + x) * 4;
    return 0.299 * data[i] + 0.587 * data[i + 1] + 0.114 * data[i + 2];
  };
  const cw = Math.max(2, Math.round((w * sizePct) / 100));
  const ch = Math.max(2, Math.round((h * sizePct) / 100));
  let best = null;
  let bestScore = Infinity;
  for (const corner of CORNERS) {
    const x0 = corner.endsWith("left") ? 0 : w - cw;
    const y0 = corner.startsWith("top") ? 0 : h - ch;
    let score = 0;
    for (let y = y0; y < y0 + ch; y++) {
      for (let x = x0 + 1; x < x0 + cw; x++) score += Math.abs(luma(x, y) - luma(x - 1, y));
    }
    if (score < bestScore) {
      bestScore = score;
      best = corner;
    }
  }
  return best;
}
