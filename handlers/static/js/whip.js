// WHIP/WHEP links for other software: the studio shows each stream's WHIP URL and the bearer token
// (for OBS: Settings → Stream → Service "WHIP"), the watch page a WHEP URL for another player.
// Kept apart from studio.js/watch.js: it only reads what those pages already store.
import { sessionStatus } from "./api.js";

const $ = (sel) => document.querySelector(sel);

function row(label, value, id) {
  const wrap = document.createElement("div");
  const name = document.createElement("label");
  name.htmlFor = id;
  name.textContent = label;
  const line = document.createElement("div");
  line.className = "share-link";
  const input = document.createElement("input");
  input.type = "text";
  input.readOnly = true;
  input.id = id;
  input.value = value;
  const copy = document.createElement("button");
  copy.type = "button";
  copy.textContent = "Copy";
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(input.value);
      copy.textContent = "Copied";
    } catch {
      input.select();
    }
  });
  line.append(input, copy);
  wrap.append(name, line);
  return wrap;
}

async function baseUrl(sessionId) {
  // Media stays on the instance that ingests the session: signal there when it is another one.
  try {
    const status = await sessionStatus(sessionId);
    return (status.signaling_url || location.origin).replace(/\/$/, "");
  } catch {
    return location.origin;
  }
}

async function renderStudio(sessionId) {
  const saved = JSON.parse(sessionStorage.getItem("multistream.studio") || "null");
  const panel = $("#whip-panel");
  if (!panel || !saved || saved.sessionId !== sessionId) return;
  const base = await baseUrl(sessionId);
  const box = $("#whip-fields");
  box.replaceChildren(
    row("Screen — WHIP server URL", `${base}/api/v1/whip/${sessionId}/screen`, "whip-url-screen"),
    row("Camera — WHIP server URL", `${base}/api/v1/whip/${sessionId}/camera`, "whip-url-camera"),
    row("Bearer token (both streams)", saved.token, "whip-token"),
  );
  panel.hidden = false;
}

async function renderWatch(sessionId) {
  const panel = $("#whep-panel");
  const token = localStorage.getItem(`multistream.viewer.${sessionId}`);
  if (!panel || !token) return;
  const base = await baseUrl(sessionId);
  $("#whep-fields").replaceChildren(
    row("WHEP URL (combined video)", `${base}/api/v1/whep/${sessionId}/composite`, "whep-url"),
    row("Bearer token", token, "whep-token"),
  );
  panel.hidden = false;
}

function watchStudio() {
  const update = () => {
    const sessionId = document.body.dataset.sessionId;
    if (sessionId) renderStudio(sessionId);
    else if ($("#whip-panel")) $("#whip-panel").hidden = true;
  };
  new MutationObserver(update).observe(document.body, { attributeFilter: ["data-session-id"] });
  update();
}

if (document.body.dataset.page === "watch" || location.pathname.startsWith("/watch/")) {
  const sessionId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
  // The viewer token is stored once the page has joined: look again shortly after load.
  for (const delay of [500, 2000, 5000]) setTimeout(() => renderWatch(sessionId), delay);
} else {
  watchStudio();
}
