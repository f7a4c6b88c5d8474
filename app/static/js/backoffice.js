/*
 * lanpos back office: shared shell for every /backoffice/* page.
 * Plain JS, no build step. Uses api.js (window.LanposApi) for the JSON API and the
 * node's own Socket.IO client for live updates.
 *
 * Login is the till's PIN pad with the same test hooks (user-<username>,
 * pin-key-N, pin-enter). The session token lives in sessionStorage (api.js), so
 * moving between back-office pages in one tab keeps the login. A cashier gets a
 * "managers only" screen, and a manager an "admins only" one on a page whose body says
 * data-min-role="admin" (Users); the API refuses them anyway (403).
 *
 * A page script calls BO.start(function (user) {...}) and subscribes to live
 * events with BO.on(name, fn). Everything money is integer cents.
 */
(function (global) {
  "use strict";

  const api = global.LanposApi;
  const $ = function (id) { return document.getElementById(id); };
  const RANK = { cashier: 1, manager: 2, admin: 3 };

  const S = {
    config: { shop_name: "lanpos", device_id: null, currency: "EUR" },
    users: [],
    user: null,
    pinUser: null,
    pin: "",
    lockedUntil: 0,
    lockedOutUser: null,
    socket: null,
    pageInit: null,
    started: false,
  };
  const listeners = {};  // socket event -> [fn]

  // ------------------------------------------------------------------ DOM helpers
  function el(tag, attrs, children) {
    const n = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        const v = attrs[k];
        if (v === null || v === undefined || v === false) return;
        if (k === "text") n.textContent = v;
        else if (k === "class") n.className = v;
        else if (k.slice(0, 2) === "on" && typeof v === "function") n.addEventListener(k.slice(2), v);
        else if (k === "dataset") Object.keys(v).forEach(function (d) { n.dataset[d] = v[d]; });
        else n.setAttribute(k, v === true ? "" : String(v));
      });
    }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      n.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    });
    return n;
  }

  function show(node, on) {
    if (node) node.hidden = !on;
  }

  // ------------------------------------------------------------------ formatting
  const SYMBOLS = { EUR: "€", USD: "$", GBP: "£", CHF: "CHF ", PLN: "zł " };

  function money(cents) {
    if (typeof cents !== "number" || !isFinite(cents)) return "–";
    const sym = SYMBOLS[S.config.currency] || (S.config.currency + " ");
    const neg = cents < 0;
    const abs = Math.abs(Math.round(cents));
    const major = String(Math.floor(abs / 100)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
    const minor = abs % 100;
    return (neg ? "-" : "") + sym + major + "." + (minor < 10 ? "0" : "") + minor;
  }

  /** "12.3" / "12,30" / "€12" -> 1230 cents, exactly (string arithmetic, no floats). null if not money. */
  function parseMoney(text) {
    const t = String(text || "").trim().replace(/[€$£\s]/g, "").replace(",", ".");
    const m = /^(\d{1,8})(?:\.(\d{0,2}))?$/.exec(t);
    if (!m) return null;
    return parseInt(m[1], 10) * 100 + parseInt(((m[2] || "") + "00").slice(0, 2), 10);
  }

  function centsToInput(cents) {
    return (Math.floor(cents / 100)) + "." + String(cents % 100).padStart(2, "0");
  }

  function pad2(n) { return (n < 10 ? "0" : "") + n; }

  function fmtTime(ms) {
    if (!ms) return "–";
    const d = new Date(ms);
    return pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
  }

  function fmtDate(ms) {
    const d = new Date(ms);
    return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate());
  }

  function fmtDateTime(ms) {
    if (!ms) return "–";
    const today = fmtDate(Date.now());
    const day = fmtDate(ms);
    return (day === today ? "" : day + " ") + fmtTime(ms);
  }

  function fmtAgo(ms) {
    if (!ms) return "never";
    const s = (Date.now() - ms) / 1000;
    if (s < 0.05) return "just now";
    if (s < 10) return s.toFixed(1) + " s ago";
    if (s < 120) return Math.round(s) + " s ago";
    if (s < 7200) return Math.round(s / 60) + " min ago";
    return fmtDateTime(ms);
  }

  function rateLabel(bp) {
    const n = Number(bp) || 0;
    return (n % 100 === 0 ? String(n / 100) : (n / 100).toFixed(2)) + " %";
  }

  function errorText(e) {
    if (!e) return "Something went wrong.";
    if (e.code === "NETWORK_ERROR" || e.code === "TIMEOUT") return "This node is not answering. Check it is running.";
    if (e.code === "FORBIDDEN") return "Not allowed: " + (e.message || "this needs a manager.");
    if (e.code === "MASTER_UNAVAILABLE") return "No master reachable right now; try again in a moment.";
    let msg = e.message || e.code || "Error";
    msg = msg.charAt(0).toUpperCase() + msg.slice(1);
    return /[.!?]$/.test(msg) ? msg : msg + ".";
  }

  function toast(text, kind, ms) {
    // The same notice can arrive twice (relayed by this node and by the master): show it once.
    const same = Array.prototype.find.call($("toasts").children, function (x) { return x.textContent === text; });
    if (same) return same;
    const t = el("div", { class: "toast toast-" + (kind || "info"), role: kind === "error" ? "alert" : "status", text: text });
    t.addEventListener("click", function () { t.remove(); });
    const box = $("toasts");
    box.appendChild(t);
    while (box.children.length > 4) box.firstChild.remove();
    const life = ms === 0 ? 0 : ms || (kind === "error" || kind === "warn" ? 8000 : 3500);
    if (life) setTimeout(function () { t.remove(); }, life);
    return t;
  }

  function debounce(fn, ms) {
    let timer = null;
    return function () {
      const args = arguments;
      clearTimeout(timer);
      timer = setTimeout(function () { fn.apply(null, args); }, ms);
    };
  }

  // ------------------------------------------------------------------ dialogs
  function openDialog(id) {
    const d = $(id);
    if (!d) return;
    show($("overlay"), true);
    show(d, true);
    const first = d.querySelector("input:not([type=hidden]):not([disabled]):not([readonly]), select, textarea");
    if (first) setTimeout(function () { first.focus(); if (first.select) try { first.select(); } catch (e) { /* */ } }, 0);
  }

  function closeDialog(id) {
    const d = $(id);
    if (d) show(d, false);
    if (!document.querySelector(".dialog:not([hidden])")) show($("overlay"), false);
  }

  function wireDialogs() {
    document.querySelectorAll(".dialog [data-close]").forEach(function (b) {
      b.addEventListener("click", function () { closeDialog(b.closest(".dialog").id); });
    });
    $("overlay").addEventListener("click", function () {
      document.querySelectorAll(".dialog:not([hidden])").forEach(function (d) { closeDialog(d.id); });
    });
    document.addEventListener("keydown", function (ev) {
      if (ev.key !== "Escape") return;
      const open = document.querySelectorAll(".dialog:not([hidden])");
      if (open.length) closeDialog(open[open.length - 1].id);
    });
  }

  // ------------------------------------------------------------------ PIN pad login
  function buildPinPad(container, onDigit, onBack, onEnter) {
    container.textContent = "";
    ["1", "2", "3", "4", "5", "6", "7", "8", "9", "back", "0", "enter"].forEach(function (k) {
      let b;
      if (k === "back") {
        b = el("button", { type: "button", class: "key key-back", "aria-label": "Delete", text: "⌫", "data-testid": "pin-back" });
        b.addEventListener("click", onBack);
      } else if (k === "enter") {
        b = el("button", { type: "button", class: "key key-enter", text: "Enter", "data-testid": "pin-enter" });
        b.addEventListener("click", onEnter);
      } else {
        b = el("button", { type: "button", class: "key", text: k, "data-testid": "pin-key-" + k });
        b.addEventListener("click", function () { onDigit(k); });
      }
      container.appendChild(b);
    });
  }

  function renderDots(n) {
    const box = $("pin-dots");
    box.textContent = "";
    for (let i = 0; i < Math.max(4, n); i++) box.appendChild(el("span", { class: "dot" + (i < n ? " on" : "") }));
  }

  async function loadUsers() {
    try {
      const data = await api.get("/api/users", null, { token: null });
      S.users = data.users || [];
      $("login-status").textContent = "";
    } catch (e) {
      S.users = [];
      $("login-status").textContent = "Cannot load users: " + errorText(e) + " Retrying…";
      setTimeout(loadUsers, 2000);
    }
    renderUserTiles();
  }

  function renderUserTiles() {
    const box = $("login-users");
    box.textContent = "";
    // Without a login the till tells no one who is a manager: name tiles only.
    const users = S.users.slice().sort(function (a, b) {
      return String(a.display_name).localeCompare(String(b.display_name));
    });
    users.forEach(function (u) {
      const initials = (u.display_name || u.username).split(/\s+/).map(function (w) { return w[0]; }).join("").slice(0, 2).toUpperCase();
      const b = el("button", { type: "button", class: "user-tile", role: "listitem", "data-testid": "user-" + u.username }, [
        el("span", { class: "avatar", text: initials }),
        el("span", { class: "user-name", text: u.display_name || u.username }),
      ]);
      b.addEventListener("click", function () { pickUser(u); });
      box.appendChild(b);
    });
  }

  function showScreen(which) {
    document.body.classList.toggle("is-locked", which !== "app");
    show($("bo-login"), which === "login");
    show($("bo-denied"), which === "denied");
    show($("bo-app"), which === "app");
  }

  function showLogin(message) {
    showScreen("login");
    S.pinUser = null;
    S.pin = "";
    show($("login-users"), true);
    show($("login-pin"), false);
    $("login-sub").textContent = message || (minRole() === "admin" ? "Tap your name (admin)" : "Tap your name (manager or admin)");
    if (!S.users.length) loadUsers();
  }

  function pickUser(u) {
    S.pinUser = u;
    S.pin = "";
    show($("login-users"), false);
    show($("login-pin"), true);
    $("pin-who").textContent = u.display_name || u.username;
    $("login-sub").textContent = "Enter your PIN";
    $("pin-msg").textContent = "";
    renderDots(0);
  }

  function lockedOut() {
    return S.lockedOutUser && S.pinUser && S.lockedOutUser === S.pinUser.username && Date.now() < S.lockedUntil;
  }

  async function pinEnter() {
    if (!S.pinUser) return;
    if (lockedOut()) {
      $("pin-msg").textContent = "Locked after too many wrong PINs. Try again in " + Math.ceil((S.lockedUntil - Date.now()) / 1000) + " s.";
      return;
    }
    if (!S.pin) { $("pin-msg").textContent = "Enter your PIN first."; return; }
    const username = S.pinUser.username;
    const pin = S.pin;
    S.pin = "";
    renderDots(0);
    $("pin-msg").textContent = "Checking…";
    try {
      const data = await api.login(username, pin);
      $("pin-msg").textContent = "";
      onLoggedIn(data.user || S.pinUser);
    } catch (e) {
      const d = e.details || {};
      if (e.code === "LOCKED") {
        S.lockedOutUser = username;
        S.lockedUntil = Date.now() + 1000 * (d.retry_after_s || 60);
        $("pin-msg").textContent = "Locked after too many wrong PINs. Try again in " + (d.retry_after_s || 60) + " s.";
      } else if (e.code === "UNAUTHORIZED") {
        const left = d.attempts_left;
        $("pin-msg").textContent = "Wrong PIN." + (typeof left === "number" ? " " + left + " attempt" + (left === 1 ? "" : "s") + " left before lock-out." : "");
      } else {
        $("pin-msg").textContent = errorText(e);
      }
    }
  }

  // The page's lowest role (body data-min-role): "manager", or "admin" for the Users page.
  function minRole() { return RANK[document.body.dataset.minRole] ? document.body.dataset.minRole : "manager"; }

  function onLoggedIn(user) {
    S.user = user;
    const need = minRole();
    if ((RANK[user.role] || 0) < RANK[need]) {
      const admins = need === "admin";
      $("denied-title").textContent = admins ? "Admins only" : "Managers only";
      $("denied-text").textContent = (user.display_name || user.username) + " is logged in as a " + user.role +
        (admins ? ". This page needs an admin login." : ". The back office needs a manager or admin login.");
      $("denied-hint").textContent = admins
        ? "Only an admin can add users, reset PINs or deactivate accounts. Ask an admin to log in here."
        : "Cashiers sell at the till. Ask a manager to log in here.";
      showScreen("denied");
      return;
    }
    document.querySelectorAll(".nav-link[data-min-role]").forEach(function (a) {
      a.hidden = (RANK[a.dataset.minRole] || RANK.manager) > (RANK[user.role] || 0);
    });
    showScreen("app");
    $("who").textContent = user.display_name || user.username;
    $("who").title = user.role;
    connectSocket();
    refreshConflictBadge();
    if (!S.started && S.pageInit) {
      S.started = true;
      try {
        S.pageInit(user);
      } catch (e) {
        toast("This page failed to start: " + (e && e.message ? e.message : e), "error", 0);
      }
    } else {
      emitLocal("relogin", user);
    }
  }

  async function logout() {
    disconnectSocket();
    await api.logout();
    S.user = null;
    showLogin();
  }

  async function loadConfig() {
    try {
      const c = await api.get("/api/config/shop", null, { token: null });
      Object.assign(S.config, c);
    } catch (e) { /* defaults */ }
    const name = S.config.shop_name || "lanpos";
    $("shop-name").textContent = name;
    $("login-shop").textContent = name;
    $("node-name").textContent = S.config.device_id != null ? "till " + S.config.device_id : "";
    document.title = name + " · back office · " + (document.querySelector(".nav-link.is-active") || { textContent: "" }).textContent.trim();
  }

  // ------------------------------------------------------------------ live updates
  function emitLocal(name, data) {
    (listeners[name] || []).forEach(function (fn) {
      try { fn(data); } catch (e) { console.error("listener " + name, e); }
    });
  }

  function on(name, fn) {
    (listeners[name] = listeners[name] || []).push(fn);
    if (S.socket && ["connect", "disconnect", "relogin"].indexOf(name) < 0) S.socket.on(name, fn);
  }

  const SOCKET_EVENTS = ["stock_changed", "critical_event", "conflict", "conflict_resolved", "product_changed",
    "sale_created", "sale_changed", "master_changed", "cluster_status", "catalog_reloaded", "user_changed"];

  function setLive(state, text) {
    const pill = $("live");
    pill.dataset.state = state;
    pill.textContent = text;
  }

  function connectSocket() {
    if (typeof global.io !== "function") {
      setLive("off", "no live updates");
      return;
    }
    if (S.socket) {
      if (!S.socket.connected) S.socket.connect();
      return;
    }
    const sock = global.io({
      path: "/socket.io",
      auth: function (cb) { cb({ token: api.getToken() }); },
      transports: ["websocket", "polling"],
      reconnection: true,
      reconnectionDelay: 300,
      reconnectionDelayMax: 2000,
      timeout: 5000,
    });
    S.socket = sock;
    let ever = false;
    sock.on("connect", function () {
      setLive("on", "live");
      emitLocal("connect", { again: ever });
      ever = true;
    });
    sock.on("disconnect", function () {
      setLive("off", "reconnecting…");
      emitLocal("disconnect", {});
    });
    sock.on("connect_error", function () { setLive("off", "not live"); });
    SOCKET_EVENTS.forEach(function (name) {
      (listeners[name] || []).forEach(function (fn) { sock.on(name, fn); });
    });
    sock.on("conflict", refreshConflictBadge);
    sock.on("conflict_resolved", refreshConflictBadge);
    sock.on("critical_event", function (m) {
      if (!m || document.body.dataset.page === "stock") return;
      if (m.kind === "oversold") toast((m.name || m.sku) + " is oversold (" + m.stock + ").", "warn");
    });
  }

  function disconnectSocket() {
    if (S.socket) {
      S.socket.removeAllListeners();
      S.socket.disconnect();
      S.socket = null;
    }
  }

  async function refreshConflictBadge() {
    const badge = $("nav-conflicts-count");
    if (!badge) return;
    try {
      const data = await api.get("/api/conflicts", { status: "open" });
      const n = (data.conflicts || []).length;
      badge.textContent = n >= 500 ? "500+" : String(n);
      show(badge, n > 0);
    } catch (e) { /* the badge is a hint */ }
  }

  // ------------------------------------------------------------------ start
  async function start(pageInit) {
    S.pageInit = pageInit;
    buildPinPad($("pin-pad"), function (d) {
      if (S.pin.length < 12) { S.pin += d; renderDots(S.pin.length); $("pin-msg").textContent = ""; }
    }, function () {
      S.pin = S.pin.slice(0, -1);
      renderDots(S.pin.length);
    }, pinEnter);
    $("pin-back").addEventListener("click", function () { showLogin(); });
    $("btn-logout").addEventListener("click", logout);
    $("denied-switch").addEventListener("click", logout);
    document.addEventListener("keydown", function (ev) {
      if (!S.pinUser || $("bo-login").hidden || $("login-pin").hidden) return;
      if (/^[0-9]$/.test(ev.key)) { if (S.pin.length < 12) { S.pin += ev.key; renderDots(S.pin.length); } }
      else if (ev.key === "Backspace") { S.pin = S.pin.slice(0, -1); renderDots(S.pin.length); }
      else if (ev.key === "Enter") pinEnter();
    });
    wireDialogs();
    api.onUnauthorized(function () {
      disconnectSocket();
      S.user = null;
      showLogin("Your session ended. Log in again.");
    });
    await loadConfig();
    if (api.getToken()) {
      try {
        const me = await api.get("/api/auth/me");
        onLoggedIn(me.user);
        return;
      } catch (e) {
        api.clearSession();
      }
    }
    showLogin();
    loadUsers();
  }

  global.BO = {
    api: api, $: $, el: el, show: show, S: S,
    money: money, parseMoney: parseMoney, centsToInput: centsToInput, rateLabel: rateLabel,
    fmtTime: fmtTime, fmtDate: fmtDate, fmtDateTime: fmtDateTime, fmtAgo: fmtAgo,
    errorText: errorText, toast: toast, debounce: debounce,
    openDialog: openDialog, closeDialog: closeDialog,
    on: on, start: start, refreshConflictBadge: refreshConflictBadge,
    isAdmin: function () { return S.user && S.user.role === "admin"; },
  };
})(window);
