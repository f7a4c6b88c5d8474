/*
 * Back office · Conflicts: oversells from offline sales and rejected edits, decided
 * by the master and replicated; a manager resolves them (optionally with a shelf
 * recount, which becomes a stock movement). Live on `conflict` / `conflict_resolved`.
 */
(function () {
  "use strict";

  const BO = window.BO;
  const api = BO.api;
  const $ = BO.$;
  const el = BO.el;

  const S = { status: "open", list: [], names: new Map(), current: null, seq: 0 };

  const KIND = { oversell: "Oversell", edit_rejected: "Edit rejected", receipt_reused: "Receipt reused" };

  async function load() {
    const mySeq = ++S.seq;
    try {
      const data = await api.get("/api/conflicts", S.status ? { status: S.status } : null);
      if (mySeq !== S.seq) return;
      S.list = data.conflicts || [];
      render();
      lookupNames();
    } catch (e) {
      BO.toast("Could not load conflicts: " + BO.errorText(e), "error");
    }
  }

  async function lookupNames() {
    const skus = Array.from(new Set(S.list.map(function (c) { return c.sku; }).filter(function (s) { return s && !S.names.has(s); })));
    await Promise.all(skus.slice(0, 50).map(async function (sku) {
      try {
        const p = (await api.get("/api/products/" + encodeURIComponent(sku))).product;
        S.names.set(sku, p);
      } catch (e) { S.names.set(sku, null); }
    }));
    if (skus.length) render();
  }

  function detailsNode(c) {
    // The receipt number must not break at its hyphen.
    const text = details(c);
    const m = /receipt (\S+)/.exec(text);
    if (!m) return [text];
    return [text.slice(0, m.index) + "receipt ", el("span", { class: "nowrap", text: m[1] }), text.slice(m.index + m[0].length)];
  }

  function details(c) {
    const d = c.details || {};
    if (c.kind === "oversell") {
      const parts = [];
      parts.push("sold " + d.sold + " while " + d.available_before + " left");
      if (d.stock_after != null) parts.push("stock went to " + d.stock_after);
      if (d.receipt_no) parts.push("receipt " + d.receipt_no);
      return parts.join(" · ");
    }
    if (c.kind === "edit_rejected") {
      const yours = d.yours || {};
      const changes = Object.keys(yours).map(function (k) {
        const v = yours[k];
        return k === "price_cents" ? "price " + BO.money(v) : k + " " + v;
      });
      return "wanted " + (changes.join(", ") || "a change") + " on version " + d.base_version +
        "; version " + d.current_version + " by " + ((d.winner && d.winner.user) || "?") + " stands";
    }
    if (c.kind === "receipt_reused") {
      return "printed receipt " + d.receipt_no + " again; filed as " + d.filed_as;
    }
    return JSON.stringify(d);
  }

  function render() {
    const body = $("conflicts-body");
    body.textContent = "";
    S.list.forEach(function (c) {
      const p = c.sku ? S.names.get(c.sku) : null;
      const open = c.status !== "resolved";
      body.appendChild(el("tr", {
        class: "row conflict-" + c.kind + (open ? " is-open" : " is-resolved"),
        "data-testid": "conflict-row", "data-conflict-id": c.conflict_id, "data-status": c.status,
        "data-kind": c.kind, "data-sku": c.sku || "",
      }, [
        el("td", { class: "nowrap", text: BO.fmtDateTime(c.created_ms) }),
        el("td", {}, [el("span", { class: "tag tag-" + (c.kind === "oversell" ? "oversold" : "low"), text: KIND[c.kind] || c.kind })]),
        el("td", {}, [
          el("span", { class: "mono", text: c.sku || "–" }),
          p ? el("span", { class: "sub", text: p.name + " · stock now " + p.stock }) : null,
        ]),
        el("td", { class: "num", text: c.origin_device != null ? "Till " + c.origin_device : "–" }),
        el("td", { text: c.user || "–" }),
        el("td", { class: "wrap" }, detailsNode(c)),
        el("td", { class: "wrap muted", text: c.decision }),
        el("td", { class: "wrap" }, open ? [el("span", { class: "tag tag-open", text: "open" })] : [
          el("span", { class: "tag tag-ok", text: "resolved" }),
          el("span", { class: "sub", "data-testid": "conflict-resolution", text: (c.resolution || "") + " — " + (c.resolved_by || "?") + ", " + BO.fmtDateTime(c.resolved_ms) }),
        ]),
        el("td", { class: "actions" }, open ? [el("button", {
          type: "button", class: "btn btn-small btn-primary", "data-testid": "conflict-resolve", text: "Resolve",
          onclick: function () { openResolve(c); },
        })] : []),
      ]));
    });
    BO.show($("conflicts-empty"), S.list.length === 0);
    const open = S.list.filter(function (c) { return c.status !== "resolved"; }).length;
    $("conflicts-summary").textContent = S.status === "open"
      ? (open ? open + " open conflict" + (open === 1 ? "" : "s") + " to resolve" : "No open conflicts")
      : S.list.length + " conflict" + (S.list.length === 1 ? "" : "s") + (S.list.length >= 500 ? " (newest 500)" : "");
  }

  async function openResolve(c) {
    S.current = c;
    const p = c.sku ? S.names.get(c.sku) : null;
    $("resolve-what").textContent = "";
    $("resolve-what").append(
      el("strong", { text: (KIND[c.kind] || c.kind) + (c.sku ? " · " + c.sku + (p ? " " + p.name : "") : "") }),
      el("br"),
      document.createTextNode(details(c)),
    );
    const oversell = c.kind === "oversell" && c.sku;
    BO.show($("resolve-recount-wrap"), !!oversell);
    $("resolve-recount").value = "";
    $("resolve-recount-hint").textContent = "Leave empty to keep the stock as it is.";
    $("resolve-text").value = oversell ? "" : "Accepted the winning edit";
    BO.show($("resolve-error"), false);
    BO.openDialog("dlg-resolve");
    if (oversell) {
      try {
        const fresh = (await api.get("/api/products/" + encodeURIComponent(c.sku))).product;
        S.names.set(c.sku, fresh);
        $("resolve-recount-hint").textContent = "The system says " + fresh.stock + ". Count the shelf and enter what is really there; leave empty to keep " + fresh.stock + ".";
      } catch (e) { /* hint stays generic */ }
    }
  }

  async function submitResolve(ev) {
    ev.preventDefault();
    const c = S.current;
    if (!c) return;
    const err = $("resolve-error");
    const text = $("resolve-text").value.trim();
    const recountText = $("resolve-recount").value.trim();
    if (!text) { err.textContent = "Say what was done (e.g. shelf recounted)."; BO.show(err, true); return; }
    if (recountText && !/^\d+$/.test(recountText)) { err.textContent = "The recount is a whole number ≥ 0."; BO.show(err, true); return; }
    const body = { resolution: text };
    if (recountText) body.recount = parseInt(recountText, 10);
    const btn = $("resolve-submit");
    btn.disabled = true;
    try {
      await api.post("/api/conflicts/" + encodeURIComponent(c.conflict_id) + "/resolve", body);
      BO.closeDialog("dlg-resolve");
      BO.toast("Conflict resolved" + (body.recount != null ? " · stock of " + c.sku + " set to " + body.recount : "") + ".", "ok");
      S.names.delete(c.sku);
      load();
      BO.refreshConflictBadge();
    } catch (e) {
      err.textContent = BO.errorText(e);
      BO.show(err, true);
      if (e.code === "ALREADY_RESOLVED") load();
    } finally {
      btn.disabled = false;
    }
  }

  function wire() {
    document.querySelectorAll("#conflict-tabs .seg-btn").forEach(function (b) {
      b.addEventListener("click", function () {
        document.querySelectorAll("#conflict-tabs .seg-btn").forEach(function (x) { x.classList.toggle("is-active", x === b); });
        S.status = b.dataset.status;
        load();
      });
    });
    $("resolve-form").addEventListener("submit", submitResolve);
  }

  const reload = BO.debounce(load, 150);
  BO.on("conflict", function (m) {
    reload();
    if (m) BO.toast("New conflict: " + (KIND[m.kind] || m.kind) + (m.sku ? " on " + m.sku : "") + (m.origin_device != null ? " from till " + m.origin_device : ""), "warn");
  });
  BO.on("conflict_resolved", reload);
  BO.on("stock_changed", function (m) {
    if (m && S.names.has(m.sku) && S.names.get(m.sku)) { S.names.get(m.sku).stock = m.stock; render(); }
  });
  BO.on("connect", function (info) { if (info && info.again) load(); });

  wire();
  BO.start(function () { load(); });
})();
