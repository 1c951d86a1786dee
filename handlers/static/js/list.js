// Stream list: live sessions with their streams, viewer counts and starting price; polls so new
// sessions appear (and ended ones leave) without a reload.

import { KIND_LABELS, formatBRL, listSessions } from "./api.js";
import { $, el, say } from "./dom.js";

const POLL_MS = 3000;
let lastRendered = "";

function card(session) {
  const streams = (session.streams || []).filter((s) => s.status === "live" || s.status === "pending");
  const price = session.price_list || {};
  const free = !price.from_centavos && !price.bundle_centavos;
  return el(
    "li",
    { className: "session-card", dataset: { sessionId: session.id } },
    el("h2", { text: session.title || "Untitled session" }),
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
  } catch (err) {
    say($("#list-msg"), `Could not load live sessions: ${err.message}. Retrying…`, "error");
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}

refresh();
