// Viewer page: join a session (as the same viewer on every visit), choose streams and layout, see the
// itemised price, and receive either each stream separately or the server's composite.

import * as api from "./api.js";
import { $, debounce, el, say } from "./dom.js";
import { CORNERS, DEFAULT_PIP, applyPip, quietestCorner, setupPipControls } from "./layout.js";
import { createPeer, firstFrame, negotiate, watchConnection } from "./rtc.js";
import { VOCABULARY } from "./vocabulary.js";
import "./chat.js"; // listens for "multistream:chat" and mounts the chat panel into #chat-panel

const KINDS = VOCABULARY.stream_kinds;
const defaultPrefs = () => ({ enabled_streams: [], mode: VOCABULARY.default_view_mode, pip: { ...DEFAULT_PIP } });
const STATUS_POLL_MS = 3000;
const AUTO_CORNER_MS = 2000;
const SWITCH_GRACE_MS = 6000;

const sessionId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const tokenKey = `multistream.viewer.${sessionId}`;

const state = {
  token: null,
  viewerId: null,
  prefs: defaultPrefs(),
  // What the server has saved: subscriptions follow it, since the server authorises by it.
  saved: defaultPrefs(),
  streams: {}, // kind -> stream document
  session: null,
  signalBase: "",
  ended: false,
  subs: new Map(), // key -> subscription
  autoCorner: DEFAULT_PIP.corner,
  muted: true,
  volume: 0.8,
  payment: null,
  balance: null,
  free: false,
  entitled: new Set(), // kinds the server let this viewer watch (nothing owed for them)
  saving: Promise.resolve(),
};

// ---- preferences -------------------------------------------------------------------------------

function readControls() {
  const enabled = KINDS.filter((kind) => {
    const box = $(`#enable-${kind}`);
    return box && box.checked;
  });
  return {
    enabled_streams: enabled,
    mode: $("#mode-composite").checked ? "composite" : "separate",
    pip: { corner: $("#pip-corner").value, size_pct: Number($("#pip-size").value) },
  };
}

function writeControls(prefs) {
  for (const kind of KINDS) {
    const box = $(`#enable-${kind}`);
    if (box) box.checked = prefs.enabled_streams.includes(kind);
  }
  $(`#mode-${prefs.mode === "composite" ? "composite" : "separate"}`).checked = true;
  $("#pip-corner").value = prefs.pip.corner;
  $("#pip-size").value = String(prefs.pip.size_pct);
  $("#pip-size-out").textContent = `${prefs.pip.size_pct}%`;
}

// Saves run one after another so the server ends with the latest choice.
function savePreferences() {
  const wanted = readControls();
  // A layout the viewer never touched keeps following the broadcaster's.
  if (!state.layoutTouched && state.saved.pip_custom === false) delete wanted.pip;
  state.saving = state.saving.then(async () => {
    try {
      const answer = await api.putPreferences(sessionId, state.token, wanted);
      state.saved = answer.preferences;
      state.prefs = { ...state.prefs, pip: answer.preferences.pip, pip_custom: answer.preferences.pip_custom };
      markSaved();
      noteEntitlement(answer);
      renderQuote(answer.quote, answer.balance);
      renderPayment(answer.payment || null);
      say($("#watch-msg"), "");
    } catch (err) {
      if (err.code === "session_ended") endedNow();
      else say($("#watch-msg"), `Could not save your choice: ${err.message}`, "error");
    }
    syncMedia();
  });
  return state.saving;
}
const saveSoon = debounce(savePreferences, 300);

// What the server holds, on the form (for assistive tech: a quiet "Saved" status).
function markSaved() {
  const form = $("#controls");
  const saved = state.saved;
  Object.assign(form.dataset, {
    savedMode: saved.mode,
    savedCorner: saved.pip.corner,
    savedSize: String(saved.pip.size_pct),
    savedStreams: saved.enabled_streams.join(" "),
  });
  $("#prefs-status").textContent = "Your layout is saved for your next visit.";
}

function onControlsChanged(event) {
  // Layout changes show at once; the saved copy (and the price) follow from the server.
  if (event.target && (event.target.id === "pip-corner" || event.target.id === "pip-size")) {
    state.layoutTouched = true;
  }
  state.prefs = { ...state.prefs, ...readControls() };
  $("#pip-size-out").textContent = `${state.prefs.pip.size_pct}%`;
  layout();
  if (event.type === "input") saveSoon();
  else savePreferences();
}

// ---- price and payment -------------------------------------------------------------------------

function renderQuote(quote, balance = null) {
  const body = $("#quote tbody");
  if (!quote) return;
  state.balance = balance;
  state.lastQuote = quote;
  const rows = quote.items.map((item) =>
    el(
      "tr",
      { className: item.amount_centavos < 0 ? "discount" : "", dataset: { code: item.code } },
      el("td", { text: item.label }),
      el("td", { text: api.formatBRL(item.amount_centavos) }),
    ),
  );
  if (quote.items.length === 0) {
    rows.push(el("tr", {}, el("td", { colspan: "2", className: "muted", text: "No stream selected." })));
  }
  rows.push(
    el(
      "tr",
      { className: "total", dataset: { code: "total", amount: String(quote.amount_centavos) } },
      el("td", { text: "Total" }),
      el("td", { id: "quote-total", text: api.formatBRL(quote.amount_centavos) }),
    ),
  );
  // What is already paid and what is due now, so "Total" never sits alone beside a smaller "Pay".
  if (balance && quote.items.length) {
    if (balance.paid_centavos > 0) {
      rows.push(
        el(
          "tr",
          { className: "paid", dataset: { code: "paid", amount: String(balance.paid_centavos) } },
          el("td", { text: "Already paid" }),
          el("td", { text: `−${api.formatBRL(balance.paid_centavos)}` }),
        ),
      );
    }
    rows.push(
      el(
        "tr",
        { className: "due", dataset: { code: "due", amount: String(balance.due_centavos) } },
        el("td", { text: "Due now" }),
        el("td", { id: "quote-due", text: api.formatBRL(balance.due_centavos) }),
      ),
    );
  }
  body.replaceChildren(...rows);
}

// No payment in an answer means nothing is owed for the enabled streams: they are watchable.
function noteEntitlement(answer) {
  if (!answer.payment || answer.payment.status === "paid") {
    for (const kind of answer.preferences.enabled_streams) state.entitled.add(kind);
  }
}

// Anything but a paid order means money is still owed: nothing unpaid is requested from the
// server (it would answer 402), whatever state the order is in.
function owed() {
  return Boolean(state.payment && state.payment.status !== "paid");
}

// Orders that can still be paid; the page polls them until they change.
const PAYABLE = new Set(["pending", "mismatch"]);

function clock(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function streamsText(payment) {
  return payment.streams.map((k) => api.KIND_LABELS[k] || k).join(" + ");
}

function renderPayment(payment) {
  const panel = $("#payment");
  const previous = state.payment;
  state.payment = payment;
  if (!payment || (!payment.pix_copia_e_cola && payment.status !== "paid")) {
    panel.hidden = true;
    delete panel.dataset.status;
    return;
  }
  panel.hidden = false;
  panel.dataset.status = payment.status;
  const amount = api.formatBRL(payment.amount_centavos);
  const received = payment.received_centavos == null ? null : api.formatBRL(payment.received_centavos);
  let status = "";
  let next = "";
  let nextKind = "info";
  if (payment.status === "paid") {
    status = "Paid. Enjoy the stream!";
  } else if (payment.status === "pending") {
    status = `Pay ${amount} by PIX to watch ${streamsText(payment)}.`;
    next = payment.expires_at ? `This code is valid until ${clock(payment.expires_at)}.` : "";
  } else if (payment.status === "mismatch") {
    status = `Payment not credited: we received ${received}, but this code is for ${amount}.`;
    next =
      `Ask the broadcaster to refund the ${received}, then pay exactly ${amount} with the same code below. ` +
      "Your stream starts as soon as the right amount arrives.";
    nextKind = "error";
  } else if (payment.status === "expired") {
    status = `This PIX code expired at ${clock(payment.expires_at)} before a payment arrived.`;
    next = received
      ? `A payment of ${received} arrived after it expired and was not credited: ask the broadcaster for a refund. Get a new code to watch.`
      : "Get a new code to pay and watch.";
    nextKind = received ? "error" : "info";
  }
  $("#payment-status").textContent = status;
  say($("#payment-next"), next, nextKind);
  const payable = PAYABLE.has(payment.status);
  $("#payment-renew").hidden = payment.status !== "expired";
  $("#payment-code-box").hidden = !payable;
  $("#payment-code").value = payable ? payment.pix_copia_e_cola : "";
  const img = $("#payment-qr");
  // The QR URL is a capability (random order id) and needs no token, so a plain <img> loads it.
  if (payable && payment.qr_url && (!previous || previous.qr_url !== payment.qr_url)) img.src = payment.qr_url;
  img.hidden = !(payable && payment.qr_url);
}

async function pollOrder() {
  const payment = state.payment;
  if (payment && payment.order_id && PAYABLE.has(payment.status) && !state.ended) {
    try {
      const { order } = await api.getOrder(payment.order_id, state.token);
      if (order.status !== payment.status || order.received_centavos !== payment.received_centavos) {
        if (order.status === "paid") {
          for (const kind of order.streams) state.entitled.add(kind);
          if (state.balance) {
            state.balance = {
              paid_centavos: state.balance.paid_centavos + order.amount_centavos,
              due_centavos: 0,
            };
            renderQuote(state.lastQuote, state.balance);
          }
        }
        renderPayment({ ...payment, ...order });
        syncMedia();
      }
    } catch {
      // The order endpoint is optional; the next preferences answer carries the status too.
    }
  }
}

// ---- media -------------------------------------------------------------------------------------

function isLive(kind) {
  const stream = state.streams[kind];
  return Boolean(stream && stream.status === "live");
}

function wantedSubscriptions() {
  if (state.ended) return [];
  // While a payment is owed, only what is already paid for plays (the server would answer 402).
  const allowed = (kind) => !owed() || state.entitled.has(kind);
  const kinds = state.saved.enabled_streams.filter((kind) => isLive(kind) && allowed(kind));
  if (kinds.length === 0) return [];
  if (state.saved.mode === "composite") {
    return state.saved.enabled_streams.every(allowed) ? [{ key: "composite", kind: "composite" }] : [];
  }
  // A restarted stream is a new subscription (its start time is part of the key): the old
  // connection died with the old publisher and is swept once the new one plays.
  return kinds.map((kind) => {
    const stream = state.streams[kind];
    return { key: `stream:${stream.id}@${stream.started_at || ""}`, kind, streamId: stream.id };
  });
}

function syncMedia() {
  const wanted = wantedSubscriptions();
  const keys = new Set(wanted.map((w) => w.key));
  for (const want of wanted) {
    if (!state.subs.has(want.key)) {
      const sub = { ...want, pc: null, video: null, ready: false, status: "connecting", retries: 0, retryTimer: null };
      state.subs.set(want.key, sub);
      connect(sub);
    }
  }
  for (const sub of state.subs.values()) sub.wanted = keys.has(sub.key);
  sweep();
  layout();
  // Never keep an unwanted connection forever while a replacement struggles.
  setTimeout(() => sweep(true), SWITCH_GRACE_MS);
}

// Close unwanted subscriptions once every wanted one shows video, so switching has no black gap.
function sweep(force = false) {
  const wanted = [...state.subs.values()].filter((s) => s.wanted);
  const allReady = wanted.every((s) => s.ready);
  for (const sub of [...state.subs.values()]) {
    if (!sub.wanted && (allReady || force)) close(sub);
  }
}

function close(sub) {
  clearTimeout(sub.retryTimer);
  if (sub.unwatch) sub.unwatch();
  if (sub.pc) sub.pc.close();
  if (sub.video) sub.video.remove();
  state.subs.delete(sub.key);
}

function offerFor(sub) {
  if (sub.kind === "composite") {
    return (offer) => api.compositeOffer(sessionId, state.token, offer, state.signalBase);
  }
  return (offer) => api.streamOffer(sub.streamId, state.token, offer, state.signalBase);
}

async function connect(sub) {
  if (!sub.video) {
    sub.video = el("video", {
      autoplay: true,
      playsinline: true,
      className: "off",
      dataset: { kind: sub.kind },
      "aria-label": sub.kind === "composite" ? "Combined video" : `${api.KIND_LABELS[sub.kind]} video`,
    });
    sub.video.muted = state.muted;
    sub.video.volume = state.volume;
    $("#stage").prepend(sub.video);
  }
  sub.ready = false;
  sub.status = "connecting";
  const pc = createPeer();
  sub.pc = pc;
  const media = new MediaStream();
  pc.addTransceiver("video", { direction: "recvonly" });
  if (sub.kind !== "screen") pc.addTransceiver("audio", { direction: "recvonly" });
  pc.addEventListener("track", (event) => {
    media.addTrack(event.track);
    if (sub.video.srcObject !== media) sub.video.srcObject = media;
  });
  sub.unwatch = watchConnection(pc, (conn) => {
    if (sub.pc !== pc) return;
    if (conn === "connected") {
      sub.status = sub.ready ? "playing" : "connecting";
      sub.retries = 0;
    } else if (conn === "lost" || conn === "failed") {
      retry(sub);
    }
    layout();
  });
  try {
    const answer = await negotiate(pc, offerFor(sub));
    if (sub.pc !== pc) return;
    sub.video.dataset.pcId = answer.pc_id || "";
    await firstFrame(sub.video);
    if (sub.pc !== pc) return;
    sub.ready = true;
    sub.status = "playing";
    sub.video.play().catch(() => {});
    sweep();
    layout();
    refreshQuality();
  } catch (err) {
    if (sub.pc !== pc || !state.subs.has(sub.key)) return;
    sub.error = err.message;
    if (err.status === 402 || err.status === 403) {
      // Not (or no longer) allowed: asking again would only be refused again. Drop it and let
      // the server say what is owed (a preferences answer carries the payment).
      for (const kind of sub.kind === "composite" ? state.saved.enabled_streams : [sub.kind]) {
        state.entitled.delete(kind);
      }
      close(sub);
      savePreferences();
      return;
    }
    retry(sub);
  }
}

// A stream back on air (its publisher reconnected): a subscription of it waiting out its retry
// back-off (up to 10 s) connects now instead.
function reconnectReturned(kinds) {
  for (const sub of state.subs.values()) {
    const returned = kinds.includes(sub.kind) || (sub.kind === "composite" && kinds.length > 0);
    if (!returned || sub.pc || !sub.wanted || state.ended || sub.status !== "reconnecting") continue;
    clearTimeout(sub.retryTimer);
    sub.retries = 0;
    connect(sub);
  }
}

function retry(sub) {
  if (!state.subs.has(sub.key) || !sub.wanted || state.ended) return;
  if (sub.unwatch) sub.unwatch();
  if (sub.pc) sub.pc.close();
  sub.pc = null;
  sub.ready = false;
  sub.status = "reconnecting";
  sub.retries += 1;
  const delay = Math.min(10000, 500 * 2 ** Math.min(sub.retries, 5));
  clearTimeout(sub.retryTimer);
  sub.retryTimer = setTimeout(async () => {
    if (await refreshStatus()) syncMedia(); // drops the subscription if its stream went off air
    if (state.subs.has(sub.key) && sub.wanted && !state.ended && !sub.pc) connect(sub);
  }, delay);
  layout();
}

// ---- quality -----------------------------------------------------------------------------------

// The menu drives the main picture: the composite, else the screen, else the camera.
function mainSub() {
  const subs = [...state.subs.values()].filter((s) => s.wanted && s.ready && s.video?.dataset.pcId);
  const rank = { composite: 0, screen: 1, camera: 2 };
  return subs.sort((a, b) => rank[a.kind] - rank[b.kind])[0] || null;
}

function rungLabel(rung) {
  if (rung.name === "source") return "Original";
  const size = rung.height ? `${rung.height}p` : "full size";
  return `${size}, ${rung.fps} fps, ${Math.round(rung.bitrate_bps / 1000)} kb/s`;
}

// Over the server's composite budget the picture is the closest layout already running: say so.
function renderLayoutNote(quality) {
  const note = $("#layout-note");
  const layout = quality?.layout;
  if (!layout?.substitute) {
    note.hidden = true;
    note.textContent = "";
    return;
  }
  const { corner, size_pct: size } = layout.delivered;
  note.textContent = `Showing the closest available layout (camera ${corner.replace("-", " ")}, ${size} %).`;
  note.hidden = false;
}

function renderQuality(quality) {
  const select = $("#quality");
  const status = $("#quality-status");
  renderLayoutNote(quality);
  if (!quality) {
    select.disabled = true;
    status.textContent = "";
    return;
  }
  const options = [[VOCABULARY.quality_auto, "Auto (follow my connection)"], ...quality.rungs.map((r) => [r.name, rungLabel(r)])];
  const current = [...select.options].map((o) => o.value).join(",");
  if (current !== options.map(([value]) => value).join(",")) {
    select.replaceChildren(...options.map(([value, label]) => el("option", { value, text: label })));
  }
  select.value = quality.choice;
  select.disabled = false;
  const showing = quality.rungs.find((r) => r.name === quality.rung);
  if (quality.limited_by_connection && showing) {
    status.textContent = `Your connection is limiting quality: showing ${rungLabel(showing)}.`;
    status.dataset.limited = "true";
  } else {
    status.textContent = quality.choice === VOCABULARY.quality_auto ? "Best quality for your connection." : "";
    status.dataset.limited = "false";
  }
}

async function refreshQuality() {
  const sub = mainSub();
  if (!sub) {
    renderQuality(null);
    return;
  }
  try {
    const { connections } = await api.getQualities(sessionId, state.token, state.signalBase);
    // A connection being replaced is simply absent: the next poll finds its successor.
    renderQuality(connections.find((c) => c.pc_id === sub.video.dataset.pcId) || null);
  } catch {
    renderQuality(null);
  }
}

async function onQualityChanged() {
  const sub = mainSub();
  if (!sub) return;
  try {
    const quality = await api.putQuality(
      sessionId,
      state.token,
      sub.video.dataset.pcId,
      $("#quality").value,
      state.signalBase,
    );
    renderQuality(quality);
  } catch (err) {
    say($("#quality-status"), `Could not change quality: ${err.message}`, "error");
  }
}

// ---- layout ------------------------------------------------------------------------------------

function pickCorner() {
  const corner = state.prefs.pip.corner;
  if (CORNERS.includes(corner)) return corner;
  return state.autoCorner;
}

function layout() {
  const stage = $("#stage");
  stage.dataset.mode = state.prefs.mode;
  applyPip(stage, pickCorner(), state.prefs.pip.size_pct);
  const subs = [...state.subs.values()];
  // Keep showing the old layout until every wanted video has frames: switching has no black flash.
  const wanted = subs.filter((s) => s.wanted);
  const visible = wanted.length > 0 && wanted.every((s) => s.ready) ? wanted : subs.filter((s) => s.ready);
  const composite = visible.find((s) => s.kind === "composite");
  const screen = visible.find((s) => s.kind === "screen");
  const camera = visible.find((s) => s.kind === "camera");
  for (const sub of subs) {
    const video = sub.video;
    if (!video) continue;
    let role = "off";
    if (composite) role = sub === composite ? "main" : "off";
    else if (sub === screen) role = "main";
    else if (sub === camera) role = screen ? "pip" : "main";
    video.classList.toggle("main", role === "main");
    video.classList.toggle("pip", role === "pip");
    video.classList.toggle("off", role === "off");
    video.dataset.role = role;
    video.dataset.state = sub.status;
  }
  stage.dataset.showing = visible.map((s) => s.kind).join(" ");
  renderStageMessage(subs);
  renderToggles();
}

const PAY_MESSAGE = "pay";

function focusPayment(event) {
  event.preventDefault();
  const panel = $("#payment");
  panel.scrollIntoView({ block: "start" });
  panel.focus({ preventScroll: true });
}

function renderStageMessage(subs) {
  let message = "";
  const anyLive = KINDS.some(isLive);
  if (state.ended && state.endReason === "missing") message = "Nothing to watch here.";
  else if (state.ended) message = "This stream has ended. Thanks for watching!";
  else if (!state.session) message = "Joining…";
  else if (subs.some((s) => s.wanted && s.status === "reconnecting")) message = "Reconnecting…";
  else if (!anyLive) message = "Waiting for the broadcaster to go on air…";
  else if (state.prefs.enabled_streams.length === 0) message = "Turn on a stream to watch.";
  else if (!state.prefs.enabled_streams.some(isLive)) message = "The streams you picked are off air right now.";
  else if (owed() && !subs.some((s) => s.wanted)) message = PAY_MESSAGE;
  else if (subs.some((s) => s.wanted && !s.ready)) message = "Connecting…";
  const node = $("#stage-msg");
  if (message === PAY_MESSAGE) {
    // The caption points at the payment panel with a real link (on a phone it is right above).
    if (!node.querySelector("a")) {
      node.replaceChildren(
        "Pay with PIX (see ",
        el("a", { href: "#payment", id: "pay-link", text: "“Pay with PIX”", onclick: focusPayment }),
        ") to start watching.",
      );
    }
  } else {
    node.textContent = message;
  }
  node.hidden = !message;
  $("#stage").dataset.state = state.ended ? "ended" : message.startsWith("Reconnecting") ? "reconnecting" : message ? "waiting" : "playing";
}

function updateAutoCorner() {
  // A corner that is not a fixed one is "auto": follow the screen's quietest corner.
  if (!CORNERS.includes(state.prefs.pip.corner) && state.prefs.mode === "separate") {
    const screen = [...state.subs.values()].find((s) => s.kind === "screen" && s.ready);
    const corner = screen && quietestCorner(screen.video, state.prefs.pip.size_pct);
    if (corner && corner !== state.autoCorner) {
      state.autoCorner = corner;
      layout();
    }
  }
  setTimeout(updateAutoCorner, AUTO_CORNER_MS);
}

// ---- stream toggles ----------------------------------------------------------------------------

function buildToggles(priceList) {
  const holder = $("#stream-toggles");
  const kinds = KINDS.filter((kind) => state.streams[kind]);
  holder.replaceChildren(
    ...kinds.map((kind) => {
      const addon = priceList && priceList.addons_centavos ? priceList.addons_centavos[kind] : 0;
      return el(
        "label",
        { className: "inline stream-toggle", for: `enable-${kind}` },
        el("input", { type: "checkbox", id: `enable-${kind}`, name: "enabled", value: kind }),
        ` ${api.KIND_LABELS[kind]} `,
        el("span", { className: "price", text: addon ? `+${api.formatBRL(addon)}` : "" }),
        el("span", { className: "state", id: `state-${kind}` }),
      );
    }),
  );
  for (const kind of kinds) $(`#enable-${kind}`).addEventListener("change", onControlsChanged);
  if (kinds.length === 0) holder.replaceChildren(el("p", { className: "muted", text: "No streams yet." }));
}

function renderToggles() {
  for (const kind of KINDS) {
    const node = $(`#state-${kind}`);
    if (node) node.textContent = isLive(kind) ? "" : " (off air)";
  }
}

// ---- session status ----------------------------------------------------------------------------

function endedNow(reason = "ended") {
  const first = !state.ended;
  state.ended = true;
  state.endReason = reason;
  for (const sub of [...state.subs.values()]) close(sub);
  for (const input of $("#controls").querySelectorAll("input, select, button")) input.disabled = true;
  layout();
  if (first && reason === "ended") showEnded();
}

// The ended page: the replay of what this viewer may watch (the same rule as live: the
// recordings API answers only entitled viewers) and the sessions live now.
async function showEnded() {
  document.body.dataset.page = "ended";
  $("#ended-panel").hidden = false;
  $("#payment").hidden = true;
  $("#player-bar").hidden = true;
  $("#chat-name-form").hidden = true;
  $("#ended-title").focus({ preventScroll: true });
  // This visit's token, or (coming back after the end) the one saved from an earlier visit: the
  // server answers the recordings only to a viewer entitled to them, as it did live.
  const token = state.token || localStorage.getItem(tokenKey);
  const entitled = state.token ? state.free || state.entitled.size > 0 : Boolean(token);
  const [replay, live] = await Promise.all([
    entitled ? replayLinks(sessionId, token).catch(() => []) : [],
    api.listSessions().then((page) => page.sessions.filter((s) => s.id !== sessionId)).catch(() => []),
  ]);
  $("#replay-list").replaceChildren(...replay.map((r) => el("li", {}, el("a", { href: r.href, text: r.label }))));
  $("#replay").hidden = replay.length === 0;
  $("#more-live-list").replaceChildren(
    ...live.slice(0, 5).map((s) =>
      el("li", {}, el("a", { href: `/watch/${encodeURIComponent(s.id)}`, text: s.title || "Untitled session" })),
    ),
  );
  $("#more-live").hidden = live.length === 0;
  document.body.dataset.endedReady = "1";
}

// Replay links: one per recording this viewer may watch. Broadcaster accounts (a dashboard with a
// composite replay) can replace this by listening for "multistream:replay-links".
async function replayLinks(id, token) {
  const hook = new CustomEvent("multistream:replay-links", { detail: { sessionId: id, token, links: null }, cancelable: true });
  if (!document.dispatchEvent(hook) && Array.isArray(hook.detail.links)) return hook.detail.links;
  const { recordings } = await api.listRecordings(id, token);
  return recordings.map((r, i) => ({
    href: api.recordingUrl(id, r.id, token),
    label: `${api.KIND_LABELS[r.kind] || r.kind || "Recording"} ${i + 1}${r.started_at ? ` · ${clock(r.started_at)}` : ""}`,
  }));
}

async function refreshStatus() {
  try {
    const status = await api.sessionStatus(sessionId);
    applyStatus(status);
    return status;
  } catch (err) {
    if (err.status === 404) {
      $("#session-title").textContent = "Session not found";
      say($("#watch-msg"), "This session does not exist. Check the link, or pick a live one.", "error");
      endedNow("missing");
    } else {
      say($("#watch-msg"), `Lost contact with the server (${err.message}). Retrying…`, "error");
    }
    return null;
  }
}

function isFree(priceList) {
  return !priceList || (!priceList.base_centavos && !Object.values(priceList.addons_centavos || {}).some(Boolean));
}

function applyStatus(status) {
  state.session = status.session;
  state.free = isFree(status.price_list);
  // A free session shows no table of R$ 0,00 lines.
  $("#price-panel").hidden = state.free;
  const name = status.session.broadcaster_name;
  $("#session-byline").textContent = name ? `by ${name}` : "";
  $("#session-byline").hidden = !name;
  followBroadcasterLayout(status.session.default_pip);
  $("#session-title").textContent = status.session.title || "Untitled session";
  document.title = `${status.session.title || "Watch"} · multistream`;
  $("#viewer-count").textContent = `${status.viewer_count} watching`;
  const known = KINDS.filter((kind) => state.streams[kind]).join();
  const wasLive = new Set(KINDS.filter(isLive));
  state.streams = Object.fromEntries(status.streams.map((s) => [s.kind, s]));
  reconnectReturned(KINDS.filter((kind) => isLive(kind) && !wasLive.has(kind)));
  if (KINDS.filter((kind) => state.streams[kind]).join() !== known) {
    buildToggles(status.price_list);
    writeControls(state.prefs);
  }
  if (status.session.status === "ended" && !state.ended) endedNow();
}

// A viewer who never chose a layout sees the broadcaster's, and sees it move.
function followBroadcasterLayout(pip) {
  const following = state.saved.pip_custom === false && !state.layoutTouched;
  $("#pip-source").textContent = following ? "Layout: the broadcaster’s choice (change it to make it yours)." : "";
  if (!following || !pip) return;
  const current = state.prefs.pip;
  if (current.corner === pip.corner && current.size_pct === pip.size_pct) return;
  state.prefs = { ...state.prefs, pip: { ...pip } };
  state.saved = { ...state.saved, pip: { ...pip } };
  writeControls(state.prefs);
  layout();
}

async function poll() {
  if (state.ended) return;
  const status = await refreshStatus();
  if (state.ended) return;
  if (status) {
    say($("#watch-msg"), "");
    syncMedia();
  }
  await pollOrder();
  await refreshQuality();
  setTimeout(poll, STATUS_POLL_MS);
}

// ---- chat name ---------------------------------------------------------------------------------

const NAME_KEY = "multistream.chat-name";
const NAME_MAX = 40;
// What the server refuses in a name (server/validation.py): control, bidi and, at the edges,
// zero-width characters. Checked here too so the form can say so beside the field.
const BAD_NAME = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]|^[\u200b-\u200d\u2060\ufeff]|[\u200b-\u200d\u2060\ufeff]$/;

function mountChat() {
  const name = localStorage.getItem(NAME_KEY) || "";
  document.dispatchEvent(
    new CustomEvent("multistream:chat", { detail: { sessionId, token: state.token, role: "viewer", name } }),
  );
}

function saveChatName(event) {
  event.preventDefault();
  const name = $("#chat-name").value.split(/\s+/).filter(Boolean).join(" ");
  const msg = $("#chat-name-msg");
  if (name.length > NAME_MAX || BAD_NAME.test(name)) {
    say(msg, `A name is at most ${NAME_MAX} plain characters.`, "error");
    return;
  }
  if (name) localStorage.setItem(NAME_KEY, name);
  else localStorage.removeItem(NAME_KEY);
  $("#chat-name").value = name;
  say(msg, name ? `You chat as “${name}”.` : "You chat without a name.", "ok");
  if (state.token && !state.ended) mountChat();
}

// ---- start -------------------------------------------------------------------------------------

async function join() {
  const saved = localStorage.getItem(tokenKey);
  try {
    return await api.joinSession(sessionId, saved);
  } catch (err) {
    if (saved && err.status === 401) {
      localStorage.removeItem(tokenKey);
      return api.joinSession(sessionId, null);
    }
    throw err;
  }
}

async function start() {
  if (!sessionId) {
    say($("#watch-msg"), "No session in this link.", "error");
    return;
  }
  const status = await refreshStatus();
  if (!status) return;
  if (state.ended) return;
  let answer;
  try {
    answer = await join();
  } catch (err) {
    if (err.code === "session_ended") endedNow();
    else if (err.status === 404) say($("#watch-msg"), "This session does not exist.", "error");
    else say($("#watch-msg"), `Could not join: ${err.message}`, "error");
    return;
  }
  state.token = answer.viewer_token;
  state.viewerId = answer.viewer_id;
  state.signalBase = (answer.signaling_url || "").replace(/\/$/, "");
  localStorage.setItem(tokenKey, answer.viewer_token);
  state.prefs = answer.preferences;
  state.saved = answer.preferences;
  markSaved();
  noteEntitlement(answer);
  document.body.dataset.viewerId = answer.viewer_id;
  writeControls(state.prefs);
  renderQuote(answer.quote, answer.balance || null);
  renderPayment(answer.payment || null);
  followBroadcasterLayout(state.session && state.session.default_pip);
  // Mount the chat unless something (an embedding page, a test) already mounted it.
  if ($("#chat-panel").childElementCount === 0) mountChat();
  syncMedia();
  setTimeout(poll, STATUS_POLL_MS);
  updateAutoCorner();
}

setupPipControls($("#pip-corner"), $("#pip-size"), $("#pip-size-out"), { auto: true });
for (const input of document.querySelectorAll("input[name=mode], #pip-corner")) {
  input.addEventListener("change", onControlsChanged);
}
$("#pip-size").addEventListener("input", onControlsChanged);
$("#quality").addEventListener("change", onQualityChanged);
$("#controls").addEventListener("submit", (event) => event.preventDefault());
function setMuted(muted) {
  state.muted = muted;
  for (const sub of state.subs.values()) if (sub.video) sub.video.muted = state.muted;
  $("#unmute").textContent = state.muted ? "Unmute" : "Mute";
  $("#unmute").setAttribute("aria-pressed", String(!state.muted));
}
$("#unmute").addEventListener("click", () => setMuted(!state.muted));
$("#volume").addEventListener("input", () => {
  state.volume = Number($("#volume").value) / 100;
  for (const sub of state.subs.values()) if (sub.video) sub.video.volume = state.volume;
  // Turning the volume up is asking to hear it.
  if (state.volume > 0 && state.muted) setMuted(false);
  localStorage.setItem("multistream.volume", String(state.volume));
});
$("#fullscreen").addEventListener("click", async () => {
  try {
    if (document.fullscreenElement) await document.exitFullscreen();
    else await $("#stage").requestFullscreen();
  } catch (err) {
    say($("#watch-msg"), `Full screen is not available here: ${err.message}`, "error");
  }
});
document.addEventListener("fullscreenchange", () => {
  const on = document.fullscreenElement === $("#stage");
  $("#fullscreen").textContent = on ? "Exit full screen" : "Full screen";
  $("#fullscreen").setAttribute("aria-pressed", String(on));
});
$("#payment-renew").addEventListener("click", () => savePreferences());
$("#chat-name-form").addEventListener("submit", saveChatName);
$("#chat-name").value = localStorage.getItem(NAME_KEY) || "";
{
  const saved = Number(localStorage.getItem("multistream.volume"));
  if (localStorage.getItem("multistream.volume") !== null && saved >= 0 && saved <= 1) {
    state.volume = saved;
    $("#volume").value = String(Math.round(saved * 100));
  }
}
$("#payment-copy").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("#payment-code").value);
    $("#payment-copy").textContent = "Copied";
  } catch {
    $("#payment-code").select();
  }
});
window.addEventListener("beforeunload", () => {
  for (const sub of state.subs.values()) if (sub.pc) sub.pc.close();
});
start();
