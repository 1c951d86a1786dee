// Session chat panel for the viewer page and the studio. Mounts into a container element:
//   import { mountChat } from "/static/js/chat.js";
//   mountChat(document.querySelector("#chat-panel"), { sessionId, token, role: "viewer" });
// or, without importing, a page can announce itself and the module mounts into #chat-panel:
//   document.dispatchEvent(new CustomEvent("multistream:chat", { detail: { sessionId, token, role } }));
// Message text is shown with textContent only: it is stored exactly as typed and never parsed as HTML.

import { $, el, say } from "./dom.js";
import { API_PREFIX, request } from "./api.js";

const MAX_CHARS = 500;
const CLOSE_RATE_LIMITED = 4008;
const CLOSE_SESSION_ENDED = 4010;
const CLOSE_TOO_BIG = 1009;
// Close codes after which reconnecting would only repeat the refusal.
const FINAL_CLOSES = new Set([CLOSE_RATE_LIMITED, CLOSE_SESSION_ENDED, CLOSE_TOO_BIG, 1008]);

function ensureStylesheet() {
  if (document.querySelector('link[data-chat-css]')) return;
  document.head.append(el("link", { rel: "stylesheet", href: "/static/css/chat.css", "data-chat-css": true }));
}

function chatPath(sessionId) {
  return `/session/${encodeURIComponent(sessionId)}/chat`;
}

function socketUrl(sessionId, token) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // Browsers cannot set headers on a WebSocket: the token goes in the query (never logged).
  const query = new URLSearchParams({ access_token: token });
  return `${scheme}://${location.host}${API_PREFIX}${chatPath(sessionId)}?${query}`;
}

function timeOf(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function mountChat(panel, { sessionId, token, role = "viewer", name = "" }) {
  ensureStylesheet();
  panel.replaceChildren();
  const log = el("ol", { className: "chat-log", "aria-live": "polite", "aria-label": "Chat messages" });
  const earlier = el("button", { type: "button", className: "chat-earlier", hidden: true, text: "Load earlier messages" });
  const status = el("p", { className: "chat-status", hidden: true });
  const input = el("input", {
    type: "text",
    id: "chat-input",
    maxlength: String(MAX_CHARS),
    autocomplete: "off",
    placeholder: role === "broadcaster" ? "Reply to your viewers" : "Say something",
  });
  const send = el("button", { type: "submit", text: "Send" });
  // Until the server's hello, a message would go nowhere: the form opens with the connection.
  input.disabled = send.disabled = true;
  const form = el("form", { className: "chat-form", "aria-label": "Send a chat message" },
    el("label", { for: "chat-input", className: "visually-hidden", text: "Message" }), input, send);
  panel.append(el("h2", { text: "Chat" }), earlier, log, status, form);

  const state = { ws: null, you: null, nextBefore: null, muted: new Set(), closed: false, retry: 0 };

  function setMutedUi() {
    const mutedMe = state.you && state.you.role === "viewer" && state.muted.has(state.you.viewer_id);
    input.disabled = send.disabled = Boolean(mutedMe);
    if (mutedMe) say(status, "The broadcaster muted you in this chat.", "error");
    for (const button of log.querySelectorAll("button[data-mute]")) {
      const isMuted = state.muted.has(button.dataset.mute);
      button.textContent = isMuted ? "Unmute" : "Mute";
      button.setAttribute("aria-pressed", String(isMuted));
    }
  }

  function item(message) {
    const author = message.author || {};
    const who = author.role === "broadcaster" ? "Broadcaster" : author.name || `Viewer ${String(author.viewer_id || "").slice(-4)}`;
    const li = el("li", { dataset: { id: message.id, seq: message.seq, role: author.role || "" } },
      el("span", { className: "chat-who", text: who }),
      el("time", { datetime: message.created_at, text: timeOf(message.created_at) }),
      el("span", { className: "chat-text", text: message.text }));
    if (state.you && state.you.role === "broadcaster") {
      li.append(el("button", {
        type: "button", className: "chat-action", text: "Delete", "aria-label": `Delete message from ${who}`,
        onclick: () => sendFrame({ type: "delete", id: message.id }),
      }));
      if (author.role === "viewer" && author.viewer_id) {
        li.append(el("button", {
          type: "button", className: "chat-action", dataset: { mute: author.viewer_id }, text: "Mute",
          onclick: () => sendFrame({ type: "mute", viewer_id: author.viewer_id, muted: !state.muted.has(author.viewer_id) }),
        }));
      }
    }
    return li;
  }

  function add(messages, { prepend = false } = {}) {
    const fresh = messages.filter((m) => !log.querySelector(`li[data-id="${CSS.escape(m.id)}"]`)).map(item);
    if (prepend) log.prepend(...fresh);
    else {
      const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      log.append(...fresh);
      if (atBottom) log.scrollTop = log.scrollHeight;
    }
    setMutedUi();
  }

  function sendFrame(frame) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(frame));
  }

  function onEvent(event) {
    switch (event.type) {
      case "hello":
        state.you = event.you;
        state.muted = new Set(event.muted || []);
        log.replaceChildren();
        add(event.history || []);
        state.nextBefore = event.next_before;
        earlier.hidden = !state.nextBefore;
        log.scrollTop = log.scrollHeight;
        if (!input.disabled) say(status, "");
        break;
      case "message":
        add([event.message]);
        break;
      case "deleted": {
        const li = log.querySelector(`li[data-id="${CSS.escape(event.id)}"]`);
        if (li) li.remove();
        break;
      }
      case "mutes":
        state.muted = new Set(event.muted || []);
        if (!state.muted.has(state.you && state.you.viewer_id)) say(status, "");
        setMutedUi();
        break;
      case "error":
        say(status, event.error.code === "rate_limited" ? "You are sending too fast; slow down." : event.error.message, "error");
        break;
      case "ended":
        say(status, "The session has ended.", "info");
        break;
      default:
        break;
    }
  }

  function connect() {
    const ws = new WebSocket(socketUrl(sessionId, token) + (name ? `&name=${encodeURIComponent(name)}` : ""));
    state.ws = ws;
    ws.addEventListener("open", () => { state.retry = 0; });
    ws.addEventListener("message", (msg) => {
      try {
        onEvent(JSON.parse(msg.data));
      } catch {
        /* a malformed frame from a proxy: ignore */
      }
    });
    ws.addEventListener("close", (ev) => {
      if (state.closed) return;
      input.disabled = send.disabled = true;
      if (ev.code === CLOSE_RATE_LIMITED) say(status, "Disconnected: too many messages. Reload to chat again.", "error");
      else if (ev.code === CLOSE_SESSION_ENDED) say(status, "The session has ended.", "info");
      else if (ev.code === CLOSE_TOO_BIG) say(status, "Disconnected: message too large.", "error");
      if (FINAL_CLOSES.has(ev.code)) return;
      const delay = Math.min(30000, 1000 * 2 ** state.retry++);
      say(status, "Chat disconnected; reconnecting…", "info");
      setTimeout(() => { if (!state.closed) connect(); }, delay);
    });
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    if (text.length > MAX_CHARS) {
      say(status, `Messages are at most ${MAX_CHARS} characters.`, "error");
      return;
    }
    sendFrame({ type: "message", text });
    input.value = "";
  });

  earlier.addEventListener("click", async () => {
    if (!state.nextBefore) return;
    try {
      const query = new URLSearchParams({ before: state.nextBefore, limit: "50" });
      const page = await request("GET", `${chatPath(sessionId)}?${query}`, { token });
      add(page.messages, { prepend: true });
      state.nextBefore = page.next_before;
      earlier.hidden = !state.nextBefore;
    } catch (err) {
      say(status, `Could not load earlier messages: ${err.message}`, "error");
    }
  });

  connect();
  return {
    close() {
      state.closed = true;
      if (state.ws) state.ws.close(1000, "page closed");
    },
  };
}

let mounted = null;
document.addEventListener("multistream:chat", (event) => {
  const { sessionId, token, role, name } = event.detail || {};
  const panel = $("#chat-panel");
  if (!panel || !sessionId || !token) return;
  if (mounted) mounted.close();
  mounted = mountChat(panel, { sessionId, token, role, name });
});
