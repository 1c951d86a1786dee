// REST client for /api/v1/livestream: one `request` that turns the server's error shape into ApiError,
// plus one small function per endpoint. Money stays in integer centavos until `formatBRL` displays it.

export const API_PREFIX = "/api/v1/livestream";
export const PAYMENTS_PREFIX = "/api/v1/payments";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

export async function request(method, path, { token, body, base = "", signal, prefix = API_PREFIX } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  let response;
  try {
    response = await fetch(`${base}${prefix}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      signal,
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "network", "Cannot reach the server. Check your connection.");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const failure = new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || response.statusText || "Request failed",
    );
    failure.field = error.field || null;
    failure.messages = error.messages || null;
    throw failure;
  }
  return data;
}

const id = (value) => encodeURIComponent(value);

export const listSessions = () => request("GET", "/sessions");
export const startSession = (body) => request("POST", "/session/start", { body });
export const sessionStatus = (sessionId) => request("GET", `/session/${id(sessionId)}/status`);
export const joinSession = (sessionId, token) =>
  request("POST", `/session/${id(sessionId)}/join`, { token, body: {} });
export const getPreferences = (sessionId, token) =>
  request("GET", `/session/${id(sessionId)}/preferences`, { token });
export const putPreferences = (sessionId, token, preferences) =>
  request("PUT", `/session/${id(sessionId)}/preferences`, { token, body: preferences });
export const startStream = (sessionId, kind, token) =>
  request("POST", `/session/${id(sessionId)}/streams/${id(kind)}/start`, { token, body: {} });
export const stopStream = (sessionId, kind, token) =>
  request("POST", `/session/${id(sessionId)}/streams/${id(kind)}/stop`, { token, body: {} });
export const endSession = (sessionId, token) =>
  request("POST", `/session/${id(sessionId)}/end`, { token, body: {} });
export const getOrder = (orderId, token) =>
  request("GET", `/orders/${id(orderId)}`, { token, prefix: PAYMENTS_PREFIX });
export const checkReceiver = (fields, signal) =>
  request("POST", "/pix/receiver", { body: fields, prefix: PAYMENTS_PREFIX, signal });
export const setDefaultLayout = (sessionId, token, pip) =>
  request("PUT", `/session/${id(sessionId)}/layout`, { token, body: { pip } });
export const listRecordings = (sessionId, token) =>
  request("GET", `/session/${id(sessionId)}/recordings`, { token });
// A <video src> or download link cannot send headers: the token goes in the query.
export const recordingUrl = (sessionId, recordingId, token) =>
  `${API_PREFIX}/session/${id(sessionId)}/recordings/${id(recordingId)}?access_token=${encodeURIComponent(token)}`;

// The message of an error for the page's language: the server's per-language text when it has
// one (`messages`), else its message.
export function errorText(err) {
  const messages = err && err.messages;
  if (!messages) return err.message;
  const lang = (navigator.language || "en").toLowerCase();
  return (lang.startsWith("pt") ? messages["pt-BR"] : messages.en) || err.message;
}

// Signaling goes to the instance that ingests the session (`signaling_url`, empty = this origin).
// So does the quality of a connection: that instance holds it.
export const getQualities = (sessionId, token, base = "") =>
  request("GET", `/session/${id(sessionId)}/quality`, { token, base });
export const putQuality = (sessionId, token, pcId, quality, base = "") =>
  request("PUT", `/session/${id(sessionId)}/quality`, { token, body: { pc_id: pcId, quality }, base });
export const streamOffer = (streamId, token, offer, base = "") =>
  request("POST", `/stream/${id(streamId)}/signal/offer`, { token, body: offer, base });
export const compositeOffer = (sessionId, token, offer, base = "") =>
  request("POST", `/session/${id(sessionId)}/composite/signal/offer`, { token, body: offer, base });

const brl = new Intl.NumberFormat("pt-BR", { style: "currency", currency: "BRL" });

export function formatBRL(centavos) {
  return brl.format((Number(centavos) || 0) / 100);
}

// "12,50" or "12.50" (what people type) to integer centavos; null when it is not an amount.
export function parseBRL(text) {
  const clean = String(text ?? "").trim().replace(/^R\$\s*/, "");
  if (clean === "") return 0;
  const match = /^(\d{1,6})(?:[.,](\d{1,2}))?$/.exec(clean);
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] || "0").padEnd(2, "0"));
}

export const KIND_LABELS = { screen: "Screen", camera: "Camera" };
