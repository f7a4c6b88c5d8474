/*
 * lanpos shared fetch helper (till and back-office pages).
 *
 *   api.get("/api/products", {search: "milk"})       -> parsed JSON
 *   api.post("/api/sales", body)                      -> parsed JSON
 *   api.login(username, pin) / api.logout()
 *
 * JSON in, JSON out. The session token lives in sessionStorage and is sent as
 * "Authorization: Bearer <token>". Every failure (HTTP error, bad JSON, network
 * down, timeout) is thrown as an ApiError with the server's stable
 * {code, message, details} plus the HTTP status (0 when no answer arrived).
 *
 * Plain script, no build step: exposes window.LanposApi (alias window.api).
 */
(function (global) {
  "use strict";

  const TOKEN_KEY = "lanpos.token";
  const CSRF_KEY = "lanpos.csrf";
  const USER_KEY = "lanpos.user";
  const DEFAULT_TIMEOUT_MS = 10000;

  class ApiError extends Error {
    constructor(code, message, details, status) {
      super(message || code);
      this.name = "ApiError";
      this.code = code || "ERROR";
      this.details = details || {};
      this.status = status || 0;
    }

    /** True when the request may have reached the server but no answer came back:
     *  retrying is only safe with an idempotency key (client_ref). */
    get uncertain() {
      return this.status === 0 || this.status >= 500;
    }
  }

  function storage() {
    try {
      return global.sessionStorage;
    } catch (e) {
      return null;
    }
  }

  function getToken() {
    const s = storage();
    return s ? s.getItem(TOKEN_KEY) : null;
  }

  function getUser() {
    const s = storage();
    const raw = s ? s.getItem(USER_KEY) : null;
    if (!raw) return null;
    try {
      return JSON.parse(raw);
    } catch (e) {
      return null;
    }
  }

  function setSession(login) {
    const s = storage();
    if (!s) return;
    if (login && login.token) {
      s.setItem(TOKEN_KEY, login.token);
      if (login.csrf_token) s.setItem(CSRF_KEY, login.csrf_token);
      else s.removeItem(CSRF_KEY);
      if (login.user) s.setItem(USER_KEY, JSON.stringify(login.user));
    } else {
      s.removeItem(TOKEN_KEY);
      s.removeItem(CSRF_KEY);
      s.removeItem(USER_KEY);
    }
  }

  function clearSession() {
    setSession(null);
  }

  function withQuery(path, query) {
    if (!query) return path;
    const params = new URLSearchParams();
    Object.keys(query).forEach(function (k) {
      const v = query[k];
      if (v !== undefined && v !== null && v !== "") params.append(k, String(v));
    });
    const qs = params.toString();
    if (!qs) return path;
    return path + (path.indexOf("?") >= 0 ? "&" : "?") + qs;
  }

  // Listeners told about every 401 from an authenticated call (session expired).
  const unauthorizedListeners = [];

  /**
   * request(method, path, {body, query, token, timeoutMs, headers, credentials, sessionHook})
   * token: override the stored token (null = send none); credentials: fetch
   * credentials mode ("omit" keeps a side login from touching this page's cookies).
   */
  async function request(method, path, opts) {
    opts = opts || {};
    const headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    const token = opts.token !== undefined ? opts.token : getToken();
    if (token) headers.Authorization = "Bearer " + token;
    if (method !== "GET" && method !== "HEAD") {
      const s = storage();
      const csrf = s ? s.getItem(CSRF_KEY) : null;
      if (csrf && opts.token === undefined) headers["X-CSRF-Token"] = csrf;
    }
    let body;
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(opts.body);
    }
    const controller = typeof AbortController !== "undefined" ? new AbortController() : null;
    const timeoutMs = opts.timeoutMs || DEFAULT_TIMEOUT_MS;
    const timer = controller ? setTimeout(function () { controller.abort(); }, timeoutMs) : null;
    let resp;
    try {
      resp = await fetch(withQuery(path, opts.query), {
        method: method,
        headers: headers,
        body: body,
        credentials: opts.credentials || "same-origin",
        cache: "no-store",
        signal: controller ? controller.signal : undefined,
      });
    } catch (e) {
      const timedOut = e && e.name === "AbortError";
      throw new ApiError(
        timedOut ? "TIMEOUT" : "NETWORK_ERROR",
        timedOut ? "The till server did not answer in time." : "Cannot reach the till server.",
        { cause: String(e && e.message ? e.message : e) },
        0
      );
    } finally {
      if (timer) clearTimeout(timer);
    }

    let data = null;
    const text = await resp.text();
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (e) {
        data = null;
      }
    }
    if (!resp.ok || (data && data.success === false)) {
      const err = data && data.error ? data.error : {};
      const apiErr = new ApiError(
        err.code || "HTTP_" + resp.status,
        err.message || resp.statusText || "Request failed",
        err.details,
        resp.status
      );
      // A 401 on a call made with the page's session means the session is gone;
      // callers whose 401 may concern something else (a manager PIN sent as
      // "approver") pass sessionHook: false and decide themselves.
      if (resp.status === 401 && token && opts.token === undefined && opts.sessionHook !== false) {
        unauthorizedListeners.forEach(function (fn) {
          try { fn(apiErr); } catch (e) { /* listener errors never mask the API error */ }
        });
      }
      throw apiErr;
    }
    if (text && data === null) {
      throw new ApiError("BAD_RESPONSE", "The server sent something that is not JSON.", {}, resp.status);
    }
    return data === null ? {} : data;
  }

  async function login(username, pin) {
    // No stored token on login: a stale one must not be mistaken for a session.
    const data = await request("POST", "/api/auth/login", {
      body: { username: username, pin: pin },
      token: null,
    });
    setSession(data);
    return data;
  }

  async function logout() {
    const token = getToken();
    clearSession();
    if (!token) return;
    try {
      await request("POST", "/api/auth/logout", { token: token, timeoutMs: 3000 });
    } catch (e) {
      /* the session is gone locally either way */
    }
  }

  const api = {
    ApiError: ApiError,
    request: request,
    get: function (path, query, opts) {
      return request("GET", path, Object.assign({}, opts || {}, { query: query }));
    },
    post: function (path, body, opts) {
      return request("POST", path, Object.assign({}, opts || {}, { body: body }));
    },
    put: function (path, body, opts) {
      return request("PUT", path, Object.assign({}, opts || {}, { body: body }));
    },
    patch: function (path, body, opts) {
      return request("PATCH", path, Object.assign({}, opts || {}, { body: body }));
    },
    del: function (path, opts) {
      return request("DELETE", path, opts);
    },
    login: login,
    logout: logout,
    getToken: getToken,
    getUser: getUser,
    setSession: setSession,
    clearSession: clearSession,
    onUnauthorized: function (fn) { unauthorizedListeners.push(fn); },
    /** uuid4; crypto.randomUUID only exists in secure contexts (https or localhost),
     *  a till opened over plain http on the LAN still gets a random id. */
    uuid: function () {
      if (global.crypto && typeof global.crypto.randomUUID === "function") {
        return global.crypto.randomUUID();
      }
      const b = new Uint8Array(16);
      global.crypto.getRandomValues(b);
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      const h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
      return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
    },
  };

  global.LanposApi = api;
  global.api = api;
})(window);
