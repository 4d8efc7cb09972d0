// Shared by the board and the study page: the token (sessionStorage), authenticated fetches,
// accessible traffic lights and the live stream (SSE).
"use strict";

const MDD = (() => {
  const KEY = "mdd-token";
  const LIGHTS = {
    RED: "Rojo / red", YELLOW: "Amarillo / yellow", GREEN: "Verde / green", NONE: "Sin triaje / not triaged",
  };

  class AuthError extends Error {}

  function token() { return sessionStorage.getItem(KEY); }

  /** fetch with the stored token; a 401 forgets it and shows the sign-in form again. */
  async function api(path, options = {}) {
    const headers = Object.assign({}, options.headers || {}, { Authorization: "Bearer " + token() });
    const response = await fetch(path, Object.assign({}, options, { headers }));
    if (response.status === 401) {
      sessionStorage.removeItem(KEY);
      showLogin("Token inválido o vencido / invalid or expired token");
      throw new AuthError("401");
    }
    return response;
  }

  /** A traffic light: colour plus text, announced by screen readers. */
  function light(kind, value) {
    const key = value || "NONE";
    const wrapper = document.createElement("span");
    wrapper.className = "light-cell";
    wrapper.dataset.light = key;
    const dot = document.createElement("span");
    dot.className = "light light-" + key;
    dot.setAttribute("role", "img");
    dot.setAttribute("aria-label", kind + ": " + (LIGHTS[key] || key));
    const text = document.createElement("span");
    text.textContent = LIGHTS[key] || key;
    wrapper.append(dot, text);
    return wrapper;
  }

  /** Server times without a zone are UTC. */
  function when(value) {
    const date = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : value + "Z");
    return date.toLocaleString("es-MX");
  }

  /** Live changes; EventSource cannot send headers, so the token goes as ?access_token= (this route only). */
  function stream(onStudy) {
    const status = document.getElementById("live");
    const source = new EventSource("/events?access_token=" + encodeURIComponent(token()));
    source.addEventListener("ready", () => {
      if (status) { status.textContent = "En vivo / live"; status.classList.add("on"); }
    });
    source.addEventListener("study", (e) => onStudy(JSON.parse(e.data)));
    // The server ends the stream once the token is deactivated or expires: sign in again, do not reconnect.
    source.addEventListener("closed", (e) => {
      source.close();
      sessionStorage.removeItem(KEY);
      showLogin(JSON.parse(e.data).reason);
    });
    source.onerror = () => {
      if (status) { status.textContent = "Reconectando… / reconnecting…"; status.classList.remove("on"); }
    };
    return source;
  }

  let started = null;
  function showLogin(message) {
    document.getElementById("login").hidden = false;
    document.getElementById("content").hidden = true;
    document.getElementById("error").textContent = message || "";
  }

  async function check() {
    try {
      const me = await api("/auth/me");
      if (!me.ok) throw new Error(String(me.status));
      enter(await me.json());
    } catch (err) {
      if (!(err instanceof AuthError)) showLogin("No se pudo entrar / could not sign in: " + err.message);
    }
  }

  /** Sign in once — user and password (a session token from /auth/token), or an integration's API key —
   *  checked with /auth/me, then run start(). */
  function signIn(start) {
    started = start;
    document.getElementById("password-login").addEventListener("submit", async (e) => {
      e.preventDefault();
      const body = new URLSearchParams({
        username: document.getElementById("username").value.trim(), password: document.getElementById("password").value,
      });
      const response = await fetch("/auth/token", { method: "POST", body });
      if (!response.ok) {
        showLogin(response.status === 401 ? "Usuario o contraseña incorrectos / wrong user or password"
          : "No se pudo entrar / could not sign in: " + response.status);
        return;
      }
      sessionStorage.setItem(KEY, (await response.json()).access_token);
      document.getElementById("password").value = "";
      await check();
    });
    document.getElementById("key-login").addEventListener("submit", async (e) => {
      e.preventDefault();
      sessionStorage.setItem(KEY, document.getElementById("token").value.trim());
      await check();
    });
    if (token()) {
      api("/auth/me").then((r) => r.json()).then(enter).catch(() => {});
    } else {
      showLogin("");
    }
  }

  function enter(me) {
    document.getElementById("error").textContent = "";
    document.getElementById("login").hidden = true;
    document.getElementById("content").hidden = false;
    const who = document.getElementById("who");
    if (who) who.textContent = me.name + " (" + me.role + ")";
    started(me);
  }

  function signOut() { sessionStorage.removeItem(KEY); location.reload(); }

  return { api, light, when, stream, signIn, signOut, token, AuthError, LIGHTS };
})();

// Wired here rather than inline: the board's Content Security Policy runs scripts from files only.
document.getElementById("signout")?.addEventListener("click", MDD.signOut);
