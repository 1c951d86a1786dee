// Log-in and sign-up page: log in, or (while the server takes sign-ups) create the account.

import { authState, logIn, nextPath, signUp } from "./account.js";
import { $, say } from "./dom.js";

const MESSAGES = {
  bad_credentials: "Wrong username or password.",
  account_disabled: "This account is disabled. Ask the server's operator.",
  username_taken: "That username is taken; pick another.",
  signup_closed: "Sign-up is closed on this server. Ask its operator for an account.",
  rate_limited: "Too many attempts. Wait a minute and try again.",
};

function explain(err) {
  return MESSAGES[err.code] || err.message || "Something went wrong.";
}

async function submit(form, button, action, body) {
  button.disabled = true;
  say($("#login-msg"), "");
  try {
    await action(body);
    location.assign(nextPath());
  } catch (err) {
    say($("#login-msg"), explain(err), "error");
    button.disabled = false;
  }
}

async function init() {
  let state = { user: null, signup_open: false };
  try {
    state = await authState();
  } catch (err) {
    say($("#login-msg"), `Cannot reach the server: ${err.message}`, "error");
  }
  if (state.user) {
    location.replace(nextPath());
    return;
  }
  const signup = $("#signup-form");
  if (state.signup_open) {
    signup.hidden = false;
    // No account yet: sign-up is what this visitor needs; the log-in form stays for later visits.
    $("#signup-first").hidden = false;
    $("#login-title").textContent = "Welcome";
  }
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submit(event.target, $("#login-submit"), logIn, {
      username: $("#login-username").value.trim(),
      password: $("#login-password").value,
    });
  });
  signup.addEventListener("submit", (event) => {
    event.preventDefault();
    const body = {
      username: $("#signup-username").value.trim(),
      password: $("#signup-password").value,
    };
    const display = $("#signup-display").value.trim();
    if (display) body.display_name = display;
    if (body.password.length < 8) {
      say($("#login-msg"), "The password needs at least 8 characters.", "error");
      return;
    }
    submit(event.target, $("#signup-submit"), signUp, body);
  });
  document.body.dataset.ready = "1";
}

init();
