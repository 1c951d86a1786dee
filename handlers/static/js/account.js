// The broadcaster's account over /api/v1/auth and /api/v1/account. The log-in is an HttpOnly cookie
// the browser sends by itself (same origin); the server checks each write's Origin, so no CSRF token
// has to be carried here.

import { request } from "./api.js";

const AUTH = "/api/v1/auth";
const ACCOUNT = "/api/v1/account";

export const authState = () => request("GET", "/state", { prefix: AUTH });
export const signUp = (body) => request("POST", "/signup", { body, prefix: AUTH });
export const logIn = (body) => request("POST", "/login", { body, prefix: AUTH });
export const logOut = () => request("POST", "/logout", { body: {}, prefix: AUTH });
export const savePix = (pix) => request("PUT", "/pix", { body: { pix }, prefix: ACCOUNT });
export const listTokens = () => request("GET", "/tokens", { prefix: ACCOUNT });
export const createToken = (name) => request("POST", "/tokens", { body: { name }, prefix: ACCOUNT });
export const revokeToken = (id) =>
  request("DELETE", `/tokens/${encodeURIComponent(id)}`, { prefix: ACCOUNT });

// Where to go after logging in: a path on this site only (never `//elsewhere` or a full URL).
export function nextPath(fallback = "/dashboard") {
  const next = new URLSearchParams(location.search).get("next") || "";
  return /^\/(?![/\\])[\w\-./?=&%]*$/.test(next) ? next : fallback;
}
