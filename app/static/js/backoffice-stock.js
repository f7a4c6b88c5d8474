/*
 * Back office · Stock: server-side paged, searched and sorted product list with live
 * stock (Socket.IO stock_changed / critical_event / product_changed), receive and
 * adjust with a reason, create and edit products. An edit that lost to another
 * (409 CONFLICT) shows both versions and who won.
 */
(function () {
  "use strict";

  const BO = window.BO;
  const api = BO.api;
  const $ = BO.$;
  const el = BO.el;
  const PAGE = 50;

  const S = {
    search: "", category: "", sort: "name", lowOnly: false, inactive: false,
    offset: 0, total: 0,
    rows: new Map(),      // sku -> product (the visible page)
    seq: 0,               // request sequence: late answers for old filters are dropped
    move: null,           // {kind, product}
    edit: null,           // product being edited (null = create)
    conflict: null,       // {current, yours}
    categories: [],
  };

  // ------------------------------------------------------------------ loading
  async function load(opts) {
    opts = opts || {};
    const mySeq = ++S.seq;
    const query = { limit: PAGE, offset: S.offset, sort: S.sort };
    if (S.search) query.search = S.search;
    if (S.category) query.category = S.category;
    if (S.lowOnly) query.low_stock = 1;
    if (S.inactive) query.include_inactive = 1;
    $("stock-wrap").classList.add("is-loading");
    try {
      const data = await api.get("/api/products", query);
      if (mySeq !== S.seq) return;
      S.total = data.total || 0;
      if (S.offset > 0 && S.offset >= S.total) {  // the page emptied under us
        S.offset = Math.max(0, Math.floor((S.total - 1) / PAGE) * PAGE);
        return load(opts);
      }
      render(data.products || []);
    } catch (e) {
      if (mySeq === S.seq) BO.toast("Could not load products: " + BO.errorText(e), "error");
    } finally {
      if (mySeq === S.seq) $("stock-wrap").classList.remove("is-loading");
    }
  }

  async function loadCategories() {
    try {
      const data = await api.get("/api/categories");
      S.categories = data.categories || [];
    } catch (e) {
      S.categories = [];
    }
    const sel = $("stock-category");
    const keep = sel.value;
    sel.textContent = "";
    sel.appendChild(el("option", { value: "", text: "All categories" }));
    S.categories.forEach(function (c) {
      sel.appendChild(el("option", { value: c.name, text: c.name + " (" + c.products + ")" }));
    });
    sel.value = keep;
    const dl = $("pf-categories");
    dl.textContent = "";
    S.categories.forEach(function (c) { dl.appendChild(el("option", { value: c.name })); });
  }

  // ------------------------------------------------------------------ rendering
  function stockState(p) {
    if (p.stock < 0) return "oversold";
    if (p.stock === 0) return "soldout";
    if (p.stock <= p.low_stock_threshold) return "low";
    return "ok";
  }

  function stockLabel(p) {
    const st = stockState(p);
    if (st === "oversold") return "oversold";
    if (st === "soldout") return "sold out";
    if (st === "low") return "low";
    return "";
  }

  function rowFor(p) {
    const tr = el("tr", { "data-testid": "stock-row-" + p.sku, "data-sku": p.sku });
    paintRow(tr, p);
    return tr;
  }

  function paintRow(tr, p) {
    const st = stockState(p);
    tr.className = "row stock-" + st + (p.active ? "" : " is-inactive");
    tr.dataset.stock = String(p.stock);
    tr.dataset.state = st;
    tr.textContent = "";
    const label = stockLabel(p);
    tr.append(
      el("td", { class: "mono" }, [p.sku]),
      el("td", { class: "name" }, [
        el("span", { class: "pname", text: p.name }),
        p.active ? null : el("span", { class: "tag tag-muted", text: "inactive" }),
        p.barcode ? el("span", { class: "sub mono", text: p.barcode }) : null,
      ]),
      el("td", { class: "muted", text: p.category || "–" }),
      el("td", { class: "num", text: BO.money(p.price_cents) }),
      el("td", { class: "num muted", text: BO.rateLabel(p.tax_rate_bp) }),
      el("td", { class: "num stock-cell" }, [
        label ? el("span", { class: "tag tag-" + st, text: label }) : null,
        el("strong", { class: "stock-num", "data-testid": "stock-" + p.sku, text: String(p.stock) }),
      ]),
      el("td", { class: "num muted", text: String(p.low_stock_threshold) }),
      el("td", { class: "actions" }, [
        el("button", { type: "button", class: "btn btn-small btn-secondary", "data-testid": "receive-" + p.sku, text: "Receive",
          onclick: function () { openMove("receive", p.sku); } }),
        el("button", { type: "button", class: "btn btn-small btn-secondary", "data-testid": "adjust-" + p.sku, text: "Adjust",
          onclick: function () { openMove("adjust", p.sku); } }),
        el("button", { type: "button", class: "btn btn-small btn-ghost", "data-testid": "edit-" + p.sku, text: "Edit",
          onclick: function () { openEdit(p.sku); } }),
      ]),
    );
  }

  function render(products) {
    S.rows = new Map();
    const body = $("stock-body");
    const frag = document.createDocumentFragment();
    products.forEach(function (p) {
      S.rows.set(p.sku, p);
      frag.appendChild(rowFor(p));
    });
    body.textContent = "";
    body.appendChild(frag);
    BO.show($("stock-empty"), products.length === 0);
    const from = S.total ? S.offset + 1 : 0;
    const to = S.offset + products.length;
    $("stock-range").textContent = from + "–" + to + " of " + S.total.toLocaleString("en");
    $("stock-prev").disabled = S.offset === 0;
    $("stock-next").disabled = to >= S.total;
    document.querySelectorAll(".stock-table th.sortable").forEach(function (th) {
      const key = th.dataset.sort;
      const dir = S.sort === key ? "asc" : (S.sort === "-" + key ? "desc" : "");
      th.dataset.dir = dir;
      th.setAttribute("aria-sort", dir === "asc" ? "ascending" : dir === "desc" ? "descending" : "none");
    });
    summary();
  }

  function summary() {
    let low = 0;
    let out = 0;
    S.rows.forEach(function (p) {
      const st = stockState(p);
      if (st === "low") low++;
      else if (st !== "ok") out++;
    });
    const parts = [S.total.toLocaleString("en") + " product" + (S.total === 1 ? "" : "s") +
      (S.search || S.category || S.lowOnly ? " match" : "")];
    if (out) parts.push(out + " sold out on this page");
    if (low) parts.push(low + " low on this page");
    $("stock-summary").textContent = parts.join(" · ");
  }

  function rowEl(sku) {
    return document.querySelector('tr[data-sku="' + (window.CSS && CSS.escape ? CSS.escape(sku) : sku) + '"]');
  }

  function updateStock(sku, stock, flash) {
    const p = S.rows.get(sku);
    if (!p || typeof stock !== "number") return;
    const changed = p.stock !== stock;
    p.stock = stock;
    const tr = rowEl(sku);
    if (!tr) return;
    paintRow(tr, p);
    if (changed && flash !== false) {
      tr.classList.remove("flash");
      void tr.offsetWidth;
      tr.classList.add("flash");
    }
    summary();
  }

  async function refreshProduct(sku) {
    if (!S.rows.has(sku)) return;
    try {
      const data = await api.get("/api/products/" + encodeURIComponent(sku));
      const p = data.product;
      const old = S.rows.get(sku);
      if (!old) return;
      Object.assign(old, p);
      const tr = rowEl(sku);
      if (tr) paintRow(tr, old);
      summary();
    } catch (e) { /* next reload shows it */ }
  }

  // ------------------------------------------------------------------ receive / adjust
  function openMove(kind, sku) {
    const p = S.rows.get(sku);
    if (!p) return;
    S.move = { kind: kind, sku: sku };
    const receive = kind === "receive";
    $("move-title").textContent = receive ? "Receive stock" : "Adjust stock";
    $("move-what").textContent = p.name + " (" + p.sku + ") — now " + p.stock + " in stock";
    $("move-qty-label").textContent = receive ? "Quantity received" : "Change (+ found, − lost/damaged)";
    $("move-qty-hint").textContent = receive ? "" : "Use a negative number to take stock off, e.g. -2.";
    $("move-reason-label").textContent = receive ? "Reason / delivery note (optional)" : "Reason (required)";
    $("move-submit").textContent = receive ? "Receive" : "Adjust";
    const qty = $("move-qty");
    qty.value = "";
    qty.min = receive ? "1" : "-100000";
    qty.max = "100000";
    $("move-reason").value = "";
    $("move-reason").required = !receive;
    const dl = $("move-reasons");
    dl.textContent = "";
    (receive ? ["Delivery", "Return to stock", "Transfer in"] : ["Damaged", "Expired", "Theft / shrinkage", "Found in stock room", "Counting error"])
      .forEach(function (r) { dl.appendChild(el("option", { value: r })); });
    BO.show($("move-error"), false);
    movePreview();
    BO.openDialog("dlg-move");
  }

  function movePreview() {
    const p = S.move && S.rows.get(S.move.sku);
    const q = parseInt($("move-qty").value, 10);
    if (!p || !isFinite(q) || q === 0) { $("move-preview").textContent = ""; return; }
    $("move-preview").textContent = "Stock after: " + (p.stock + q);
  }

  async function submitMove(ev) {
    ev.preventDefault();
    if (!S.move) return;
    const receive = S.move.kind === "receive";
    const qtyText = $("move-qty").value.trim();
    const q = /^-?\d+$/.test(qtyText) ? parseInt(qtyText, 10) : NaN;
    const reason = $("move-reason").value.trim();
    const err = $("move-error");
    let problem = "";
    if (!isFinite(q) || q === 0) problem = "Enter a whole number of units" + (receive ? "." : " (not 0).");
    else if (receive && q < 0) problem = "A delivery adds stock: use Adjust to take stock off.";
    else if (Math.abs(q) > 100000) problem = "At most 100,000 units at once.";
    else if (!receive && !reason) problem = "An adjustment needs a reason.";
    if (problem) { err.textContent = problem; BO.show(err, true); return; }
    const btn = $("move-submit");
    btn.disabled = true;
    try {
      const body = { sku: S.move.sku, quantity: q };
      if (reason) body.reason = reason;
      const res = await api.post(receive ? "/api/stock/receive" : "/api/stock/adjust", body);
      updateStock(S.move.sku, res.stock);
      BO.closeDialog("dlg-move");
      BO.toast((receive ? "Received " + q : "Adjusted by " + (q > 0 ? "+" : "") + q) + " · " + S.move.sku +
        " now " + res.stock + (res.status === "offline" ? " (saved offline, will sync)" : ""), "ok");
    } catch (e) {
      err.textContent = BO.errorText(e);
      BO.show(err, true);
    } finally {
      btn.disabled = false;
    }
  }

  // ------------------------------------------------------------------ create / edit
  const FIELDS = ["name", "price_cents", "tax_rate_bp", "category", "barcode", "low_stock_threshold", "active"];
  const FIELD_LABELS = { name: "Name", price_cents: "Price", tax_rate_bp: "Tax rate", category: "Category",
    barcode: "Barcode", low_stock_threshold: "Low-stock threshold", active: "Active", version: "Version" };

  function fieldText(key, v) {
    if (v === null || v === undefined || v === "") return "–";
    if (key === "price_cents") return BO.money(v);
    if (key === "tax_rate_bp") return BO.rateLabel(v);
    if (key === "active") return v ? "yes" : "no";
    return String(v);
  }

  function ensureTaxOption(bp) {
    const sel = $("pf-tax");
    if (!Array.prototype.some.call(sel.options, function (o) { return Number(o.value) === bp; })) {
      sel.appendChild(el("option", { value: String(bp), text: BO.rateLabel(bp) }));
    }
    sel.value = String(bp);
  }

  function fillForm(p) {
    $("pf-sku").value = p ? p.sku : "";
    $("pf-sku").readOnly = !!p;
    $("pf-name").value = p ? p.name : "";
    $("pf-price").value = p ? BO.centsToInput(p.price_cents) : "";
    ensureTaxOption(p ? p.tax_rate_bp : 700);
    $("pf-category").value = p && p.category ? p.category : (S.category || "");
    $("pf-barcode").value = p && p.barcode ? p.barcode : "";
    $("pf-threshold").value = p ? String(p.low_stock_threshold) : "5";
    $("pf-active").checked = p ? !!p.active : true;
    $("pf-stock").value = "0";
    BO.show($("pf-stock-wrap"), !p);
    $("pf-meta").textContent = p ? "Editing version " + p.version + (p.updated_by ? " · last changed by " + p.updated_by : "") +
      " · stock " + p.stock + " (change stock with Receive / Adjust)" : "";
  }

  function openCreate() {
    S.edit = null;
    S.conflict = null;
    $("product-title").textContent = "New product";
    fillForm(null);
    BO.show($("pf-conflict"), false);
    BO.show($("pf-error"), false);
    $("pf-submit").disabled = false;
    BO.openDialog("dlg-product");
  }

  async function openEdit(sku) {
    S.conflict = null;
    BO.show($("pf-conflict"), false);
    BO.show($("pf-error"), false);
    let p = S.rows.get(sku);
    try {
      p = (await api.get("/api/products/" + encodeURIComponent(sku))).product;  // the freshest version
    } catch (e) { /* edit what we have */ }
    if (!p) return;
    S.edit = p;
    $("product-title").textContent = "Edit " + p.sku;
    fillForm(p);
    $("pf-submit").disabled = false;
    BO.openDialog("dlg-product");
  }

  function readForm() {
    const out = {};
    out.name = $("pf-name").value.trim();
    out.price_cents = BO.parseMoney($("pf-price").value);
    out.tax_rate_bp = parseInt($("pf-tax").value, 10);
    const cat = $("pf-category").value.trim();
    out.category = cat || null;
    const bc = $("pf-barcode").value.trim();
    out.barcode = bc || null;
    out.low_stock_threshold = parseInt($("pf-threshold").value, 10);
    out.active = $("pf-active").checked;
    return out;
  }

  function formProblem(f) {
    if (!f.name) return "Give the product a name.";
    if (f.price_cents === null) return "Enter the price like 2.49.";
    if (!isFinite(f.low_stock_threshold) || f.low_stock_threshold < 0) return "The low-stock threshold is a whole number ≥ 0.";
    if (f.barcode && !/^\d{8,14}$/.test(f.barcode)) return "A barcode is 8 to 14 digits.";
    return "";
  }

  async function submitProduct(ev) {
    ev.preventDefault();
    const err = $("pf-error");
    BO.show(err, false);
    const f = readForm();
    const problem = formProblem(f);
    if (problem) { err.textContent = problem; BO.show(err, true); return; }
    const btn = $("pf-submit");
    btn.disabled = true;
    try {
      if (!S.edit) {
        const sku = $("pf-sku").value.trim();
        if (!/^[A-Za-z0-9._-]{1,64}$/.test(sku)) throw new api.ApiError("VALIDATION_ERROR", "The SKU may use letters, digits, . _ and - only");
        const stockText = $("pf-stock").value.trim() || "0";
        if (!/^\d+$/.test(stockText)) throw new api.ApiError("VALIDATION_ERROR", "Initial stock is a whole number ≥ 0");
        const body = { sku: sku, name: f.name, price_cents: f.price_cents, tax_rate_bp: f.tax_rate_bp,
          low_stock_threshold: f.low_stock_threshold, active: f.active, stock: parseInt(stockText, 10) };
        if (f.category) body.category = f.category;
        if (f.barcode) body.barcode = f.barcode;
        const res = await api.post("/api/products", body);
        BO.closeDialog("dlg-product");
        BO.toast("Created " + res.product.sku + " · " + res.product.name, "ok");
        S.search = res.product.sku;
        $("stock-search").value = S.search;
        S.offset = 0;
        loadCategories();
        load();
      } else {
        const base = S.edit;
        const changes = {};
        FIELDS.forEach(function (k) {
          const now = f[k];
          const was = base[k] === undefined ? null : base[k];
          if (now === null && (k === "category" || k === "barcode")) return;  // clearing is not supported by the API
          if (now !== was) changes[k] = now;
        });
        if (!Object.keys(changes).length) {
          BO.closeDialog("dlg-product");
          BO.toast("Nothing changed.", "info");
          return;
        }
        const res = await api.patch("/api/products/" + encodeURIComponent(base.sku),
          Object.assign({ base_version: base.version }, changes));
        BO.closeDialog("dlg-product");
        BO.toast("Saved " + res.product.sku + " (version " + res.product.version + ")", "ok");
        const row = S.rows.get(base.sku);
        if (row) {
          Object.assign(row, res.product);
          const tr = rowEl(base.sku);
          if (tr) paintRow(tr, row);
        }
      }
    } catch (e) {
      if (e.code === "CONFLICT" && e.details && e.details.current) showConflict(e.details);
      else { err.textContent = BO.errorText(e); BO.show(err, true); }
    } finally {
      btn.disabled = false;
    }
  }

  function showConflict(d) {
    const current = d.current || {};
    const yours = d.yours || {};
    S.conflict = { current: current, yours: yours };
    const winner = (d.winner && d.winner.user) || "another user";
    $("pf-conflict-who").textContent = winner + " saved a change first (now version " +
      (current.version != null ? current.version : d.current_version) + "; you started from version " + d.base_version +
      "). Your change was not applied.";
    const body = $("pf-conflict-rows");
    body.textContent = "";
    const keys = Object.keys(yours).length ? Object.keys(yours) : FIELDS;
    const shown = keys.concat(FIELDS.filter(function (k) {
      return keys.indexOf(k) < 0 && S.edit && current[k] !== undefined && current[k] !== S.edit[k];
    }));
    shown.forEach(function (k) {
      const differs = Object.prototype.hasOwnProperty.call(yours, k) && yours[k] !== current[k];
      body.appendChild(el("tr", { class: differs ? "differs" : "", "data-field": k }, [
        el("th", { scope: "row", text: FIELD_LABELS[k] || k }),
        el("td", { "data-testid": "conflict-current-" + k, text: fieldText(k, current[k]) }),
        el("td", { "data-testid": "conflict-yours-" + k,
          text: Object.prototype.hasOwnProperty.call(yours, k) ? fieldText(k, yours[k]) : "(unchanged)" }),
      ]));
    });
    BO.show($("pf-conflict"), true);
    $("pf-submit").disabled = true;
    const row = S.rows.get(current.sku);
    if (row) {
      Object.assign(row, current);
      const tr = rowEl(current.sku);
      if (tr) paintRow(tr, row);
    }
  }

  function conflictRetry() {
    if (!S.conflict) return;
    const current = S.conflict.current;
    const yours = S.conflict.yours;
    S.edit = Object.assign({}, S.edit || {}, current);
    fillForm(S.edit);
    // Put the user's own values back on top of the winner's version.
    if (yours.name !== undefined) $("pf-name").value = yours.name;
    if (yours.price_cents !== undefined) $("pf-price").value = BO.centsToInput(yours.price_cents);
    if (yours.tax_rate_bp !== undefined) ensureTaxOption(yours.tax_rate_bp);
    if (yours.category !== undefined && yours.category !== null) $("pf-category").value = yours.category;
    if (yours.barcode !== undefined && yours.barcode !== null) $("pf-barcode").value = yours.barcode;
    if (yours.low_stock_threshold !== undefined) $("pf-threshold").value = String(yours.low_stock_threshold);
    if (yours.active !== undefined) $("pf-active").checked = !!yours.active;
    S.conflict = null;
    BO.show($("pf-conflict"), false);
    $("pf-submit").disabled = false;
    $("pf-name").focus();
  }

  // ------------------------------------------------------------------ wiring
  function wire() {
    const reload = function () { S.offset = 0; load(); };
    $("stock-search").addEventListener("input", BO.debounce(function () {
      S.search = $("stock-search").value.trim();
      reload();
    }, 200));
    $("stock-search").addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") { S.search = $("stock-search").value.trim(); reload(); }
    });
    $("stock-category").addEventListener("change", function () { S.category = $("stock-category").value; reload(); });
    $("stock-low").addEventListener("change", function () { S.lowOnly = $("stock-low").checked; reload(); });
    $("stock-inactive").addEventListener("change", function () { S.inactive = $("stock-inactive").checked; reload(); });
    document.querySelectorAll(".stock-table th.sortable button").forEach(function (b) {
      b.addEventListener("click", function () {
        const key = b.parentElement.dataset.sort;
        S.sort = S.sort === key ? "-" + key : key;
        reload();
      });
    });
    $("stock-prev").addEventListener("click", function () { S.offset = Math.max(0, S.offset - PAGE); load(); });
    $("stock-next").addEventListener("click", function () { if (S.offset + PAGE < S.total) { S.offset += PAGE; load(); } });
    $("btn-new-product").addEventListener("click", openCreate);
    // Enter in the filter fields must not reload the page (no inline handler: CSP).
    $("stock-filters").addEventListener("submit", function (ev) { ev.preventDefault(); });
    $("move-form").addEventListener("submit", submitMove);
    $("move-qty").addEventListener("input", movePreview);
    $("product-form").addEventListener("submit", submitProduct);
    $("pf-conflict-retry").addEventListener("click", conflictRetry);
    $("pf-conflict-keep").addEventListener("click", function () { S.conflict = null; BO.closeDialog("dlg-product"); });
  }

  BO.on("stock_changed", function (m) { if (m && m.sku != null) updateStock(m.sku, m.stock); });
  BO.on("critical_event", function (m) {
    if (!m || m.sku == null) return;
    updateStock(m.sku, m.stock);
    const name = m.name || m.sku;
    if (m.kind === "oversold") BO.toast(name + " is oversold (" + m.stock + "): see Conflicts.", "warn");
    else BO.toast(name + " just sold out.", "info");
  });
  BO.on("product_changed", function (m) { if (m && m.sku != null) refreshProduct(m.sku); });
  BO.on("catalog_reloaded", function () { load(); loadCategories(); });
  BO.on("connect", function (info) { if (info && info.again) load(); });  // stock may have moved meanwhile

  wire();
  BO.start(function () {
    loadCategories();
    load();
    $("stock-search").focus();
  });
})();
