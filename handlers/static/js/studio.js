// Broadcaster studio: capture screen and camera, preview them as PiP, go live with pricing, and publish
// each stream on its own RTCPeerConnection so either can stop, start or reconnect alone.

import * as api from "./api.js";
import { $, debounce, el, say } from "./dom.js";
import { applyPip, setupPipControls } from "./layout.js";
import { applySenderLimits, captureErrorMessage, createPeer, negotiate, watchConnection } from "./rtc.js";
import { VOCABULARY } from "./vocabulary.js";
import "./chat.js"; // listens for "multistream:chat" and mounts the chat panel into #chat-panel

// Kinds, presets (name -> size), frame rates and content hints: the server's vocabulary.
const KINDS = VOCABULARY.stream_kinds;
const QUALITY = VOCABULARY.quality;
const HINT_LABELS = { detail: "Detail (slides, video)", text: "Text (code, documents)" };
// Screens keep their resolution (text stays sharp); cameras keep their motion.
const DEGRADATION = { screen: "maintain-resolution", camera: "maintain-framerate" };
const STATUS_POLL_MS = 3000;
const STATE_LABELS = {
  off: "Off",
  connecting: "Connecting…",
  live: "Live",
  lost: "Connection lost",
  failed: "Failed",
};

const state = {
  media: { screen: null, camera: null }, // MediaStream per kind while captured
  session: null,
  token: null,
  signalBase: "",
  streams: {}, // kind -> stream document from the server
  pubs: { screen: null, camera: null }, // kind -> { pc, unwatch }
  rows: {
    screen: { conn: "off", error: "", detail: "" },
    camera: { conn: "off", error: "", detail: "" },
  },
  busy: { screen: false, camera: false },
  pollTimer: null,
};

// ---- quality -----------------------------------------------------------------------------------

function quality(kind) {
  const preset = $(`#${kind}-preset`).value;
  const fps = Number($(`#${kind}-fps`).value);
  const hintSelect = document.getElementById(`${kind}-hint`);
  const hint = hintSelect ? hintSelect.value : QUALITY[kind].default_content_hint;
  const kbps = Number($(`#${kind}-bitrate`).value) || (kind === "screen" ? 2500 : 1200);
  const { width, height } = QUALITY[kind].presets[preset];
  return { preset, fps, hint, width, height, bitrate: Math.round(kbps * 1000) };
}

function videoConstraints(kind) {
  const q = quality(kind);
  return {
    width: { ideal: q.width },
    height: { ideal: q.height },
    frameRate: { ideal: q.fps, max: q.fps },
  };
}

async function applyQuality(kind) {
  const stream = state.media[kind];
  if (!stream) return;
  const track = stream.getVideoTracks()[0];
  const q = quality(kind);
  track.contentHint = q.hint;
  try {
    await track.applyConstraints(videoConstraints(kind));
  } catch (err) {
    say($("#studio-msg"), `The ${kind} cannot use that quality: ${err.message}`, "error");
  }
  const pub = state.pubs[kind];
  if (pub && pub.sender) await limitSender(kind, pub.sender);
  remember();
  renderRows();
}

async function limitSender(kind, sender) {
  const q = quality(kind);
  const refused = await applySenderLimits(sender, {
    maxBitrate: q.bitrate,
    maxFramerate: q.fps,
    degradationPreference: DEGRADATION[kind],
  });
  if (refused.length) {
    state.rows[kind].detail = "This browser ignores the degradation preference; the content hint still applies.";
  }
}

// ---- capture -----------------------------------------------------------------------------------

async function capture(kind) {
  if (state.media[kind]) return state.media[kind];
  let stream;
  try {
    if (kind === "screen") {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
        throw Object.assign(new Error("getDisplayMedia missing"), { name: "TypeError" });
      }
      stream = await navigator.mediaDevices.getDisplayMedia({ video: videoConstraints(kind), audio: false });
    } else {
      stream = await navigator.mediaDevices.getUserMedia({
        video: videoConstraints(kind),
        audio: $("#camera-mic").checked,
      });
    }
  } catch (err) {
    say($("#studio-msg"), captureErrorMessage(err, kind), "error");
    return null;
  }
  const track = stream.getVideoTracks()[0];
  track.contentHint = quality(kind).hint;
  // The browser's own "Stop sharing" bar (or an unplugged camera) ends the track.
  track.addEventListener("ended", () => {
    if (state.media[kind] === stream) setOnAir(kind, false);
  });
  state.media[kind] = stream;
  say($("#studio-msg"), "");
  renderPreview();
  return stream;
}

function release(kind) {
  const stream = state.media[kind];
  state.media[kind] = null;
  if (stream) for (const track of stream.getTracks()) track.stop();
  renderPreview();
}

function renderPreview() {
  const screen = $("#preview-screen");
  const camera = $("#preview-camera");
  screen.srcObject = state.media.screen;
  camera.srcObject = state.media.camera;
  screen.classList.toggle("off", !state.media.screen);
  camera.classList.toggle("off", !state.media.camera);
  // With no screen the camera fills the stage instead of floating in a corner.
  const cameraAlone = state.media.camera && !state.media.screen;
  camera.classList.toggle("pip", !cameraAlone);
  camera.classList.toggle("main", Boolean(cameraAlone));
  $("#preview-empty").hidden = Boolean(state.media.screen || state.media.camera);
  $("#screen-capture").textContent = state.media.screen ? "Stop sharing" : "Share screen";
  $("#camera-capture").textContent = state.media.camera ? "Stop camera" : "Start camera";
  $("#screen-capture").setAttribute("aria-pressed", String(Boolean(state.media.screen)));
  $("#camera-capture").setAttribute("aria-pressed", String(Boolean(state.media.camera)));
}

// ---- publishing --------------------------------------------------------------------------------

function setRow(kind, conn, error = "") {
  state.rows[kind].conn = conn;
  state.rows[kind].error = error;
  renderRows();
}

async function publish(kind) {
  const media = state.media[kind];
  if (!media || !state.session) return;
  unpublish(kind);
  setRow(kind, "connecting");
  try {
    let stream = state.streams[kind];
    if (!stream || !["pending", "live"].includes(stream.status)) {
      const answer = await api.startStream(state.session.id, kind, state.token);
      stream = answer.stream;
      state.streams[kind] = stream;
    }
    const pc = createPeer();
    const pub = { pc, sender: null, unwatch: null };
    state.pubs[kind] = pub;
    const video = media.getVideoTracks()[0];
    const q = quality(kind);
    const transceiver = pc.addTransceiver(video, {
      direction: "sendonly",
      streams: [media],
      sendEncodings: [{ maxBitrate: q.bitrate, maxFramerate: q.fps }],
    });
    pub.sender = transceiver.sender;
    for (const audio of media.getAudioTracks()) {
      pc.addTransceiver(audio, { direction: "sendonly", streams: [media] });
    }
    pub.unwatch = watchConnection(pc, (conn) => {
      if (state.pubs[kind] !== pub) return;
      if (conn === "connected") {
        retries[kind] = 0;
        setRow(kind, "live");
      } else if (conn === "lost" || conn === "failed") {
        const seconds = scheduleRepublish(kind);
        const what = conn === "lost" ? "The connection to the server dropped." : "The connection failed.";
        setRow(kind, conn, `${what} Reconnecting in ${seconds} s (or reconnect now).`);
      }
    });
    const answer = await negotiate(pc, (offer) => api.streamOffer(stream.id, state.token, offer, state.signalBase));
    pub.pcId = answer.pc_id || "";
    await limitSender(kind, pub.sender);
    if (pc.connectionState === "connected") setRow(kind, "live");
  } catch (err) {
    unpublish(kind);
    // Refused for good (no rights, session over): say so. Else (an instance restarting, a session
    // moving to another instance) try again by itself.
    if ([401, 403, 404, 409, 410].includes(err.status)) {
      setRow(kind, "failed", `Could not publish: ${err.message}`);
    } else {
      const seconds = scheduleRepublish(kind);
      setRow(kind, "failed", `Could not publish: ${err.message}. Retrying in ${seconds} s.`);
    }
  }
}

// A publication that drops (a network change, the serving instance failing over) comes back by
// itself: a new connection and offer after 1, 2, 4, 8, then every 10 s while the source is on.
const retries = Object.fromEntries(KINDS.map((kind) => [kind, 0]));
const retryTimers = Object.fromEntries(KINDS.map((kind) => [kind, null]));

function scheduleRepublish(kind) {
  clearTimeout(retryTimers[kind]);
  retries[kind] += 1;
  const delay = Math.min(10000, 1000 * 2 ** Math.min(retries[kind] - 1, 4));
  retryTimers[kind] = setTimeout(() => {
    retryTimers[kind] = null;
    const row = state.rows[kind];
    if (state.session && state.media[kind] && !state.busy[kind] && ["lost", "failed"].includes(row.conn)) {
      publish(kind);
    }
  }, delay);
  return Math.round(delay / 1000);
}

function cancelRepublish(kind) {
  clearTimeout(retryTimers[kind]);
  retryTimers[kind] = null;
  retries[kind] = 0;
}

function unpublish(kind) {
  clearTimeout(retryTimers[kind]);
  retryTimers[kind] = null;
  const pub = state.pubs[kind];
  state.pubs[kind] = null;
  if (!pub) return;
  if (pub.unwatch) pub.unwatch();
  pub.pc.close();
}

// Turn one source on or off; while live this also starts or stops that stream on air.
async function setOnAir(kind, on) {
  if (state.busy[kind]) return;
  state.busy[kind] = true;
  renderRows();
  try {
    if (on) {
      if (!(await capture(kind))) return;
      if (state.session) await publish(kind);
    } else {
      unpublish(kind);
      release(kind);
      if (state.session && state.streams[kind]) {
        setRow(kind, "off");
        try {
          const answer = await api.stopStream(state.session.id, kind, state.token);
          state.streams[kind] = answer.stream;
        } catch (err) {
          setRow(kind, "off", `The server did not confirm the stop: ${err.message}`);
        }
      }
    }
  } finally {
    state.busy[kind] = false;
    remember();
    renderRows();
  }
}

// The microphone is the camera stream's audio track: muting disables it (silence is sent, the
// connection and the video go on), so unmuting is instant.
function micTrack() {
  const media = state.media.camera;
  return media ? media.getAudioTracks()[0] || null : null;
}

function toggleMic() {
  const track = micTrack();
  if (!track) return;
  track.enabled = !track.enabled;
  say($("#server-msg"), track.enabled ? "Microphone on." : "Microphone muted: viewers hear nothing.", "info");
  renderRows();
}

// ---- live panel --------------------------------------------------------------------------------

function describe(kind) {
  const q = quality(kind);
  const bits = [`${q.preset}`, `${q.fps} fps`, `${Math.round(q.bitrate / 1000)} kbps max`];
  if (kind === "screen") bits.push(`hint: ${q.hint}`);
  return bits.join(" · ");
}

// What the browser actually applied to the sender (read back, not what was asked for).
function applied(kind) {
  const pub = state.pubs[kind];
  if (!pub || !pub.sender) return null;
  const params = pub.sender.getParameters();
  const encoding = (params.encodings && params.encodings[0]) || {};
  return {
    maxBitrate: encoding.maxBitrate || 0,
    maxFramerate: encoding.maxFramerate || 0,
    degradation: params.degradationPreference || "",
    hint: pub.sender.track ? pub.sender.track.contentHint : "",
  };
}

const KEEPS = { "maintain-resolution": "keeps resolution", "maintain-framerate": "keeps frame rate" };

function appliedText(a) {
  if (!a) return "";
  const bits = [];
  if (a.maxBitrate) bits.push(`≤${Math.round(a.maxBitrate / 1000)} kbps`);
  if (a.maxFramerate) bits.push(`≤${a.maxFramerate} fps`);
  if (a.degradation) bits.push(KEEPS[a.degradation] || a.degradation);
  return bits.length ? ` · encoder: ${bits.join(", ")}` : "";
}

function renderRows() {
  if (!state.session) return;
  const rows = KINDS.map((kind) => {
    const row = state.rows[kind];
    const on = Boolean(state.media[kind]);
    const label = STATE_LABELS[row.conn] || row.conn;
    const name = api.KIND_LABELS[kind];
    const needsReconnect = on && (row.conn === "lost" || row.conn === "failed");
    const a = applied(kind);
    const dataset = { kind, state: row.conn, pcId: state.pubs[kind]?.pcId || "" };
    if (kind === "camera" && micTrack()) dataset.mic = micTrack().enabled ? "on" : "muted";
    if (a) Object.assign(dataset, { maxBitrate: a.maxBitrate, maxFramerate: a.maxFramerate, degradation: a.degradation, hint: a.hint });
    return el(
      "li",
      { className: "stream-row", dataset },
      el("span", { className: "name" }, name, " ", el("span", { className: "badge", dataset: { status: row.conn }, text: label })),
      el(
        "span",
        { className: "actions" },
        needsReconnect &&
          el("button", {
            type: "button",
            className: "reconnect",
            text: "Reconnect",
            "aria-label": `Reconnect ${name.toLowerCase()}`,
            onclick: () => {
              cancelRepublish(kind);
              publish(kind);
            },
          }),
        kind === "camera" &&
          on &&
          micTrack() &&
          el("button", {
            type: "button",
            className: "mic",
            id: "mic-toggle",
            text: micTrack().enabled ? "Mute mic" : "Unmute mic",
            "aria-pressed": String(!micTrack().enabled),
            "aria-label": micTrack().enabled ? "Mute microphone" : "Unmute microphone",
            onclick: toggleMic,
          }),
        el("button", {
          type: "button",
          className: on ? "toggle danger" : "toggle",
          text: on ? "Stop" : "Start",
          "aria-label": `${on ? "Stop" : "Start"} ${name.toLowerCase()} stream`,
          disabled: state.busy[kind],
          onclick: () => setOnAir(kind, !on),
        }),
      ),
      el("span", {
        className: "detail",
        text: on ? `${describe(kind)}${appliedText(a)}${row.stats ? ` · ${row.stats}` : ""}` : "Not on air",
      }),
      row.error && el("span", { className: "error", role: "alert", text: row.error }),
      row.detail && el("span", { className: "detail", text: row.detail }),
    );
  });
  // Rows are rebuilt on every poll; keep keyboard focus on the same control.
  const focused = document.activeElement;
  const refocus =
    focused && focused.closest && focused.closest(".stream-row")
      ? `.stream-row[data-kind="${focused.closest(".stream-row").dataset.kind}"] button.${focused.classList[0]}`
      : null;
  $("#stream-rows").replaceChildren(...rows);
  if (refocus) {
    const again = $(refocus);
    if (again) again.focus();
  }
}

async function sendingStats(kind) {
  const pub = state.pubs[kind];
  if (!pub) return "";
  const report = await pub.pc.getStats(pub.sender.track);
  for (const s of report.values()) {
    if (s.type === "outbound-rtp" && s.kind === "video" && s.frameWidth) {
      return `sending ${s.frameWidth}×${s.frameHeight} @ ${Math.round(s.framesPerSecond || 0)} fps`;
    }
  }
  return "";
}

async function pollStatus() {
  if (!state.session) return;
  try {
    const status = await api.sessionStatus(state.session.id);
    say($("#server-msg"), "");
    $("#viewer-count").textContent = `${status.viewer_count} watching`;
    for (const stream of status.streams) state.streams[stream.kind] = stream;
    if (status.session.status === "ended") {
      finish("The session was ended by the server.");
      return;
    }
    for (const kind of KINDS) {
      const stream = state.streams[kind];
      if (stream && stream.status === "failed" && state.rows[kind].conn === "live") {
        setRow(kind, "failed", "The server reported this stream failed. Reconnect to try again.");
      }
      state.rows[kind].stats = await sendingStats(kind).catch(() => "");
    }
    renderRows();
  } catch (err) {
    say($("#server-msg"), `Lost contact with the server (${err.message}). Retrying…`, "error");
  } finally {
    if (state.session) state.pollTimer = setTimeout(pollStatus, STATUS_POLL_MS);
  }
}

// ---- per-field messages ------------------------------------------------------------------------

// The form's inputs by the request field the server names in its errors.
const FIELD_INPUTS = {
  "pix.key": "pix-key",
  "pix.merchant_name": "pix-name",
  "pix.merchant_city": "pix-city",
  pix: "pix-key",
  "pricing.bundle_discount_pct": "price-bundle",
  "pricing.base": "price-base",
  "pricing.addons.screen": "price-screen",
  "pricing.addons.camera": "price-camera",
  title: "title",
  broadcaster_name: "broadcaster-name",
};

function messageOf(messages, fallback = "") {
  if (!messages) return fallback;
  const lang = (navigator.language || "en").toLowerCase();
  return (lang.startsWith("pt") ? messages["pt-BR"] : messages.en) || messages.en || fallback;
}

// A message beside one input ("error" | "warn" | "ok" | "info"); empty text clears it.
function fieldMsg(inputId, text, kind = "info") {
  const node = document.getElementById(`${inputId}-msg`);
  const input = document.getElementById(inputId);
  if (!node) return false;
  node.textContent = text || "";
  node.dataset.kind = kind;
  node.hidden = !text;
  node.setAttribute("role", kind === "error" ? "alert" : "status");
  if (input) input.setAttribute("aria-invalid", String(Boolean(text) && kind === "error"));
  return true;
}

// A refusal from the server, shown beside the field it names (and focused), else in the banner.
function showServerError(err, prefix) {
  const inputId = err.field && FIELD_INPUTS[err.field];
  if (inputId && fieldMsg(inputId, api.errorText(err), "error")) {
    say($("#studio-msg"), `${prefix}: see the highlighted field.`, "error");
    document.getElementById(inputId).focus();
    return;
  }
  say($("#studio-msg"), `${prefix}: ${api.errorText(err)}`, "error");
}

const KEY_TYPE_LABELS = { cpf: "CPF", cnpj: "CNPJ", phone: "Phone", email: "E-mail", evp: "Random key" };
const RECEIVER_INPUTS = { key: "pix-key", merchant_name: "pix-name", merchant_city: "pix-city" };
let receiverCheck = null;

// The receiver as typed, checked by the server while the broadcaster types: the key's type and
// how it is stored, the city as PIX codes will show it, and anything that cannot work.
async function checkReceiverNow() {
  const fields = {};
  for (const [name, id] of Object.entries(RECEIVER_INPUTS)) {
    const value = $(`#${id}`).value.trim();
    if (value) fields[name] = value;
    else fieldMsg(id, "");
  }
  if (receiverCheck) receiverCheck.abort();
  if (Object.keys(fields).length === 0) return;
  const controller = new AbortController();
  receiverCheck = controller;
  let answer;
  try {
    answer = await api.checkReceiver(fields, controller.signal);
  } catch (err) {
    if (err.name !== "AbortError") fieldMsg("pix-key", err.message, "error");
    return;
  }
  if (receiverCheck !== controller) return;
  const receiver = answer.receiver;
  if (receiver.key) {
    const shown = receiver.key === fields.key ? "" : `, stored as ${receiver.key}`;
    fieldMsg("pix-key", `${KEY_TYPE_LABELS[receiver.key_type] || receiver.key_type} key${shown}.`, "ok");
  }
  if (receiver.merchant_name) fieldMsg("pix-name", "");
  if (receiver.merchant_city) {
    const cut = answer.warnings.find((w) => w.field === "pix.merchant_city");
    fieldMsg(
      "pix-city",
      cut ? messageOf(cut.messages) : `Payers will see “${receiver.merchant_city}”.`,
      cut ? "warn" : "ok",
    );
  }
  for (const problem of answer.problems) {
    const id = FIELD_INPUTS[problem.field];
    if (id) fieldMsg(id, messageOf(problem.messages, problem.message), "error");
  }
}
const checkReceiverSoon = debounce(checkReceiverNow, 300);

// Pricing whose bundle makes both streams cheaper than one alone is refused by the server; say
// so while typing, with the largest discount that works (the same arithmetic as server/pricing.py).
function checkPricing() {
  let price;
  try {
    price = readPricing();
  } catch (err) {
    fieldMsg("price-bundle", "");
    fieldMsg("price", err.message, "error");
    return false;
  }
  fieldMsg("price", "");
  const { screen, camera } = price.addons;
  const addons = screen + camera;
  const discount = Math.floor((addons * price.bundle_discount_pct + 50) / 100);
  const both = price.base + addons - discount;
  const cheaper = Math.min(screen, camera);
  if (discount > cheaper) {
    let limit = 100;
    while (limit > 0 && Math.floor((addons * limit + 50) / 100) > cheaper) limit -= 1;
    const alone = screen >= camera ? ["the screen", price.base + screen] : ["the camera", price.base + camera];
    fieldMsg(
      "price-bundle",
      `With ${price.bundle_discount_pct}% off, screen + camera would cost ${api.formatBRL(both)}, less than ` +
        `${alone[0]} alone (${api.formatBRL(alone[1])}). Use at most ${limit}%, or raise the cheaper add-on.`,
      "error",
    );
    return false;
  }
  fieldMsg("price-bundle", "");
  return true;
}

// ---- remembered form ---------------------------------------------------------------------------

// The form's last values (never the broadcaster token: that stays in this tab's sessionStorage).
const FORM_KEY = "multistream.studio.form";
const REMEMBERED = [
  "title", "broadcaster-name", "price-base", "price-screen", "price-camera", "price-bundle",
  "pix-key", "pix-name", "pix-city", "screen-preset", "screen-fps", "screen-hint", "screen-bitrate",
  "camera-preset", "camera-fps", "camera-bitrate", "preview-corner", "preview-size",
];

function rememberForm() {
  const values = Object.fromEntries(REMEMBERED.map((id) => [id, $(`#${id}`).value]));
  values["camera-mic"] = $("#camera-mic").checked;
  localStorage.setItem(FORM_KEY, JSON.stringify(values));
}

function restoreForm() {
  let values = null;
  try {
    values = JSON.parse(localStorage.getItem(FORM_KEY) || "null");
  } catch {
    values = null;
  }
  if (!values || typeof values !== "object") return;
  for (const id of REMEMBERED) {
    const input = $(`#${id}`);
    const value = values[id];
    if (typeof value !== "string") continue;
    // A select keeps its value only if the option still exists (the vocabulary may change).
    if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === value)) continue;
    input.value = value;
  }
  if (typeof values["camera-mic"] === "boolean") $("#camera-mic").checked = values["camera-mic"];
}

// ---- session -----------------------------------------------------------------------------------

function readPricing() {
  const amounts = {};
  for (const [key, id] of [["base", "price-base"], ["screen", "price-screen"], ["camera", "price-camera"]]) {
    const value = api.parseBRL($(`#${id}`).value);
    if (value === null) throw new Error(`“${$(`label[for=${id}]`).textContent}” must be an amount like 5,00`);
    amounts[key] = value;
  }
  const discount = Number($("#price-bundle").value || 0);
  if (!Number.isInteger(discount) || discount < 0 || discount > 100) {
    throw new Error("The bundle discount must be a whole percent from 0 to 100");
  }
  return {
    base: amounts.base,
    addons: { screen: amounts.screen, camera: amounts.camera },
    bundle_discount_pct: discount,
  };
}

function readPix() {
  const key = $("#pix-key").value.trim();
  const name = $("#pix-name").value.trim();
  const city = $("#pix-city").value.trim();
  if (!key && !name && !city) return null;
  if (!key || !name || !city) throw new Error("The PIX receiver needs a key, a name and a city");
  return { key, merchant_name: name, merchant_city: city };
}

async function goLive(event) {
  event.preventDefault();
  const kinds = KINDS.filter((kind) => state.media[kind]);
  if (kinds.length === 0) {
    say($("#studio-msg"), "Share your screen or start your camera before going live.", "error");
    return;
  }
  let body;
  try {
    body = {
      title: $("#title").value.trim() || "Untitled session",
      streams: kinds,
      pricing: readPricing(),
      quality: Object.fromEntries(
        kinds.map((kind) => {
          const q = quality(kind);
          return [kind, { preset: q.preset, fps: q.fps, content_hint: q.hint }];
        }),
      ),
    };
    const pix = readPix();
    if (pix) body.pix = pix;
    const name = $("#broadcaster-name").value.trim();
    if (name) body.broadcaster_name = name;
    body.default_pip = previewPip();
  } catch (err) {
    say($("#studio-msg"), err.message, "error");
    return;
  }
  if (!checkPricing()) {
    say($("#studio-msg"), "Could not go live: see the highlighted field.", "error");
    $("#price-bundle").focus();
    return;
  }
  const button = $("#go-live");
  button.disabled = true;
  try {
    const answer = await api.startSession(body);
    state.session = answer.session;
    state.token = answer.broadcaster_token;
    state.signalBase = (answer.session.signaling_url || "").replace(/\/$/, "");
    state.streams = Object.fromEntries(answer.session.streams.map((s) => [s.kind, s]));
  } catch (err) {
    button.disabled = false;
    showServerError(err, "Could not go live");
    return;
  }
  rememberForm();
  $("#golive-form").hidden = true;
  $("#live-panel").hidden = false;
  // The form the focus was in is gone: put it at the top of what replaced it, not the page's top.
  $("#live-title").focus({ preventScroll: true });
  $("#share-url").value = new URL(`/watch/${encodeURIComponent(state.session.id)}`, location.href).href;
  say($("#studio-msg"), `You are live: “${state.session.title}”.`, "ok");
  document.body.dataset.sessionId = state.session.id;
  remember();
  renderRows();
  showChat();
  await Promise.all(kinds.map((kind) => publish(kind)));
  state.pollTimer = setTimeout(pollStatus, 500);
}

// The chat client (js/chat.js) mounts into #chat-panel when a page announces its session.
function showChat() {
  $("#chat-panel").hidden = false;
  document.dispatchEvent(
    new CustomEvent("multistream:chat", {
      detail: { sessionId: state.session.id, token: state.token, role: "broadcaster" },
    }),
  );
}

// The broadcaster token lives in this tab's sessionStorage, so a reload can resume the session.
const RESUME_KEY = "multistream.studio";

function remember() {
  if (!state.session) return;
  const onAir = KINDS.filter((kind) => state.media[kind]);
  const bitrates = Object.fromEntries(KINDS.map((kind) => [kind, $(`#${kind}-bitrate`).value]));
  sessionStorage.setItem(
    RESUME_KEY,
    JSON.stringify({ sessionId: state.session.id, token: state.token, onAir, bitrates }),
  );
}

async function resume() {
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(RESUME_KEY) || "null");
  } catch {
    saved = null;
  }
  if (!saved || !saved.sessionId || !saved.token) return;
  let status;
  try {
    status = await api.sessionStatus(saved.sessionId);
  } catch {
    sessionStorage.removeItem(RESUME_KEY);
    return;
  }
  if (status.session.status !== "live") {
    sessionStorage.removeItem(RESUME_KEY);
    return;
  }
  state.session = status.session;
  state.token = saved.token;
  state.signalBase = (status.signaling_url || "").replace(/\/$/, "");
  state.streams = Object.fromEntries(status.streams.map((s) => [s.kind, s]));
  // The quality of each stream: as last set in this studio (the remembered form, which follows
  // every change made live), else as the server recorded it at going live.
  if (!localStorage.getItem(FORM_KEY)) {
    for (const stream of status.streams) restoreQuality(stream.kind, stream.quality, (saved.bitrates || {})[stream.kind]);
  }
  const pip = status.session.default_pip;
  if (pip) {
    $("#preview-corner").value = pip.corner;
    $("#preview-size").value = String(pip.size_pct);
    updatePreviewLayout();
  }
  $("#golive-form").hidden = true;
  $("#live-panel").hidden = false;
  $("#share-url").value = new URL(`/watch/${encodeURIComponent(state.session.id)}`, location.href).href;
  document.body.dataset.sessionId = state.session.id;
  const onAir = (saved.onAir || []).filter((kind) => state.streams[kind]);
  // A camera (and microphone) needs no click to capture again: it goes back on air at once. A
  // screen does (browsers let a page capture it only in answer to a click): one button for it.
  state.resumeKinds = onAir.filter((kind) => kind === "screen");
  if (state.resumeKinds.length) {
    say(
      $("#studio-msg"),
      `“${state.session.title}” is still live. Press “Resume broadcast” to share your screen again with the same quality.`,
      "info",
    );
    $("#resume").hidden = false;
    $("#resume").focus({ preventScroll: true });
  } else if (onAir.length === 0) {
    say($("#studio-msg"), `“${state.session.title}” is still live. Press Start on a stream to put it on air.`, "info");
  }
  if (onAir.includes("camera")) {
    setOnAir("camera", true).then(() => {
      if (!state.resumeKinds.length && state.media.camera) say($("#studio-msg"), "Back on air.", "ok");
    });
  }
  renderRows();
  showChat();
  state.pollTimer = setTimeout(pollStatus, 500);
}

function restoreQuality(kind, q, kbps) {
  if (!q) return;
  const set = (id, value) => {
    const input = document.getElementById(id);
    if (input && value !== undefined && value !== null && [...(input.options || [{ value: String(value) }])].some((o) => o.value === String(value))) {
      input.value = String(value);
    }
  };
  set(`${kind}-preset`, q.preset);
  set(`${kind}-fps`, q.fps);
  set(`${kind}-hint`, q.content_hint);
  if (kbps) $(`#${kind}-bitrate`).value = kbps;
}

// One click puts every stream that was on air before the reload back on air (capturing a screen
// needs a click: browsers allow it only in answer to one).
async function resumeBroadcast() {
  const kinds = state.resumeKinds || [];
  $("#resume").hidden = true;
  state.resumeKinds = [];
  for (const kind of kinds) await setOnAir(kind, true);
  if (kinds.every((kind) => state.media[kind])) say($("#studio-msg"), "Back on air.", "ok");
  $("#live-title").focus({ preventScroll: true });
}

function finish(message) {
  sessionStorage.removeItem(RESUME_KEY);
  clearTimeout(state.pollTimer);
  for (const kind of KINDS) {
    unpublish(kind);
    release(kind);
  }
  state.session = null;
  state.token = null;
  state.streams = {};
  delete document.body.dataset.sessionId;
  $("#live-panel").hidden = true;
  $("#ended-panel").hidden = false;
  say($("#studio-msg"), message, "info");
}

function confirmEnd() {
  const dialog = $("#end-dialog");
  dialog.returnValue = "";
  dialog.showModal();
}

async function endSession() {
  const button = $("#end-session");
  button.disabled = true;
  try {
    await api.endSession(state.session.id, state.token);
    finish("Session ended.");
  } catch (err) {
    say($("#server-msg"), `Could not end the session: ${err.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

function newSession() {
  $("#ended-panel").hidden = true;
  $("#golive-form").hidden = false;
  $("#go-live").disabled = false;
  for (const kind of KINDS) state.rows[kind] = { conn: "off", error: "", detail: "" };
  say($("#studio-msg"), "");
}

// ---- wiring ------------------------------------------------------------------------------------

function option(value, label, chosen) {
  return new Option(label, String(value), chosen, chosen);
}

// The quality and layout controls, filled from the vocabulary with its defaults chosen.
function setupControls() {
  for (const kind of KINDS) {
    const q = QUALITY[kind];
    $(`#${kind}-preset`).replaceChildren(
      ...Object.entries(q.presets).map(([name, p]) => option(name, p.label, name === q.default_preset)),
    );
    $(`#${kind}-fps`).replaceChildren(...q.fps_steps.map((f) => option(f, `${f} fps`, f === q.default_fps)));
    const hint = document.getElementById(`${kind}-hint`);
    if (hint) {
      hint.replaceChildren(
        ...q.content_hints.map((h) => option(h, HINT_LABELS[h] || h, h === q.default_content_hint)),
      );
    }
  }
  setupPipControls($("#preview-corner"), $("#preview-size"), $("#preview-size-out"));
}

setupControls();

function previewPip() {
  return { corner: $("#preview-corner").value, size_pct: Number($("#preview-size").value) };
}

function updatePreviewLayout() {
  const size = Number($("#preview-size").value);
  $("#preview-size-out").textContent = `${size}%`;
  applyPip($("#preview"), $("#preview-corner").value, size);
}

// While live, the preview's corner and size are the viewers' default layout: send it.
const sendDefaultLayout = debounce(async () => {
  if (!state.session) return;
  try {
    const saved = await api.setDefaultLayout(state.session.id, state.token, previewPip());
    document.body.dataset.defaultPip = `${saved.default_pip.corner} ${saved.default_pip.size_pct}`;
  } catch (err) {
    say($("#server-msg"), `Could not change the viewers' layout: ${err.message}`, "error");
  }
}, 250);

function onPreviewLayout() {
  updatePreviewLayout();
  sendDefaultLayout();
}

$("#screen-capture").addEventListener("click", () => setOnAir("screen", !state.media.screen));
$("#camera-capture").addEventListener("click", () => setOnAir("camera", !state.media.camera));
for (const kind of KINDS) {
  for (const field of ["preset", "fps", "bitrate"]) {
    $(`#${kind}-${field}`).addEventListener("change", () => applyQuality(kind));
  }
}
$("#screen-hint").addEventListener("change", () => applyQuality("screen"));
$("#preview-corner").addEventListener("change", onPreviewLayout);
$("#preview-size").addEventListener("input", onPreviewLayout);
$("#golive-form").addEventListener("submit", goLive);
$("#end-session").addEventListener("click", confirmEnd);
$("#end-dialog").addEventListener("close", () => {
  if ($("#end-dialog").returnValue === "end") endSession();
  else $("#end-session").focus();
});
$("#resume").addEventListener("click", resumeBroadcast);
for (const id of REMEMBERED) {
  $(`#${id}`).addEventListener("input", rememberForm);
  $(`#${id}`).addEventListener("change", rememberForm);
}
$("#camera-mic").addEventListener("change", rememberForm);
for (const id of Object.values(RECEIVER_INPUTS)) $(`#${id}`).addEventListener("input", checkReceiverSoon);
for (const id of ["price-base", "price-screen", "price-camera", "price-bundle"]) {
  $(`#${id}`).addEventListener("input", checkPricing);
}
$("#new-session").addEventListener("click", newSession);
$("#copy-link").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText($("#share-url").value);
    say($("#server-msg"), "Link copied.", "ok");
  } catch {
    $("#share-url").select();
  }
});
window.addEventListener("beforeunload", () => {
  for (const kind of KINDS) unpublish(kind);
});
restoreForm();
updatePreviewLayout();
renderPreview();
resume();
