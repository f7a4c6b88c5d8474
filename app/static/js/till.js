/*
 * lanpos cashier touchscreen (/till). Plain JS, no build step, no framework.
 *
 * Talks only to this till's own node: the JSON API through api.js and the
 * node's Socket.IO for live stock and cluster state. Money is integer cents
 * everywhere; it is formatted only when put on screen.
 *
 * The cart total shown here is a preview computed with the same rules as the
 * server (app/services/pricing.py); the receipt always shows the server's
 * numbers.
 */
(function () {
  "use strict";

  const api = window.LanposApi;
  const $ = function (id) { return document.getElementById(id); };

  // ------------------------------------------------------------------ state
  const S = {
    config: { shop_name: "lanpos", device_id: null, currency: "EUR", idle_lock_s: 300 },
    users: [],
    staff: [],                  // users with roles, once logged in (approver dialog)
    user: null,                 // {username, display_name, role} when logged in
    pinUser: null,              // user picked on the login screen
    pin: "",
    lockedUntil: 0,             // ms timestamp while the picked user is locked out
    lockedOutUser: null,
    lockPrevUser: null,         // who was logged in when the screen locked
    products: new Map(),        // sku -> product
    order: [],                  // skus in catalog order
    byBarcode: new Map(),
    categories: [],
    category: "",
    search: "",
    cart: [],                   // [{sku, qty, discount_cents}]
    cartDiscount: 0,
    approver: null,             // {username, pin} of the manager who approved discounts
    flagged: new Set(),         // skus in the cart that are sold out / refused
    pay: { mode: "cash", clientRef: null, posting: false, uncertain: false, activeInput: null },
    lastSale: null,
    cluster: null,              // last /api/cluster or cluster_status
    offlineSince: null,         // {master_id, epoch} when a sale here could not reach the master
    socket: null,
    socketUp: false,
    httpUp: true,
    refund: null,               // sale being refunded
    lastActivity: Date.now(),
  };

  // ------------------------------------------------------------------ money
  const SYMBOLS = { EUR: "€", USD: "$", GBP: "£", CHF: "CHF ", PLN: "zł " };

  function fmt(cents) {
    if (typeof cents !== "number" || !isFinite(cents)) return "–";
    const sym = SYMBOLS[S.config.currency] || (S.config.currency + " ");
    const neg = cents < 0;
    const abs = Math.abs(Math.round(cents));
    const major = Math.floor(abs / 100);
    const minor = abs % 100;
    return (neg ? "-" : "") + sym + major + "." + (minor < 10 ? "0" : "") + minor;
  }

  /** "12", "12.3", "12,30", "€12.30" -> cents; "" -> null; anything else -> NaN. */
  function parseMoney(text) {
    const s = String(text == null ? "" : text).trim().replace(/^[€$£]\s*/, "");
    if (s === "") return null;
    const m = /^(\d{1,7})(?:[.,](\d{0,2}))?$/.exec(s);
    if (!m) return NaN;
    const minor = (m[2] || "").padEnd(2, "0");
    return parseInt(m[1], 10) * 100 + parseInt(minor, 10);
  }

  function rateLabel(bp) {
    bp = Number(bp);
    const whole = Math.floor(bp / 100);
    const frac = bp % 100;
    return frac ? whole + "." + String(frac).padStart(2, "0").replace(/0$/, "") + "%" : whole + "%";
  }

  /** floor(a/b + 1/2) for a >= 0, b > 0 (server: round_half_up_div). */
  function roundHalfUpDiv(a, b) {
    return Math.floor((2 * a + b) / (2 * b));
  }

  function allocate(amount, weights) {
    const total = weights.reduce(function (a, b) { return a + b; }, 0);
    if (total === 0) return weights.map(function () { return 0; });
    const shares = [];
    const rems = [];
    weights.forEach(function (w) {
      shares.push(Math.floor((amount * w) / total));
      rems.push((amount * w) % total);
    });
    let left = amount - shares.reduce(function (a, b) { return a + b; }, 0);
    const order = weights.map(function (_, i) { return i; })
      .sort(function (i, j) { return rems[j] - rems[i] || i - j; });
    for (let k = 0; k < order.length && left > 0; k++, left--) shares[order[k]] += 1;
    return shares;
  }

  /** Price the cart exactly as app/services/pricing.py does. */
  function priceCart() {
    const lines = [];
    let subtotal = 0;
    S.cart.forEach(function (l) {
      const p = S.products.get(l.sku);
      if (!p) return;
      const gross = p.price_cents * l.qty;
      subtotal += gross;
      lines.push({ l: l, p: p, gross: gross, after: gross - (l.discount_cents || 0) });
    });
    const afterSum = lines.reduce(function (a, x) { return a + x.after; }, 0);
    const cartDisc = Math.min(S.cartDiscount, afterSum);
    const shares = allocate(cartDisc, lines.map(function (x) { return x.after; }));
    const byRate = {};
    let total = 0;
    lines.forEach(function (x, i) {
      x.total = x.after - shares[i];
      total += x.total;
      const r = x.p.tax_rate_bp || 0;
      byRate[r] = (byRate[r] || 0) + x.total;
    });
    let tax = 0;
    Object.keys(byRate).forEach(function (r) {
      tax += roundHalfUpDiv(byRate[r] * Number(r), 10000 + Number(r));
    });
    const items = S.cart.reduce(function (a, l) { return a + l.qty; }, 0);
    return { lines: lines, subtotal: subtotal, discount: subtotal - total, total: total, tax: tax, items: items };
  }

  // ------------------------------------------------------------------ helpers
  function el(tag, attrs, children) {
    const n = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        const v = attrs[k];
        if (v === undefined || v === null || v === false) return;
        if (k === "class") n.className = v;
        else if (k === "text") n.textContent = v;
        else if (k === "dataset") Object.assign(n.dataset, v);
        else if (k.slice(0, 2) === "on") n.addEventListener(k.slice(2), v);
        else n.setAttribute(k, v === true ? "" : v);
      });
    }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      n.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return n;
  }

  function show(node, on) {
    node.hidden = !on;
  }

  function displayName(username) {
    const u = S.users.find(function (x) { return x.username === username; });
    return u ? u.display_name || u.username : username;
  }

  function isManager(user) {
    return !!user && (user.role === "manager" || user.role === "admin");
  }

  function stockOf(p) {
    return p && typeof p.stock === "number" ? p.stock : null;
  }

  function soldOut(p) {
    const s = stockOf(p);
    return s !== null && s <= 0;
  }

  function errorText(err) {
    if (!err) return "Something went wrong.";
    const d = err.details || {};
    switch (err.code) {
      case "OUT_OF_STOCK": {
        const p = S.products.get(d.sku);
        const name = p ? p.name : d.sku;
        const avail = typeof d.available === "number" ? Math.max(0, d.available) : null;
        if (avail === 0) return "Sold out: " + name + " — none left (another till took the last one).";
        if (avail !== null) {
          return "Not enough stock: " + name + " — only " + avail + " left, the cart has " + d.requested + ".";
        }
        return "Not enough stock: " + name + ".";
      }
      case "NETWORK_ERROR":
      case "TIMEOUT":
        return err.message;
      default:
        return err.message || err.code;
    }
  }

  // ------------------------------------------------------------------ toasts
  function toast(text, kind, ms) {
    const t = el("div", { class: "toast toast-" + (kind || "info"), role: kind === "error" ? "alert" : "status", text: text });
    t.addEventListener("click", function () { t.remove(); });
    const box = $("toasts");
    box.appendChild(t);
    while (box.children.length > 4) box.firstChild.remove();
    const life = ms === 0 ? 0 : ms || (kind === "error" || kind === "warn" ? 8000 : 3500);
    if (life) setTimeout(function () { t.remove(); }, life);
    return t;
  }

  // ------------------------------------------------------------------ PIN pads
  /** Build a 3x4 PIN pad into `container`. keyTestIds: prefix for data-testid. */
  function buildPinPad(container, onDigit, onBack, onEnter, testPrefix) {
    container.textContent = "";
    const keys = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "back", "0", "enter"];
    keys.forEach(function (k) {
      let b;
      if (k === "back") {
        b = el("button", { type: "button", class: "key key-back", "aria-label": "Delete", text: "⌫",
          "data-testid": testPrefix ? testPrefix + "back" : null });
        b.addEventListener("click", onBack);
      } else if (k === "enter") {
        b = el("button", { type: "button", class: "key key-enter", text: "Enter",
          "data-testid": testPrefix ? testPrefix + "enter" : null });
        b.addEventListener("click", onEnter);
      } else {
        b = el("button", { type: "button", class: "key", text: k,
          "data-testid": testPrefix ? testPrefix + "key-" + k : null });
        b.addEventListener("click", function () { onDigit(k); });
      }
      container.appendChild(b);
    });
  }

  function renderDots(container, n) {
    container.textContent = "";
    const count = Math.max(4, n);
    for (let i = 0; i < count; i++) container.appendChild(el("span", { class: "dot" + (i < n ? " on" : "") }));
  }

  // ------------------------------------------------------------------ login
  async function loadUsers() {
    try {
      const data = await api.get("/api/users", null, { token: null });
      const fresh = data.users || [];
      const same = JSON.stringify(fresh) === JSON.stringify(S.users);
      S.users = fresh;
      $("login-status").textContent = "";
      if (same && $("login-users").children.length) return;  // no tile replaced under a finger
    } catch (e) {
      $("login-status").textContent = "Cannot load users: " + errorText(e) + " Retrying…";
      if (S.watchingUsers) return;  // the watch below asks again; the tiles shown stay
      S.users = [];
      setTimeout(loadUsers, 2000);
    }
    renderUserTiles();
  }

  // The login screen has no live socket (no session yet): while its name tiles show, ask
  // this till for the users every second, so a user added or deactivated at another till
  // shows here within about a second (issue 17).
  function watchUserTiles() {
    S.watchingUsers = true;
    setInterval(function () {
      if (!$("login").hidden && !$("login-users").hidden && !document.hidden) loadUsers();
    }, 1000);
  }

  // Logged in: the users with their roles (the approver dialog lists the managers).
  async function loadStaff() {
    try {
      const data = await api.get("/api/users");
      S.staff = data.users || [];
    } catch (e) { /* the approver dialog then says there is no manager; retried next login */ }
  }

  function renderUserTiles() {
    const box = $("login-users");
    box.textContent = "";
    S.users.forEach(function (u) {
      const initials = (u.display_name || u.username).split(/\s+/).map(function (w) { return w[0]; }).join("").slice(0, 2).toUpperCase();
      // Without a login the till tells no one who is a manager: name tiles only.
      const b = el("button", {
        type: "button", class: "user-tile", role: "listitem",
        "data-testid": "user-" + u.username,
      }, [
        el("span", { class: "avatar", text: initials }),
        el("span", { class: "user-name", text: u.display_name || u.username }),
      ]);
      b.addEventListener("click", function () { pickUser(u); });
      box.appendChild(b);
    });
  }

  function showLogin(opts) {
    opts = opts || {};
    document.body.classList.add("is-locked");
    show($("login"), true);
    show($("app"), false);
    closeAllDialogs();
    $("login-shop").textContent = S.config.shop_name || "lanpos";
    if (opts.user) {
      pickUser(opts.user, opts.message);
    } else {
      S.pinUser = null;
      show($("login-users"), true);
      show($("login-pin"), false);
      $("login-sub").textContent = opts.message || "Tap your name";
    }
  }

  function pickUser(u, message) {
    S.pinUser = u;
    S.pin = "";
    show($("login-users"), false);
    show($("login-pin"), true);
    $("pin-who").textContent = u.display_name || u.username;
    $("login-sub").textContent = message || "Enter your PIN";
    $("pin-msg").textContent = "";
    renderDots($("pin-dots"), 0);
    updateLockout();
  }

  function pinDigit(d) {
    if (!S.pinUser || isLockedOut()) return;
    if (S.pin.length >= 12) return;
    S.pin += d;
    $("pin-msg").textContent = "";
    renderDots($("pin-dots"), S.pin.length);
  }

  function pinBack() {
    S.pin = S.pin.slice(0, -1);
    renderDots($("pin-dots"), S.pin.length);
  }

  function isLockedOut() {
    return S.lockedOutUser && S.pinUser && S.lockedOutUser === S.pinUser.username && Date.now() < S.lockedUntil;
  }

  let lockoutTimer = null;
  function updateLockout() {
    const pad = $("pin-pad");
    clearTimeout(lockoutTimer);
    if (isLockedOut()) {
      const left = Math.ceil((S.lockedUntil - Date.now()) / 1000);
      const m = Math.floor(left / 60);
      const s = left % 60;
      $("pin-msg").textContent = "Locked after too many wrong PINs. Try again in " + (m ? m + " min " : "") + s + " s.";
      pad.classList.add("disabled");
      lockoutTimer = setTimeout(updateLockout, 1000);
    } else {
      if (pad.classList.contains("disabled")) {
        pad.classList.remove("disabled");
        $("pin-msg").textContent = "";
      }
    }
  }

  async function pinEnter() {
    if (!S.pinUser || isLockedOut()) return;
    if (!S.pin) {
      $("pin-msg").textContent = "Enter your PIN first.";
      return;
    }
    const username = S.pinUser.username;
    const pin = S.pin;
    S.pin = "";
    renderDots($("pin-dots"), 0);
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
        updateLockout();
      } else if (e.code === "UNAUTHORIZED") {
        const left = d.attempts_left;
        $("pin-msg").textContent = "Wrong PIN." + (typeof left === "number" ? " " + left + " attempt" + (left === 1 ? "" : "s") + " left before lock-out." : "");
        $("pin-dots").classList.remove("shake");
        void $("pin-dots").offsetWidth;
        $("pin-dots").classList.add("shake");
      } else {
        $("pin-msg").textContent = errorText(e);
      }
    }
  }

  function onLoggedIn(user) {
    const prev = S.lockPrevUser;
    S.lockPrevUser = null;
    S.user = user;
    if (prev && prev.username !== user.username && S.cart.length) {
      clearCart();
      toast("The cart of " + (prev.display_name || prev.username) + " was cleared.", "info");
    }
    document.body.classList.remove("is-locked");
    show($("login"), false);
    show($("app"), true);
    $("who").textContent = user.display_name || user.username;
    $("who").title = user.role;
    S.lastActivity = Date.now();
    loadConfig();
    loadCatalog();
    loadStaff();
    refreshCluster();
    connectSocket();
    renderCart();
    focusScan();
  }

  async function logout(lockOnly) {
    const prev = S.user;
    disconnectSocket();
    await api.logout();
    S.user = null;
    if (lockOnly && prev) {
      S.lockPrevUser = prev;
      showLogin({ user: prev, message: "Screen locked — enter your PIN to continue" });
    } else {
      clearCart();
      showLogin({});
    }
  }

  // ------------------------------------------------------------------ config / catalog
  async function loadConfig() {
    try {
      const c = await api.get("/api/config/shop");
      Object.assign(S.config, c);
    } catch (e) {
      /* keep defaults */
    }
    $("shop-name").textContent = S.config.shop_name || "lanpos";
    $("login-shop").textContent = S.config.shop_name || "lanpos";
    $("till-id").textContent = S.config.device_id != null ? "Till " + S.config.device_id : "";
    document.title = (S.config.shop_name || "lanpos") + " · till";
    renderCart();
  }

  let catalogLoading = null;
  function loadCatalog() {
    if (catalogLoading) return catalogLoading;
    catalogLoading = (async function () {
      try {
        const [cats, prods] = await Promise.all([
          api.get("/api/categories").catch(function () { return { categories: [] }; }),
          fetchAllProducts(),
        ]);
        S.categories = (cats.categories || []).map(function (c) { return c.name; });
        S.products = new Map();
        S.byBarcode = new Map();
        S.order = [];
        prods.forEach(function (p) {
          if (p.active === false) return;
          S.products.set(p.sku, p);
          S.order.push(p.sku);
          if (p.barcode) S.byBarcode.set(String(p.barcode), p.sku);
        });
        // categories that have products but were not listed
        prods.forEach(function (p) {
          if (p.category && S.categories.indexOf(p.category) < 0) S.categories.push(p.category);
        });
        renderCats();
        renderGrid();
        renderCart();
      } catch (e) {
        if (e.status !== 401) toast("Cannot load products: " + errorText(e), "error");
      } finally {
        catalogLoading = null;
      }
    })();
    return catalogLoading;
  }

  async function fetchAllProducts() {
    const out = [];
    const limit = 500;
    for (let offset = 0, page = 0; page < 40; page++, offset += limit) {
      const data = await api.get("/api/products", { limit: limit, offset: offset });
      const items = data.products || [];
      Array.prototype.push.apply(out, items);
      if (!items.length || out.length >= (data.total || 0)) break;
    }
    return out;
  }

  function renderCats() {
    const nav = $("cats");
    nav.textContent = "";
    const all = [""].concat(S.categories);
    all.forEach(function (c) {
      const b = el("button", {
        type: "button", class: "cat" + (c === S.category ? " active" : ""), role: "tab",
        "aria-selected": c === S.category ? "true" : "false",
        "data-testid": "category-" + (c || "all"), text: c || "All",
      });
      b.addEventListener("click", function () {
        S.category = c;
        renderCats();
        renderGrid();
      });
      nav.appendChild(b);
    });
  }

  function visibleSkus() {
    const q = S.search.trim().toLowerCase();
    return S.order.filter(function (sku) {
      const p = S.products.get(sku);
      if (!p) return false;
      if (S.category && p.category !== S.category) return false;
      if (!q) return true;
      return (p.name || "").toLowerCase().indexOf(q) >= 0 ||
        sku.toLowerCase().indexOf(q) >= 0 ||
        String(p.barcode || "").indexOf(q) >= 0;
    });
  }

  const MAX_TILES = 240;

  function renderGrid() {
    const grid = $("grid");
    grid.textContent = "";
    const skus = visibleSkus();
    const frag = document.createDocumentFragment();
    skus.slice(0, MAX_TILES).forEach(function (sku) { frag.appendChild(tileFor(S.products.get(sku))); });
    grid.appendChild(frag);
    $("grid-empty").textContent = skus.length > MAX_TILES
      ? "Showing " + MAX_TILES + " of " + skus.length + " products: search to narrow down."
      : "No products match.";
    show($("grid-empty"), skus.length === 0 || skus.length > MAX_TILES);
  }

  function tileFor(p) {
    const b = el("button", { type: "button", class: "tile", role: "listitem", "data-testid": "product-" + p.sku, "data-sku": p.sku }, [
      el("span", { class: "tile-name", text: p.name }),
      el("span", { class: "tile-foot" }, [
        el("span", { class: "tile-price", text: fmt(p.price_cents) }),
        el("span", { class: "badge" }),
      ]),
    ]);
    b.addEventListener("click", function () {
      addToCart(p.sku, 1, "tile");
    });
    paintTile(b, p);
    return b;
  }

  function paintTile(b, p) {
    const s = stockOf(p);
    b.dataset.stock = s === null ? "" : String(s);
    const out = soldOut(p);
    b.classList.toggle("sold-out", out);
    b.classList.toggle("low", !out && s !== null && s <= 3);
    if (out) b.setAttribute("aria-disabled", "true");
    else b.removeAttribute("aria-disabled");
    const badge = b.querySelector(".badge");
    badge.textContent = out ? (s < 0 ? "Oversold " + s : "Sold out") : s === null ? "" : s + " left";
  }

  function updateStock(sku, stock) {
    const p = S.products.get(sku);
    if (!p) return;
    const wasOut = soldOut(p);
    p.stock = stock;
    const tile = document.querySelector('[data-testid="product-' + cssEscape(sku) + '"]');
    if (tile) paintTile(tile, p);
    if (!soldOut(p) && S.flagged.has(sku)) {
      S.flagged.delete(sku);
    }
    if (soldOut(p) && !wasOut && cartLine(sku)) S.flagged.add(sku);
    if (cartLine(sku)) renderCart();
  }

  async function refreshProduct(sku) {
    try {
      const data = await api.get("/api/products/" + encodeURIComponent(sku));
      const p = data.product;
      if (!p) return;
      const known = S.products.has(sku);
      if (p.active === false) {
        S.products.delete(sku);
        S.order = S.order.filter(function (x) { return x !== sku; });
      } else {
        S.products.set(sku, p);
        if (!known) S.order.push(sku);
        if (p.barcode) S.byBarcode.set(String(p.barcode), sku);
        if (p.category && S.categories.indexOf(p.category) < 0) {
          S.categories.push(p.category);
          renderCats();
        }
      }
      renderGrid();
      if (cartLine(sku)) renderCart();
    } catch (e) {
      /* the next full reload catches up */
    }
  }

  function cssEscape(s) {
    return window.CSS && CSS.escape ? CSS.escape(s) : String(s).replace(/["\\]/g, "\\$&");
  }

  // ------------------------------------------------------------------ scanning
  const finePointer = window.matchMedia && window.matchMedia("(pointer: fine)").matches;

  function focusScan() {
    // Scanners are caught anywhere (see onGlobalKey), so focus is a convenience for
    // mouse-and-keyboard tills only: on a touchscreen it would pop up the on-screen keyboard.
    if (!finePointer) return;
    const input = $("scan-input");
    if (input && !anyDialogOpen() && document.activeElement !== $("search-input")) input.focus({ preventScroll: true });
  }

  async function scanBarcode(code) {
    code = String(code || "").trim();
    if (!code) return;
    if (/^[A-Za-z]+\d*-\d+$/.test(code)) {
      // a receipt number scanned from a printed receipt
      openRefund(code.toUpperCase());
      return;
    }
    let sku = S.byBarcode.get(code);
    if (!sku && S.products.has(code)) sku = code;
    if (!sku) {
      try {
        const data = await api.get("/api/products/by-barcode/" + encodeURIComponent(code));
        const p = data.product || data;
        if (p && p.sku) {
          if (!S.products.has(p.sku)) {
            S.products.set(p.sku, p);
            S.order.push(p.sku);
            renderGrid();
          }
          if (p.barcode) S.byBarcode.set(String(p.barcode), p.sku);
          sku = p.sku;
        }
      } catch (e) {
        if (e.status === 404 || e.code === "NOT_FOUND") {
          toast("No product with barcode " + code + ".", "warn");
          beep(false);
        } else {
          toast("Barcode lookup failed: " + errorText(e), "error");
        }
        return;
      }
    }
    if (sku) addToCart(sku, 1, "scan");
  }

  let audioCtx = null;
  function beep(ok) {
    try {
      audioCtx = audioCtx || new (window.AudioContext || window.webkitAudioContext)();
      const o = audioCtx.createOscillator();
      const g = audioCtx.createGain();
      o.frequency.value = ok ? 1800 : 300;
      g.gain.value = 0.05;
      o.connect(g);
      g.connect(audioCtx.destination);
      o.start();
      o.stop(audioCtx.currentTime + (ok ? 0.06 : 0.25));
    } catch (e) {
      /* no audio: fine */
    }
  }

  // Keyboard-wedge scanners type digits then Enter into whatever has focus.
  const wedge = { buf: "", last: 0 };
  function onGlobalKey(ev) {
    S.lastActivity = Date.now();
    if (ev.ctrlKey || ev.altKey || ev.metaKey) return;
    // login screen: the physical keyboard drives the PIN pad
    if (!$("login").hidden) {
      if ($("login-pin").hidden) return;
      if (/^\d$/.test(ev.key)) { pinDigit(ev.key); ev.preventDefault(); }
      else if (ev.key === "Backspace") { pinBack(); ev.preventDefault(); }
      else if (ev.key === "Enter") { pinEnter(); ev.preventDefault(); }
      else if (ev.key === "Escape") { showLogin({}); }
      return;
    }
    if (ev.key === "Escape") {
      const top = topDialog();
      if (top && !S.pay.posting) closeDialog(top);
      return;
    }
    const t = ev.target;
    const typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
    // the receipt is showing: scanning the next customer's first item starts a new sale
    const receiptOnly = dialogStack.length === 1 && dialogStack[0] === "dlg-receipt";
    if (typing || (anyDialogOpen() && !receiptOnly)) return;
    const now = Date.now();
    if (now - wedge.last > 1500) wedge.buf = "";
    wedge.last = now;
    if (ev.key.length === 1 && /[0-9A-Za-z-]/.test(ev.key)) {
      wedge.buf += ev.key;
      ev.preventDefault();
    } else if (ev.key === "Enter" && wedge.buf) {
      // also stops Enter from "clicking" the tile that still has focus
      ev.preventDefault();
      const code = wedge.buf;
      wedge.buf = "";
      if (receiptOnly) closeDialog("dlg-receipt");
      scanBarcode(code);
    }
  }

  // ------------------------------------------------------------------ cart
  function cartLine(sku) {
    return S.cart.find(function (l) { return l.sku === sku; }) || null;
  }

  /** While a payment is unconfirmed the cart must not change: a retry with the same
   *  client_ref must describe the same sale. */
  function cartLocked() {
    if (S.pay.uncertain) {
      showCartNotice("Payment not confirmed: tap Cash/Card and Retry, or Clear to abandon it.");
      toast("The last payment is not confirmed yet: retry it first.", "warn");
      return true;
    }
    return false;
  }

  function cartChanged() {
    S.pay.clientRef = null;   // a different cart is a different payment attempt
    renderCart();
  }

  function addToCart(sku, qty, how) {
    const p = S.products.get(sku);
    if (!p) return false;
    if (cartLocked()) return false;
    if (soldOut(p)) {
      toast(p.name + " is sold out.", "warn");
      beep(false);
      return false;
    }
    let l = cartLine(sku);
    if (l) l.qty += qty;
    else {
      l = { sku: sku, qty: qty, discount_cents: 0 };
      S.cart.push(l);
    }
    hideCartNotice();
    cartChanged();
    flashLine(sku);
    if (how === "scan") beep(true);
    return true;
  }

  function setQty(sku, qty) {
    if (cartLocked()) return;
    const l = cartLine(sku);
    if (!l) return;
    if (qty <= 0) return removeLine(sku);
    const p = S.products.get(sku);
    if (qty > l.qty && soldOut(p)) {
      toast(p.name + " is sold out.", "warn");
      return;
    }
    l.qty = qty;
    const gross = p.price_cents * qty;
    if (l.discount_cents > gross) l.discount_cents = gross;
    cartChanged();
  }

  function removeLine(sku) {
    if (cartLocked()) return;
    S.cart = S.cart.filter(function (l) { return l.sku !== sku; });
    S.flagged.delete(sku);
    if (!S.cart.length) {
      S.cartDiscount = 0;
      S.approver = null;
    }
    cartChanged();
  }

  function clearCart() {
    S.cart = [];
    S.cartDiscount = 0;
    S.approver = null;
    S.flagged.clear();
    S.pay.clientRef = null;
    S.pay.uncertain = false;
    hideCartNotice();
    renderCart();
  }

  function flashLine(sku) {
    const li = document.querySelector('[data-testid="cart-line-' + cssEscape(sku) + '"]');
    if (!li) return;
    li.classList.remove("flash");
    void li.offsetWidth;
    li.classList.add("flash");
    li.scrollIntoView({ block: "nearest" });
  }

  function showCartNotice(text) {
    const n = $("cart-notice");
    n.textContent = text;
    show(n, true);
  }

  function hideCartNotice() {
    show($("cart-notice"), false);
  }

  function renderCart() {
    const ol = $("cart-lines");
    ol.textContent = "";
    const priced = priceCart();
    priced.lines.forEach(function (x) {
      const l = x.l;
      const p = x.p;
      const sku = l.sku;
      const flagged = S.flagged.has(sku);
      const stock = stockOf(p);
      const notes = [];
      if (l.discount_cents) notes.push("discount −" + fmt(l.discount_cents));
      if (flagged) notes.push(stock !== null && stock > 0 ? "only " + stock + " left" : "sold out");
      const li = el("li", { class: "line" + (flagged ? " flagged" : ""), "data-testid": "cart-line-" + sku, "data-qty": String(l.qty) }, [
        el("div", { class: "line-top" }, [
          el("span", { class: "line-name", text: p.name }),
          el("span", { class: "line-total", "data-testid": "line-total-" + sku, text: fmt(x.gross - (l.discount_cents || 0)) }),
        ]),
        notes.length ? el("div", { class: "line-note", text: notes.join(" · ") }) : null,
        el("div", { class: "line-ctrl" }, [
          el("span", { class: "line-meta", text: l.qty + " × " + fmt(p.price_cents) }),
          el("button", { type: "button", class: "btn btn-step", "aria-label": "One less", "data-testid": "qty-minus-" + sku, text: "−", onclick: function () { setQty(sku, l.qty - 1); } }),
          el("span", { class: "qty", "data-testid": "qty-" + sku, text: String(l.qty) }),
          el("button", { type: "button", class: "btn btn-step", "aria-label": "One more", "data-testid": "qty-plus-" + sku, text: "+", onclick: function () { setQty(sku, l.qty + 1); } }),
          el("button", { type: "button", class: "btn btn-line", "aria-label": "Discount on " + p.name, title: "Discount", "data-testid": "line-discount-" + sku, text: "%", onclick: function () { openDiscount(sku); } }),
          el("button", { type: "button", class: "btn btn-line btn-remove", "aria-label": "Remove " + p.name, "data-testid": "line-remove-" + sku, text: "✕", onclick: function () { removeLine(sku); } }),
        ]),
      ]);
      ol.appendChild(li);
    });
    show($("cart-empty"), S.cart.length === 0);
    $("tot-items").textContent = String(priced.items);
    $("tot-disc").textContent = "−" + fmt(priced.discount);
    show($("row-disc"), priced.discount > 0);
    $("tot-tax").textContent = fmt(priced.tax);
    $("tot-total").textContent = fmt(priced.total);
    const empty = S.cart.length === 0;
    $("pay-cash").disabled = empty;
    $("pay-card").disabled = empty;
    $("btn-cart-disc").disabled = empty;
    $("btn-clear").disabled = empty;
    ["pay-cash", "pay-card"].forEach(function (id) { $(id).classList.toggle("retry", S.pay.uncertain); });
    $("btn-cart-disc").textContent = S.cartDiscount ? "Disc. −" + fmt(S.cartDiscount) : "Discount";
    return priced;
  }

  // ------------------------------------------------------------------ dialogs
  const dialogStack = [];

  function anyDialogOpen() {
    return dialogStack.length > 0;
  }

  function topDialog() {
    return dialogStack[dialogStack.length - 1] || null;
  }

  function openDialog(id) {
    const d = $(id);
    if (dialogStack.indexOf(id) < 0) dialogStack.push(id);
    show(d, true);
    show($("overlay"), true);
    d.style.zIndex = String(100 + dialogStack.length * 2);
    $("overlay").style.zIndex = String(99 + dialogStack.length * 2);
  }

  function closeDialog(id) {
    if (id === "dlg-pay" && S.pay.posting) return;
    const i = dialogStack.indexOf(id);
    if (i >= 0) dialogStack.splice(i, 1);
    show($(id), false);
    if (id === "dlg-approve" && approval.resolve) {
      const r = approval.resolve;
      approval.resolve = null;
      r(undefined);
    }
    if (!dialogStack.length) {
      show($("overlay"), false);
      focusScan();
    } else {
      $("overlay").style.zIndex = String(99 + dialogStack.length * 2);
    }
  }

  function closeAllDialogs() {
    dialogStack.slice().reverse().forEach(closeDialog);
  }

  // ------------------------------------------------------------------ money keypad
  function buildKeypad(container, getInput, onChange) {
    container.textContent = "";
    ["7", "8", "9", "4", "5", "6", "1", "2", "3", ".", "0", "⌫"].forEach(function (k) {
      const b = el("button", { type: "button", class: "key key-money", text: k, tabindex: "-1" });
      b.addEventListener("mousedown", function (ev) { ev.preventDefault(); });
      b.addEventListener("click", function () {
        const input = getInput();
        if (!input) return;
        if (k === "⌫") input.value = input.value.slice(0, -1);
        else if (k === ".") { if (!/[.,]/.test(input.value)) input.value = (input.value || "0") + "."; }
        else if (!/[.,]\d\d$/.test(input.value)) input.value += k;
        onChange();
      });
      container.appendChild(b);
    });
  }

  // ------------------------------------------------------------------ payment
  function openPay(mode) {
    if (!S.cart.length) return;
    if (S.flagged.size) {
      const names = Array.from(S.flagged).map(function (s) { return (S.products.get(s) || { name: s }).name; });
      if (!S.pay.uncertain) {
        showCartNotice("Check the cart first: " + names.join(", ") + " — not enough stock.");
      }
    }
    if (S.pay.uncertain) {
      // the unconfirmed attempt: same mode, same client_ref, the message stays
      setPayMode(S.pay.mode);
    } else {
      $("card-input").value = "";
      $("tendered-input").value = "";
      show($("pay-error"), false);
      setPayMode(mode);
    }
    openDialog("dlg-pay");
    const input = S.pay.mode === "card" ? null : S.pay.mode === "split" ? $("card-input") : $("tendered-input");
    if (input && finePointer) input.focus({ preventScroll: true });
  }

  function setPayMode(mode) {
    S.pay.mode = mode;
    document.querySelectorAll("#pay-modes .seg-btn").forEach(function (b) {
      b.classList.toggle("active", b.dataset.mode === mode);
      b.setAttribute("aria-selected", b.dataset.mode === mode ? "true" : "false");
    });
    show($("card-field"), mode === "split");
    show($("cash-field"), mode !== "card");
    show($("quick"), mode !== "card");
    show($("change-row"), mode !== "card");
    show($("card-note"), mode !== "cash");
    show($("pay-keypad"), mode !== "card");
    $("dlg-pay").dataset.mode = mode;
    S.pay.activeInput = mode === "split" ? $("card-input") : mode === "cash" ? $("tendered-input") : null;
    updatePay();
  }

  function payNumbers() {
    const total = priceCart().total;
    const card = S.pay.mode === "card" ? total : S.pay.mode === "split" ? parseMoney($("card-input").value) : 0;
    const cardCents = card === null ? 0 : card;
    const cashDue = Math.max(0, total - (isNaN(cardCents) ? 0 : cardCents));
    const tendered = S.pay.mode === "card" ? 0 : parseMoney($("tendered-input").value);
    return { total: total, card: cardCents, cashDue: cashDue, tendered: tendered };
  }

  function quickAmounts(due) {
    const out = [due];
    [100, 500, 1000, 2000, 5000, 10000].forEach(function (step) {
      const v = Math.ceil(due / step) * step;
      if (v > due && out.indexOf(v) < 0) out.push(v);
    });
    return out.slice(0, 4);
  }

  function updatePay() {
    const n = payNumbers();
    $("pay-due").textContent = fmt(n.total);
    const quick = $("quick");
    quick.textContent = "";
    if (S.pay.mode !== "card") {
      quickAmounts(n.cashDue).forEach(function (v, i) {
        quick.appendChild(el("button", {
          type: "button", class: "btn btn-quick", "data-testid": "quick-" + v,
          text: i === 0 ? "Exact " + fmt(v) : fmt(v),
          onclick: function () { $("tendered-input").value = (v / 100).toFixed(2); updatePay(); },
        }));
      });
    }
    const t = n.tendered;
    const change = t === null || isNaN(t) ? 0 : Math.max(0, t - n.cashDue);
    $("change-due").textContent = fmt(change);
    $("change-row").classList.toggle("has-change", change > 0);
    $("pay-confirm").textContent = S.pay.posting ? "Sending…" : S.pay.uncertain ? "Retry" : "Confirm " + fmt(n.total);
  }

  function buildPayment() {
    const n = payNumbers();
    if (S.pay.mode === "card") {
      return { payments: n.total > 0 ? [{ method: "card", amount_cents: n.total }] : [] };
    }
    if (isNaN(n.card) || n.card > n.total) return { error: "The card amount must be between " + fmt(0) + " and " + fmt(n.total) + "." };
    let tendered = n.tendered;
    if (tendered === null) tendered = n.cashDue; // nothing typed: exact cash
    if (isNaN(tendered)) return { error: "Type the cash amount like 20 or 20.50." };
    if (tendered < n.cashDue) return { error: "Not enough cash: " + fmt(n.cashDue - tendered) + " short." };
    const payments = [];
    if (S.pay.mode === "split" && n.card > 0) payments.push({ method: "card", amount_cents: n.card });
    if (tendered > 0) payments.push({ method: "cash", amount_cents: tendered });
    return { payments: payments };
  }

  async function confirmPay() {
    if (S.pay.posting) return;
    const confirmBtn = $("pay-confirm");
    const built = buildPayment();
    if (built.error) {
      $("pay-error").textContent = built.error;
      show($("pay-error"), true);
      return;
    }
    // Disabled before anything awaits: a double tap cannot post twice.
    S.pay.posting = true;
    confirmBtn.disabled = true;
    document.querySelectorAll("#dlg-pay [data-close]").forEach(function (b) { b.disabled = true; });
    show($("pay-error"), false);
    if (!S.pay.clientRef) S.pay.clientRef = api.uuid(); // once per payment attempt
    updatePay();
    const snapshot = priceCart();
    const body = {
      lines: S.cart.map(function (l) {
        const line = { sku: l.sku, quantity: l.qty };
        if (l.discount_cents) line.discount_cents = l.discount_cents;
        return line;
      }),
      payments: built.payments,
      client_ref: S.pay.clientRef,
    };
    if (S.cartDiscount) body.cart_discount_cents = S.cartDiscount;
    if (S.approver) body.approver = S.approver;
    try {
      const res = await api.post("/api/sales", body, { timeoutMs: 15000, sessionHook: false });
      S.pay.uncertain = false;
      S.pay.posting = false;
      S.pay.clientRef = null;
      closeDialog("dlg-pay");
      clearCart();
      S.lastSale = res;
      showReceipt(res, snapshot);
      if (res.status === "offline") {
        const c = S.cluster || {};
        S.offlineSince = { master_id: c.master_id, epoch: c.epoch };
        applyClusterStatus({ outbox_pending: Math.max(1, c.outbox_pending || 0) });
        refreshCluster();
      }
      if (!S.socketUp) loadCatalog();
    } catch (e) {
      S.pay.posting = false;
      if (e.uncertain) {
        // The sale may or may not have been recorded: keep the same client_ref so a
        // retry returns that sale instead of selling again.
        S.pay.uncertain = true;
        $("pay-error").textContent = errorText(e) + " Tap Retry: the sale will not be recorded twice.";
        show($("pay-error"), true);
      } else {
        S.pay.uncertain = false;
        S.pay.clientRef = null;
        if (e.code === "OUT_OF_STOCK") {
          const d = e.details || {};
          if (d.sku && typeof d.available === "number") updateStock(d.sku, d.available);
          if (d.sku) S.flagged.add(d.sku);
          closeDialog("dlg-pay");
          renderCart();
          showCartNotice(errorText(e));
          flashLine(d.sku);
          beep(false);
        } else if (approverProblem(e)) {
          // the manager PIN sent for the discounts was refused: ask again, then retry
          S.approver = null;
          const problem = approverProblem(e);
          $("pay-error").textContent = problem;
          show($("pay-error"), true);
          reapproveAndPay(problem);
        } else if (!sessionLost(e)) {
          $("pay-error").textContent = errorText(e);
          show($("pay-error"), true);
        }
      }
    } finally {
      confirmBtn.disabled = false;
      document.querySelectorAll("#dlg-pay [data-close]").forEach(function (b) { b.disabled = false; });
      updatePay();
    }
  }

  async function reapproveAndPay(problem) {
    await Promise.resolve();
    const who = await requestApproval("The discounts in this sale need a manager's PIN.", problem);
    if (who === undefined) return;
    if (who) S.approver = who;
    confirmPay();
  }

  // ------------------------------------------------------------------ receipt
  function taxRows(sale) {
    const t = sale.tax_by_rate;
    if (!t) return [];
    const rows = Array.isArray(t) ? t.map(function (r) { return [r.rate_bp, r]; })
      : Object.keys(t).map(function (k) { return [Number(k), t[k]]; });
    return rows.sort(function (a, b) { return a[0] - b[0]; });
  }

  function fmtDate(iso) {
    if (!iso) return new Date().toLocaleString();
    const d = typeof iso === "number" ? new Date(iso) : new Date(iso);
    return isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
  }

  function receiptNode(res, snapshot) {
    const sale = res.sale || {};
    const receiptNo = res.receipt_no || sale.receipt_no || "";
    const lines = (sale.lines && sale.lines.length) ? sale.lines : (snapshot ? snapshot.lines.map(function (x) {
      return { sku: x.l.sku, name: x.p.name, quantity: x.l.qty, unit_price_cents: x.p.price_cents, discount_cents: x.gross - x.total, total_cents: x.total };
    }) : []);
    const rows = [];
    rows.push(el("div", { class: "r-shop", text: S.config.shop_name || "lanpos" }));
    rows.push(el("div", { class: "r-meta" }, [
      el("span", { text: "Receipt " }),
      el("strong", { "data-testid": "receipt-no", text: receiptNo }),
    ]));
    rows.push(el("div", { class: "r-meta", text: fmtDate(sale.created_at || sale.created_ms || sale.ts) +
      (S.config.device_id != null ? " · Till " + (sale.origin_device || sale.device_id || S.config.device_id) : "") }));
    const cashier = sale.cashier || sale.user || (S.user && S.user.username);
    if (cashier) {
      const name = typeof cashier === "string" ? displayName(cashier) : cashier.display_name || cashier.username;
      rows.push(el("div", { class: "r-meta", text: "Served by " + name }));
    }
    rows.push(el("hr"));
    const tbl = el("table", { class: "r-lines" });
    lines.forEach(function (l) {
      const qty = l.quantity != null ? l.quantity : l.qty;
      const unit = l.unit_price_cents != null ? l.unit_price_cents : l.price_cents;
      const name = l.name || (S.products.get(l.sku) || {}).name || l.sku;
      // gross first, the discount (own + share of a cart discount) as its own line:
      // the amounts in the right column add up to the total
      tbl.appendChild(el("tr", { "data-testid": "receipt-line-" + l.sku }, [
        el("td", { class: "r-name" }, [
          el("div", { text: name }),
          qty !== 1 ? el("div", { class: "r-sub", text: qty + " × " + fmt(unit) }) : null,
        ]),
        el("td", { class: "num", text: fmt(unit * qty) }),
      ]));
      if (l.discount_cents) {
        tbl.appendChild(el("tr", { class: "r-disc" }, [
          el("td", { class: "r-sub", text: "  discount" }),
          el("td", { class: "num", text: "−" + fmt(l.discount_cents) }),
        ]));
      }
    });
    rows.push(tbl);
    rows.push(el("hr"));
    const total = res.total_cents != null ? res.total_cents : sale.total_cents;
    const tax = res.tax_cents != null ? res.tax_cents : sale.tax_cents;
    const sums = el("table", { class: "r-sums" });
    const disc = sale.discount_cents;
    sums.appendChild(el("tr", { class: "r-total" }, [el("td", { text: "TOTAL" }), el("td", { class: "num", "data-testid": "receipt-total", text: fmt(total) })]));
    taxRows(sale).forEach(function (r) {
      const v = r[1];
      sums.appendChild(el("tr", { class: "r-tax" }, [
        el("td", { text: "incl. VAT " + rateLabel(r[0]) + " on " + fmt(v.gross_cents) }),
        el("td", { class: "num", text: fmt(v.tax_cents) }),
      ]));
    });
    if (!taxRows(sale).length && typeof tax === "number") {
      sums.appendChild(el("tr", { class: "r-tax" }, [el("td", { text: "incl. VAT" }), el("td", { class: "num", text: fmt(tax) })]));
    }
    if (disc) sums.appendChild(el("tr", { class: "r-tax" }, [el("td", { text: "You saved" }), el("td", { class: "num", text: fmt(disc) })]));
    rows.push(sums);
    rows.push(el("hr"));
    const pays = el("table", { class: "r-pays" });
    (sale.payments || []).forEach(function (p) {
      const label = p.method === "cash" ? "Cash" : p.method === "card" ? "Card" : p.method;
      const shown = p.method === "cash" && p.tendered_cents != null ? p.tendered_cents : p.amount_cents;
      pays.appendChild(el("tr", {}, [el("td", { text: label }), el("td", { class: "num", text: fmt(shown) })]));
    });
    const change = res.change_cents != null ? res.change_cents : sale.change_cents || 0;
    pays.appendChild(el("tr", { class: "r-change" }, [el("td", { text: "Change" }), el("td", { class: "num", "data-testid": "receipt-change", text: fmt(change) })]));
    rows.push(pays);
    if (sale.status === "voided" || sale.voided) rows.push(el("div", { class: "r-note", text: "VOIDED" }));
    if (res.status === "offline") {
      rows.push(el("div", { class: "r-note r-offline", "data-testid": "receipt-offline", text: "Recorded offline on this till — it will sync automatically." }));
    }
    rows.push(el("div", { class: "r-thanks", text: "Thank you!" }));
    return rows;
  }

  function showReceipt(res, snapshot) {
    const box = $("receipt");
    box.textContent = "";
    receiptNode(res, snapshot).forEach(function (n) { box.appendChild(n); });
    box.dataset.receiptNo = res.receipt_no || "";
    box.dataset.status = res.status || "";
    openDialog("dlg-receipt");
    $("receipt-done").focus({ preventScroll: true });
  }

  // ------------------------------------------------------------------ manager approval
  const approval = { resolve: null, user: null, pin: "", problem: null, last: null };

  /**
   * Ask for a manager's username + PIN. Resolves to {username, pin}, to null when
   * the logged-in user is a manager already (no approver needed), or to undefined
   * when cancelled. The PIN is checked by the server with the action it approves
   * (sent as "approver"); a wrong one comes back as that action's error.
   */
  async function requestApproval(why, problem) {
    if (isManager(S.user)) return null;
    if (!S.staff.length) await loadStaff();
    approval.pin = "";
    approval.user = null;
    approval.problem = problem || null;
    $("approve-why").textContent = why;
    $("approve-msg").textContent = "";
    const managers = S.staff.filter(isManager);
    const box = $("approve-users");
    box.textContent = "";
    managers.forEach(function (u) {
      box.appendChild(el("button", {
        type: "button", class: "btn btn-mgr", "data-testid": "approver-" + u.username, text: u.display_name || u.username,
        onclick: function () { pickApprover(u); },
      }));
    });
    if (!managers.length) $("approve-msg").textContent = "No manager account on this till.";
    // after a refused PIN, the same manager is asked again
    const again = problem && approval.last && managers.find(function (u) { return u.username === approval.last; });
    if (again) pickApprover(again);
    else if (managers.length === 1) pickApprover(managers[0]);
    else show($("approve-pin-wrap"), false);
    if (problem) $("approve-msg").textContent = problem;
    renderDots($("approve-dots"), 0);
    openDialog("dlg-approve");
    return new Promise(function (resolve) { approval.resolve = resolve; });
  }

  function pickApprover(u) {
    approval.user = u;
    approval.pin = "";
    document.querySelectorAll("#approve-users .btn-mgr").forEach(function (b) {
      b.classList.toggle("active", b.dataset.testid === "approver-" + u.username);
    });
    show($("approve-pin-wrap"), true);
    $("approve-msg").textContent = approval.problem || "PIN of " + (u.display_name || u.username);
    approval.problem = null;
    renderDots($("approve-dots"), 0);
  }

  function approveEnter() {
    if (!approval.user) return;
    if (!approval.pin) {
      $("approve-msg").textContent = "Enter the manager's PIN.";
      return;
    }
    const cred = { username: approval.user.username, pin: approval.pin };
    approval.last = cred.username;
    approval.pin = "";
    renderDots($("approve-dots"), 0);
    const r = approval.resolve;
    approval.resolve = null;
    closeDialog("dlg-approve");
    if (r) r(cred);
  }

  /** If `e` is about the manager PIN sent as approver, a message for the cashier. */
  function approverProblem(e) {
    const d = e.details || {};
    if (e.code === "LOCKED") {
      const s = Math.ceil(d.retry_after_s || 0);
      return "That manager is locked out after wrong PINs" + (s ? " for " + (s >= 60 ? Math.ceil(s / 60) + " min" : s + " s") : "") + ".";
    }
    if (e.status === 401 && typeof d.attempts_left === "number") {
      return "Wrong manager PIN. " + d.attempts_left + " attempt" + (d.attempts_left === 1 ? "" : "s") + " left.";
    }
    if (e.status === 403 && d.required_role) return "That user is not a manager.";
    if (e.code === "APPROVAL_REQUIRED") return "This needs a manager's approval.";
    return null;
  }

  /** A 401 that is not about the approver: the cashier's session is gone. */
  function sessionLost(e) {
    if (e.status === 401 && !approverProblem(e)) {
      api.clearSession();
      const prev = S.user;
      disconnectSocket();
      S.user = null;
      S.lockPrevUser = prev;
      showLogin({ user: prev, message: "Session expired — enter your PIN again" });
      return true;
    }
    return false;
  }

  // ------------------------------------------------------------------ discounts
  const disc = { sku: null };

  function openDiscount(sku) {
    if (cartLocked()) return;
    disc.sku = sku || null;
    const priced = priceCart();
    let max;
    let current;
    if (sku) {
      const x = priced.lines.find(function (y) { return y.l.sku === sku; });
      if (!x) return;
      max = x.gross;
      current = x.l.discount_cents || 0;
      $("disc-what").textContent = x.p.name + " · " + x.l.qty + " × " + fmt(x.p.price_cents) + " = " + fmt(x.gross);
    } else {
      max = priced.lines.reduce(function (a, x) { return a + x.after; }, 0);
      current = S.cartDiscount;
      $("disc-what").textContent = "Whole sale · " + fmt(max);
    }
    disc.max = max;
    $("disc-title").textContent = sku ? "Line discount" : "Cart discount";
    $("disc-input").value = current ? (current / 100).toFixed(2) : "";
    show($("disc-error"), false);
    const quick = $("disc-quick");
    quick.textContent = "";
    [5, 10, 20, 50].forEach(function (pct) {
      const v = roundHalfUpDiv(max * pct, 100);
      quick.appendChild(el("button", {
        type: "button", class: "btn btn-quick", text: pct + "% (" + fmt(v) + ")",
        onclick: function () { $("disc-input").value = (v / 100).toFixed(2); },
      }));
    });
    show($("disc-remove"), current > 0);
    $("dlg-disc").querySelector(".dlg-hint").hidden = isManager(S.user);
    openDialog("dlg-disc");
    if (finePointer) $("disc-input").focus({ preventScroll: true });
  }

  async function applyDiscount(remove) {
    const cents = remove ? 0 : parseMoney($("disc-input").value) || 0;
    if (isNaN(cents) || cents < 0 || cents > disc.max) {
      $("disc-error").textContent = "The discount must be between " + fmt(0) + " and " + fmt(disc.max) + ".";
      show($("disc-error"), true);
      return;
    }
    if (cents > 0 && !S.approver) {
      const who = await requestApproval("Discount of " + fmt(cents) + (disc.sku ? " on " + (S.products.get(disc.sku) || {}).name : " on the sale"));
      if (who === undefined) return; // cancelled
      if (who) S.approver = who;
    }
    if (disc.sku) {
      const l = cartLine(disc.sku);
      if (l) l.discount_cents = cents;
    } else {
      S.cartDiscount = cents;
    }
    const anyDisc = S.cartDiscount > 0 || S.cart.some(function (l) { return l.discount_cents > 0; });
    if (!anyDisc) S.approver = null;
    closeDialog("dlg-disc");
    cartChanged();
  }

  // ------------------------------------------------------------------ refund / void
  function openRefund(receiptNo) {
    S.refund = null;
    $("refund-receipt").value = receiptNo || "";
    show($("refund-error"), false);
    show($("refund-sale"), false);
    show($("refund-actions"), false);
    show($("refund-done"), false);
    openDialog("dlg-refund");
    if (finePointer) $("refund-receipt").focus({ preventScroll: true });
    if (receiptNo) findSale(receiptNo);
  }

  async function findSale(receiptNo) {
    receiptNo = String(receiptNo || "").trim().toUpperCase();
    if (!receiptNo) return;
    show($("refund-error"), false);
    show($("refund-done"), false);
    try {
      const data = await api.get("/api/sales/by-receipt/" + encodeURIComponent(receiptNo));
      S.refund = data.sale || data;
      renderRefund();
    } catch (e) {
      S.refund = null;
      show($("refund-sale"), false);
      show($("refund-actions"), false);
      $("refund-error").textContent = e.status === 404 ? "No sale with receipt number " + receiptNo + "." : errorText(e);
      show($("refund-error"), true);
    }
  }

  function saleStatus(sale) {
    return sale.status || (sale.voided ? "voided" : "completed");
  }

  function refundedQty(sale, sku) {
    const line = (sale.lines || []).find(function (l) { return l.sku === sku; });
    if (line && typeof line.refunded_quantity === "number") return line.refunded_quantity;
    if (line && typeof line.refunded_qty === "number") return line.refunded_qty;
    let n = 0;
    (sale.refunds || []).forEach(function (r) {
      (r.lines || []).forEach(function (l) { if (l.sku === sku) n += l.quantity || 0; });
    });
    return n;
  }

  function renderRefund(prevSel) {
    const sale = S.refund;
    prevSel = prevSel || {};
    const status = saleStatus(sale);
    $("refund-meta").textContent = "";
    $("refund-meta").appendChild(el("div", {}, [
      el("strong", { text: sale.receipt_no || "" }),
      el("span", { text: "  ·  " + fmtDate(sale.created_at || sale.created_ms) + "  ·  " + fmt(sale.total_cents) }),
      el("span", { class: "tag tag-" + status, "data-testid": "refund-status", "data-status": status, text: status.replace(/_/g, " ") }),
    ]));
    const tbody = $("refund-lines");
    tbody.textContent = "";
    sale._sel = {};
    (sale.lines || []).forEach(function (l) {
      const qty = l.quantity;
      const left = Math.max(0, qty - refundedQty(sale, l.sku));
      sale._sel[l.sku] = 0;
      const qtyEl = el("span", { class: "qty", "data-testid": "refund-qty-" + l.sku, text: "0" });
      const amt = el("td", { class: "num", text: fmt(0) });
      const unitNet = qty ? Math.floor((l.total_cents != null ? l.total_cents : l.unit_price_cents * qty) / qty) : 0;
      function set(n) {
        n = Math.max(0, Math.min(left, n));
        sale._sel[l.sku] = n;
        qtyEl.textContent = String(n);
        amt.textContent = fmt(n === qty && l.total_cents != null ? l.total_cents : unitNet * n);
      }
      tbody.appendChild(el("tr", { "data-testid": "refund-line-" + l.sku }, [
        el("td", {}, [el("div", { text: l.name || l.sku }), el("div", { class: "r-sub", text: fmt(l.unit_price_cents) + (status === "voided" ? " · voided" : left < qty ? " · " + (qty - left) + " already refunded" : "") })]),
        el("td", { class: "num", text: String(qty) }),
        el("td", { class: "num" }, [el("span", { class: "stepper" }, [
          el("button", { type: "button", class: "btn btn-step", text: "−", disabled: left === 0, "data-testid": "refund-minus-" + l.sku, onclick: function () { set(sale._sel[l.sku] - 1); } }),
          qtyEl,
          el("button", { type: "button", class: "btn btn-step", text: "+", disabled: left === 0, "data-testid": "refund-plus-" + l.sku, onclick: function () { set(sale._sel[l.sku] + 1); } }),
        ])]),
        amt,
      ]));
      set(prevSel[l.sku] || 0);
    });
    show($("refund-sale"), true);
    const open = status !== "voided" && status !== "refunded";
    show($("refund-done"), false);
    show($("refund-actions"), true);
    $("btn-void").disabled = !open;
    $("btn-refund-all").disabled = !open;
    $("btn-refund-sel").disabled = !open;
  }

  async function doRefund(kind, problem) {
    const sale = S.refund;
    if (!sale) return;
    let body = {};
    let what;
    if (kind === "selected") {
      const lines = Object.keys(sale._sel || {}).filter(function (k) { return sale._sel[k] > 0; })
        .map(function (k) { return { sku: k, quantity: sale._sel[k] }; });
      if (!lines.length) {
        $("refund-error").textContent = "Choose how many of which item to refund with + first.";
        show($("refund-error"), true);
        return;
      }
      body.lines = lines;
      what = "Refund of " + lines.length + " line" + (lines.length > 1 ? "s" : "") + " on " + sale.receipt_no;
    } else if (kind === "all") {
      what = "Full refund of " + sale.receipt_no;
    } else {
      what = "Void " + sale.receipt_no;
    }
    const who = await requestApproval(what, problem);
    if (who === undefined) return;
    if (who) body.approver = who;
    const path = "/api/sales/" + encodeURIComponent(sale.sale_id || sale.id) + (kind === "void" ? "/void" : "/refund");
    ["btn-void", "btn-refund-all", "btn-refund-sel"].forEach(function (id) { $(id).disabled = true; });
    show($("refund-error"), false);
    try {
      const res = await api.post(path, body, { sessionHook: false });
      const after = res.sale || null;
      const r = after && after.refund ? after.refund : res.refund || {};
      const amount = r.amount_cents != null ? r.amount_cents : res.amount_cents;
      $("refund-done").textContent = (kind === "void" ? "Sale voided." : "Refund recorded.") +
        (amount != null ? " Give back " + fmt(Math.abs(amount)) + "." : "") +
        (r.status === "offline" ? " (recorded offline, will sync)" : "");
      toast(kind === "void" ? sale.receipt_no + " voided" : "Refund on " + sale.receipt_no + " recorded", "info");
      if (after && after.lines) {
        S.refund = after;
        renderRefund();
      } else {
        await findSale(sale.receipt_no);
      }
      show($("refund-done"), true);
    } catch (e) {
      renderRefund(sale._sel);
      const problem = approverProblem(e);
      if (problem && e.code !== "LOCKED") {
        // wrong PIN: keep the selection and ask again
        $("refund-error").textContent = problem;
        show($("refund-error"), true);
        doRefund(kind, problem);
        return;
      }
      if (sessionLost(e)) return;
      $("refund-error").textContent = (problem || errorText(e));
      show($("refund-error"), true);
    }
  }

  // ------------------------------------------------------------------ cluster status
  function applyClusterStatus(st) {
    S.cluster = Object.assign({}, S.cluster || {}, st || {});
    const c = S.cluster;
    const hint = S.offlineSince;
    // The offline hint lasts until the waiting sales are through or the master changed.
    if (hint && (c.outbox_pending === 0 || c.master_id !== hint.master_id ||
        JSON.stringify(c.epoch) !== JSON.stringify(hint.epoch))) {
      S.offlineSince = null;
    }
    renderPill();
  }

  function renderPill() {
    const pill = $("cluster-status");
    const banner = $("offline-banner");
    const c = S.cluster || {};
    let state = c.state || "online";
    // A node still holding a link to a silent master says "online" until the failover
    // timeout; a sale of ours that had to be kept locally says otherwise.
    if (state === "online" && S.offlineSince && (c.outbox_pending || 0) > 0) state = "offline";
    let text;
    let bannerText = "";
    const waiting = c.outbox_pending || 0;
    const waitTxt = waiting + " sale" + (waiting === 1 ? "" : "s") + " waiting";
    if (!S.httpUp) {
      state = "offline";
      text = "No connection to this till's server";
      bannerText = "This screen cannot reach its till server. Reconnecting… Sales cannot be taken until it is back.";
    } else if (state === "online") {
      text = "Online · master " + (c.master_id != null ? c.master_id : "?");
      if (waiting) text += " · syncing " + waiting;
    } else if (state === "failover") {
      text = "Failover in progress" + (waiting ? " · " + waitTxt : "");
      bannerText = "The master till is changing. Keep selling: sales are kept on this till and sent on automatically.";
    } else {
      state = "offline";
      text = "Offline · " + waitTxt;
      bannerText = "Offline: this till is selling on its own. " + waitTxt + " to sync — they are sent automatically when the master is back.";
    }
    if (!S.socketUp && S.httpUp && state === "online") text += " · live updates reconnecting";
    pill.dataset.state = state;
    pill.className = "pill pill-" + state;
    pill.textContent = text;
    pill.title = c.epoch ? "epoch " + JSON.stringify(c.epoch) + (c.role ? " · this till is " + c.role : "") : "";
    banner.textContent = bannerText;
    banner.dataset.state = state;
    show(banner, !!bannerText);
  }

  let clusterTimer = null;
  async function refreshCluster() {
    if (!S.user) return;
    try {
      const c = await api.get("/api/cluster", null, { timeoutMs: 4000 });
      S.httpUp = true;
      applyClusterStatus({ state: c.state, role: c.role, master_id: c.master_id, epoch: c.epoch, outbox_pending: c.outbox_pending });
      if (S.config.device_id == null && c.device_id != null) {
        S.config.device_id = c.device_id;
        $("till-id").textContent = "Till " + c.device_id;
      }
    } catch (e) {
      if (e.status === 0) {
        S.httpUp = false;
        renderPill();
      }
    }
  }

  function startClusterPolling() {
    if (clusterTimer) return;
    clusterTimer = setInterval(function () {
      if (S.user) refreshCluster();
    }, 3000);
  }

  // ------------------------------------------------------------------ Socket.IO
  function connectSocket() {
    if (typeof window.io !== "function") {
      toast("Live updates unavailable (Socket.IO client missing).", "error");
      return;
    }
    if (S.socket) {
      if (!S.socket.connected) S.socket.connect();
      return;
    }
    const sock = window.io({
      path: "/socket.io",
      auth: function (cb) { cb({ token: api.getToken() }); },
      transports: ["websocket", "polling"],
      tryAllTransports: true,
      reconnection: true,
      reconnectionDelay: 300,
      reconnectionDelayMax: 2000,
      timeout: 5000,
    });
    S.socket = sock;
    let everConnected = false;
    sock.on("connect", function () {
      S.socketUp = true;
      S.httpUp = true;
      if (everConnected) {
        loadCatalog(); // stock may have moved while we were away
      }
      everConnected = true;
      refreshCluster();
      renderPill();
    });
    sock.on("disconnect", function () {
      S.socketUp = false;
      renderPill();
      refreshCluster();
    });
    sock.on("connect_error", function () {
      S.socketUp = false;
      renderPill();
    });
    sock.on("stock_changed", function (m) {
      if (m && m.sku != null) updateStock(m.sku, m.stock);
    });
    sock.on("critical_event", function (m) {
      if (!m || m.sku == null) return;
      updateStock(m.sku, m.stock);
      const p = S.products.get(m.sku);
      const name = m.name || (p && p.name) || m.sku;
      const inCart = !!cartLine(m.sku);
      if (m.kind === "oversold") toast(name + " is oversold (" + m.stock + ")." + (inCart ? " Check the cart." : ""), "warn");
      else toast(name + " just sold out." + (inCart ? " It is in this cart: remove it or the sale will be refused." : ""), inCart ? "warn" : "info");
    });
    sock.on("conflict", function (m) {
      if (!m) return;
      if (S.config.device_id != null && Number(m.origin_device) !== Number(S.config.device_id)) return;
      const p = S.products.get(m.sku);
      toast("Stock conflict on one of this till's sales: " + (p ? p.name : m.sku || "") +
        (m.kind ? " (" + String(m.kind).replace(/_/g, " ") + ")" : "") + ". The manager has been told.", "warn", 15000);
    });
    sock.on("master_changed", function (m) {
      if (!m) return;
      applyClusterStatus({ master_id: m.master_id, epoch: m.epoch });
      toast("Master is now till " + m.master_id + ".", "info");
      refreshCluster();
    });
    // Beyond the contract's events: the node also says when a product was edited
    // (price, name, active) and when its catalog was reloaded wholesale.
    sock.on("product_changed", function (m) {
      if (m && m.sku != null) refreshProduct(m.sku);
    });
    sock.on("catalog_reloaded", function () { loadCatalog(); });
    sock.on("cluster_status", function (m) {
      S.httpUp = true;
      applyClusterStatus(m);
    });
  }

  function disconnectSocket() {
    if (S.socket) {
      S.socket.removeAllListeners();
      S.socket.disconnect();
      S.socket = null;
    }
    S.socketUp = false;
  }

  // ------------------------------------------------------------------ idle lock
  function checkIdle() {
    if (!S.user) return;
    const limit = 1000 * (Number(S.config.idle_lock_s) || 0);
    if (!limit) return;
    if (S.pay.posting || S.pay.uncertain) return;
    if (Date.now() - S.lastActivity > limit) {
      toast("Locked after " + Math.round(limit / 1000) + " s without use.", "info");
      logout(true);
    }
  }

  // ------------------------------------------------------------------ wiring
  function wire() {
    buildPinPad($("pin-pad"), pinDigit, pinBack, pinEnter, "pin-");
    buildPinPad($("approve-pad"), function (d) {
      if (approval.pin.length < 12) approval.pin += d;
      renderDots($("approve-dots"), approval.pin.length);
    }, function () {
      approval.pin = approval.pin.slice(0, -1);
      renderDots($("approve-dots"), approval.pin.length);
    }, approveEnter, "approve-");
    renderDots($("pin-dots"), 0);
    $("pin-back").addEventListener("click", function () { showLogin({}); });

    $("scan-input").addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") {
        ev.preventDefault();
        const v = ev.target.value;
        ev.target.value = "";
        scanBarcode(v);
      }
    });
    let searchTimer = null;
    $("search-input").addEventListener("input", function (ev) {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(function () {
        S.search = ev.target.value;
        renderGrid();
      }, 80);
    });
    $("search-input").addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") {
        const skus = visibleSkus();
        if (skus.length === 1) {
          addToCart(skus[0], 1, "search");
          ev.target.value = "";
          S.search = "";
          renderGrid();
        }
      }
    });

    $("pay-cash").addEventListener("click", function () { openPay("cash"); });
    $("pay-card").addEventListener("click", function () { openPay("card"); });
    $("pay-modes").addEventListener("click", function (ev) {
      const b = ev.target.closest(".seg-btn");
      if (b && !S.pay.posting && !S.pay.uncertain) {
        $("card-input").value = "";
        $("tendered-input").value = "";
        setPayMode(b.dataset.mode);
      }
    });
    ["card-input", "tendered-input"].forEach(function (id) {
      $(id).addEventListener("input", function () { show($("pay-error"), false); updatePay(); });
      $(id).addEventListener("focus", function () { S.pay.activeInput = $(id); });
      $(id).addEventListener("keydown", function (ev) {
        if (ev.key === "Enter") { ev.preventDefault(); confirmPay(); }
      });
    });
    buildKeypad($("pay-keypad"), function () { return S.pay.activeInput; }, updatePay);
    $("pay-confirm").addEventListener("click", confirmPay);

    buildKeypad($("disc-keypad"), function () { return $("disc-input"); }, function () {});
    $("disc-apply").addEventListener("click", function () { applyDiscount(false); });
    $("disc-remove").addEventListener("click", function () { applyDiscount(true); });
    $("disc-input").addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") { ev.preventDefault(); applyDiscount(false); }
    });
    $("btn-cart-disc").addEventListener("click", function () { openDiscount(null); });
    $("btn-clear").addEventListener("click", function () {
      if (S.pay.uncertain && !window.confirm("The last payment may have been recorded by the till " +
          "server. Abandon it anyway? (Check the sales list in the back office.)")) return;
      clearCart();
    });

    $("receipt-print").addEventListener("click", function () { window.print(); });
    $("receipt-done").addEventListener("click", function () { closeDialog("dlg-receipt"); });

    $("btn-refund").addEventListener("click", function () { openRefund(""); });
    $("refund-find").addEventListener("submit", function (ev) {
      ev.preventDefault();
      findSale($("refund-receipt").value);
    });
    $("btn-refund-sel").addEventListener("click", function () { doRefund("selected"); });
    $("btn-refund-all").addEventListener("click", function () { doRefund("all"); });
    $("btn-void").addEventListener("click", function () { doRefund("void"); });

    $("btn-lock").addEventListener("click", function () { logout(true); });
    $("btn-logout").addEventListener("click", function () { logout(false); });

    document.querySelectorAll("[data-close]").forEach(function (b) {
      b.addEventListener("click", function () { closeDialog(b.closest(".dialog").id); });
    });
    $("overlay").addEventListener("click", function () {
      const top = topDialog();
      if (top && top !== "dlg-pay" && top !== "dlg-receipt") closeDialog(top);
    });

    document.addEventListener("keydown", onGlobalKey);
    ["pointerdown", "touchstart", "wheel"].forEach(function (t) {
      document.addEventListener(t, function () { S.lastActivity = Date.now(); }, { passive: true });
    });
    // a tap on the background gives the barcode field its focus back
    document.addEventListener("click", function (ev) {
      if (!S.user || anyDialogOpen()) return;
      const t = ev.target;
      if (t.closest("input, textarea, select")) return;
      if (t.closest(".tile, .cart, .topbar, .cats")) return;
      focusScan();
    });

    api.onUnauthorized(function () {
      if (!S.user) return;
      const prev = S.user;
      disconnectSocket();
      api.clearSession();
      S.user = null;
      S.lockPrevUser = prev;
      showLogin({ user: prev, message: "Session expired — enter your PIN again" });
    });

    setInterval(checkIdle, 5000);
    startClusterPolling();
    window.addEventListener("online", refreshCluster);
  }

  async function boot() {
    wire();
    renderCart();
    // shop name for the login screen (may need a session on some nodes: ignore then)
    api.get("/api/config/shop", null, { token: null }).then(function (c) {
      Object.assign(S.config, c);
      $("login-shop").textContent = S.config.shop_name || "lanpos";
    }).catch(function () {});
    await loadUsers();
    watchUserTiles();
    // A reload keeps the session (sessionStorage): go straight back to selling.
    const token = api.getToken();
    const user = api.getUser();
    if (token && user) {
      try {
        await api.get("/api/cluster", null, { timeoutMs: 4000 });
        onLoggedIn(user);
        return;
      } catch (e) {
        if (e.status === 401) api.clearSession();
      }
    }
    showLogin({});
  }

  // Test and debugging handle (read-mostly).
  window.lanposTill = {
    state: S,
    fmt: fmt,
    parseMoney: parseMoney,
    priceCart: priceCart,
    applyClusterStatus: applyClusterStatus,
    refreshCluster: refreshCluster,
    setHttpUp: function (up) { S.httpUp = !!up; renderPill(); },
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
  else boot();
})();
