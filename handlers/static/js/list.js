// Stream list: live sessions with a live thumbnail, their streams, how long they have been live, who
// broadcasts, viewer counts and starting price; polls so new sessions appear (and ended ones leave)
// without a reload.

import { API_PREFIX, KIND_LABELS, formatBRL, listSessions } from "./api.js";
import { $, el, say } from "./dom.js";

const POLL_MS = 3000;
// The server renders a thumbnail at most every 5 s; asking more often only gets the same picture.
const THUMB_MS = 5000;
let lastRendered = "";
const thumbs = new Map(); // session id -> { url, at }

function since(iso) {
  const start = new Date(iso).getTime();
  if (Number.isNaN(start)) return "";
  const minutes = Math.max(0, Math.floor((Date.now() - start) / 60000));
  if (minutes < 1) return "live for less than a minute";
  if (minutes < 60) return `live for ${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return `live for ${hours} h ${String(minutes % 60).padStart(2, "0")} min`;
}

function card(session) {
  const streams = (session.streams || []).filter((s) => s.status === "live" || s.status === "pending");
  const price = session.price_list || {};
  const free = !price.from_centavos && !price.bundle_centavos;
  const thumb = thumbs.get(session.id);
  return el(
    "li",
    { className: "session-card", dataset: { sessionId: session.id, createdAt: session.created_at || "" } },
    thumb
      ? el("img", { className: "thumb", src: thumb.url, alt: "" })
      : el("div", { className: "thumb none", text: "No picture yet" }),
    el("h2", { text: session.title || "Untitled session" }),
    session.broadcaster_name && el("p", { className: "byline muted", text: `by ${session.broadcaster_name}` }),
    el(
      "div",
      { className: "meta" },
      el("span", { className: "badge", dataset: { status: "live" }, text: "LIVE" }),
      streams.map((s) =>
        el("span", { className: "badge", dataset: { kind: s.kind }, text: KIND_LABELS[s.kind] || s.kind }),
      ),
    ),
    el(
      "div",
      { className: "meta muted" },
      el("span", { className: "duration", text: since(session.created_at) }),
      el("span", { text: "·" }),
      el("span", { className: "viewers", text: `${session.viewer_count ?? 0} watching` }),
      el("span", { text: "·" }),
      el("span", { className: "price", text: free ? "Free" : `from ${formatBRL(price.from_centavos)}` }),
    ),
    el("a", {
      className: "button primary",
      href: `/watch/${encodeURIComponent(session.id)}`,
      text: "Watch",
      "aria-label": `Watch ${session.title || "session"}`,
    }),
  );
}

// Thumbnails come by fetch, not <img src>: a session with no frame yet answers 204, which an
// image would report as a broken load.
// The frames live on the instance that ingests the session (`signaling_url`, empty = this one).
async function refreshThumb(session) {
  const sessionId = session.id;
  const known = thumbs.get(sessionId);
  if (known && Date.now() - known.at < THUMB_MS) return;
  const base = (session.signaling_url || "").replace(/\/$/, "");
  try {
    const response = await fetch(`${base}${API_PREFIX}/session/${encodeURIComponent(sessionId)}/thumbnail.jpg`, {
      cache: "no-store",
    });
    if (response.status !== 200) return;
    const url = URL.createObjectURL(await response.blob());
    if (known) URL.revokeObjectURL(known.url);
    thumbs.set(sessionId, { url, at: Date.now() });
    const holder = document.querySelector(`.session-card[data-session-id="${CSS.escape(sessionId)}"] .thumb`);
    if (holder) holder.replaceWith(el("img", { className: "thumb", src: url, alt: "" }));
  } catch {
    // No picture this time; the card keeps the last one.
  }
}

async function refresh() {
  try {
    const { sessions } = await listSessions();
    say($("#list-msg"), "");
    const key = JSON.stringify(sessions);
    if (key !== lastRendered) {
      lastRendered = key;
      $("#sessions").replaceChildren(...sessions.map(card));
      $("#empty").hidden = sessions.length > 0;
    }
    for (const node of document.querySelectorAll(".session-card")) {
      node.querySelector(".duration").textContent = since(node.dataset.createdAt);
    }
    const live = new Set(sessions.map((s) => s.id));
    for (const [id, thumb] of thumbs) {
      if (!live.has(id)) {
        URL.revokeObjectURL(thumb.url);
        thumbs.delete(id);
      }
    }
    await Promise.all(sessions.slice(0, 24).map(refreshThumb));
  } catch (err) {
    say($("#list-msg"), `Could not load live sessions: ${err.message}. Retrying…`, "error");
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}

refresh();
