// The broadcaster's dashboard: sessions with earnings (CSV export), each session's replay (the
// recordings in order, and a composite replay rendered on request with its progress), the saved
// PIX receiver and API tokens. Everything goes through the log-in cookie (same origin).

import { formatBRL, request } from "./api.js";
import { authState, createToken, listTokens, logOut, revokeToken, savePix } from "./account.js";
import { $, el, say } from "./dom.js";

const ACCOUNT = "/api/v1/account";
const POLL_MS = 1000;
let replayTimer = null;
let shownReplay = null;

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "short" });
const when = (iso) => (iso ? dateTime.format(new Date(iso)) : "");
const seconds = (s) => {
  const total = Math.round(Number(s) || 0);
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, "0")}`;
};

function sessionRow(session) {
  const earned = session.earnings || { paid_orders: 0, amount_centavos: 0 };
  const live = session.status === "live";
  const title = session.title || "Untitled session";
  return el(
    "tr",
    { dataset: { sessionId: session.id, status: session.status } },
    el("td", {}, live ? el("a", { href: `/watch/${encodeURIComponent(session.id)}`, text: title }) : title),
    el("td", {}, el("span", { className: "badge", dataset: { status: session.status }, text: live ? "LIVE" : "ended" })),
    el("td", { text: when(session.created_at) }),
    el("td", { className: "num paid-orders", text: String(earned.paid_orders) }),
    el("td", { className: "num earnings", text: formatBRL(earned.amount_centavos) }),
    el(
      "td",
      {},
      live
        ? el("span", { className: "muted", text: "after it ends" })
        : el("button", { type: "button", className: "replay-open", text: "Replay", onclick: () => openReplay(session) }),
    ),
  );
}

async function loadSessions() {
  const data = await request("GET", "/sessions", { prefix: ACCOUNT });
  $("#sessions-body").replaceChildren(...data.sessions.map(sessionRow));
  $("#sessions-empty").hidden = data.sessions.length > 0;
  $("#earnings-total").textContent = formatBRL(data.total_centavos);
  document.body.dataset.sessions = String(data.sessions.length);
}

function recordingItem(rec, index) {
  const label = `${index + 1}. ${rec.kind} · ${seconds(rec.duration_s)} · ${when(rec.started_at)}`;
  return el(
    "li",
    { className: "stream-row", dataset: { recordingId: rec.id, kind: rec.kind } },
    el("div", {}, el("strong", { text: label })),
    el("a", { href: rec.url, download: `${rec.id}.mkv`, text: "Download" }),
    el("video", { className: "recording", controls: true, preload: "metadata", src: rec.url, "aria-label": label }),
  );
}

function showComposite(composite) {
  const state = composite.status;
  const progress = $("#composite-progress");
  const render = $("#composite-render");
  progress.hidden = state !== "rendering";
  progress.value = Math.round((composite.progress || 0) * 100);
  render.disabled = state === "rendering" || state === "done";
  render.textContent = state === "failed" ? "Render again" : "Render composite replay";
  const text = {
    none: "Not rendered yet.",
    rendering: `Rendering… ${Math.round((composite.progress || 0) * 100)} %`,
    done: `Ready (${seconds(composite.duration_s)}).`,
    failed: `Rendering failed: ${composite.error || "unknown error"}`,
  }[state];
  $("#composite-state").textContent = text || state;
  $("#replay").dataset.composite = state;
  const video = $("#composite-video");
  const link = $("#composite-download");
  if (state === "done" && composite.url) {
    if (video.getAttribute("src") !== composite.url) video.src = composite.url;
    video.hidden = false;
    link.href = composite.url;
    link.hidden = false;
  } else {
    video.hidden = true;
    link.hidden = true;
  }
}

async function refreshReplay(sessionId) {
  const data = await request("GET", `/sessions/${encodeURIComponent(sessionId)}/replay`, { prefix: ACCOUNT });
  if (shownReplay !== sessionId) return;
  showComposite(data.composite);
  clearTimeout(replayTimer);
  if (data.composite.status === "rendering") replayTimer = setTimeout(() => poll(sessionId), POLL_MS);
  return data;
}

async function poll(sessionId) {
  try {
    await refreshReplay(sessionId);
  } catch (err) {
    say($("#replay-msg"), `Could not read the replay: ${err.message}`, "error");
    replayTimer = setTimeout(() => poll(sessionId), POLL_MS * 3);
  }
}

async function openReplay(session) {
  shownReplay = session.id;
  clearTimeout(replayTimer);
  const panel = $("#replay");
  panel.hidden = false;
  panel.dataset.sessionId = session.id;
  $("#replay-title").textContent = `Replay: ${session.title || "Untitled session"}`;
  say($("#replay-msg"), "");
  try {
    const data = await refreshReplay(session.id);
    const recordings = data.recordings || [];
    $("#replay-recordings").replaceChildren(...recordings.map(recordingItem));
    if (!recordings.length) say($("#replay-msg"), "This session has no recordings.", "info");
    $("#composite-render").hidden = !recordings.length;
  } catch (err) {
    say($("#replay-msg"), `Could not load the replay: ${err.message}`, "error");
  }
  panel.scrollIntoView({ block: "start" });
}

async function renderComposite() {
  const sessionId = shownReplay;
  if (!sessionId) return;
  $("#composite-render").disabled = true;
  try {
    const data = await request("POST", `/sessions/${encodeURIComponent(sessionId)}/replay`, {
      body: {},
      prefix: ACCOUNT,
    });
    showComposite(data.composite);
    if (data.composite.status === "rendering") replayTimer = setTimeout(() => poll(sessionId), POLL_MS);
  } catch (err) {
    say($("#replay-msg"), `Could not start rendering: ${err.message}`, "error");
    $("#composite-render").disabled = false;
  }
}

function fillPix(pix) {
  $("#acct-pix-key").value = pix?.key || "";
  $("#acct-pix-name").value = pix?.merchant_name || "";
  $("#acct-pix-city").value = pix?.merchant_city || "";
}

async function onSavePix(event) {
  event.preventDefault();
  const pix = {
    key: $("#acct-pix-key").value.trim(),
    merchant_name: $("#acct-pix-name").value.trim(),
    merchant_city: $("#acct-pix-city").value.trim(),
  };
  const empty = !pix.key && !pix.merchant_name && !pix.merchant_city;
  try {
    const saved = await savePix(empty ? null : pix);
    fillPix(saved.pix);
    say($("#dash-msg"), empty ? "PIX receiver removed." : "PIX receiver saved.", "ok");
  } catch (err) {
    say($("#dash-msg"), `PIX receiver not saved: ${err.message}`, "error");
  }
}

async function loadTokens() {
  const { tokens } = await listTokens();
  $("#tokens").replaceChildren(
    ...tokens.map((t) =>
      el(
        "li",
        { className: "stream-row", dataset: { tokenId: t.id } },
        el("span", { text: `${t.name} · ${when(t.created_at)}` }),
        el("button", {
          type: "button",
          className: "danger",
          text: "Revoke",
          onclick: async () => {
            await revokeToken(t.id);
            await loadTokens();
          },
        }),
      ),
    ),
  );
}

async function onCreateToken(event) {
  event.preventDefault();
  try {
    const made = await createToken($("#token-name").value.trim() || "API token");
    say($("#token-secret"), `New token (shown once, copy it now): ${made.secret}`, "ok");
    $("#token-name").value = "";
    await loadTokens();
  } catch (err) {
    say($("#token-secret"), `Token not created: ${err.message}`, "error");
  }
}

async function init() {
  const state = await authState();
  if (!state.user) {
    location.replace("/login?next=/dashboard");
    return;
  }
  $("#who").textContent = `· ${state.user.display_name}`;
  fillPix(state.user.pix);
  $("#pix-form").addEventListener("submit", onSavePix);
  $("#token-form").addEventListener("submit", onCreateToken);
  $("#composite-render").addEventListener("click", renderComposite);
  $("#logout").addEventListener("click", async () => {
    await logOut();
    location.assign("/");
  });
  try {
    await Promise.all([loadSessions(), loadTokens()]);
  } catch (err) {
    say($("#dash-msg"), `Could not load the dashboard: ${err.message}`, "error");
  }
  document.body.dataset.ready = "1";
}

init();
