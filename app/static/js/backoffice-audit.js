/*
 * Back office · Audit log: filters (till, user, action with * prefix, time range,
 * free text), keyset paging through GET /api/audit (`next` cursor -> `before`), CSV
 * export of exactly the filtered set, and the hash-chain verification per device
 * (red, naming the entry, when a row was changed or removed).
 */
(function () {
  "use strict";

  const BO = window.BO;
  const api = BO.api;
  const $ = BO.$;
  const el = BO.el;
  const LIMIT = 100;

  const KNOWN_ACTIONS = [
    "sale.*", "sale.created", "sale.refunded", "sale.voided", "stock.*", "stock.received", "stock.adjusted",
    "product.*", "product.created", "product.updated", "price.changed", "conflict.*", "conflict.recorded",
    "conflict.resolved", "edit.rejected", "login.*", "login.success", "login.failed", "login.locked", "logout",
    "user.*", "user.created", "user.updated", "election.*", "election.won", "election.follow",
    "election.master_lost", "role.*", "role.master", "role.step_down", "sync.*", "sync.round", "sync.sequenced",
    "sync.catch_up", "sync.resubmitted", "sync.rejected", "sync.tail_dropped", "node.*", "node.started",
    "node.stopped", "node.refused", "report.z_closed", "audit.diverged",
  ];

  const S = {
    filters: {},
    cursors: [null],   // cursors[i] = `before` for page i (null = newest)
    page: 0,
    next: null,
    seq: 0,
    broken: null,      // {device_id, seq} of the entry that broke a chain
  };

  // ------------------------------------------------------------------ filters
  function toMs(value) {
    if (!value) return "";
    const t = new Date(value).getTime();  // datetime-local is local time
    return isFinite(t) ? String(t) : "";
  }

  function readFilters() {
    const f = {};
    const action = $("audit-action").value.trim();
    if (action) f.action = action;
    if ($("audit-device").value) f.device_id = $("audit-device").value;
    if ($("audit-user").value) f.user = $("audit-user").value;
    const since = toMs($("audit-since").value);
    if (since) f.since = since;
    const until = toMs($("audit-until").value);
    if (until) f.until = until;
    const q = $("audit-q").value.trim();
    if (q) f.q = q;
    return f;
  }

  function apply() {
    S.filters = readFilters();
    S.cursors = [null];
    S.page = 0;
    load();
  }

  // ------------------------------------------------------------------ rows
  const LAST_KEYS = ["event_id", "mode", "events"];  // long ids after what a reader looks for

  function detailText(d) {
    if (typeof d === "string") return d;  // a damaged row: the stored text as it is
    if (!d || typeof d !== "object") return "";
    const keys = Object.keys(d);
    const ordered = keys.filter(function (k) { return LAST_KEYS.indexOf(k) < 0; })
      .concat(keys.filter(function (k) { return LAST_KEYS.indexOf(k) >= 0; }));
    return ordered.map(function (k) {
      let v = d[k];
      if (v === null || v === undefined) return null;
      if (typeof v === "object") v = JSON.stringify(v);
      v = String(v);
      if (v.length > 60) v = v.slice(0, 57) + "…";
      return k + "=" + v;
    }).filter(Boolean).join("  ");
  }

  async function load() {
    const mySeq = ++S.seq;
    const q = Object.assign({ limit: LIMIT }, S.filters);
    const before = S.cursors[S.page];
    if (before) q.before = before;
    $("audit-body").classList.add("is-loading");
    try {
      const data = await api.get("/api/audit", q);
      if (mySeq !== S.seq) return;
      S.next = data.next || null;
      render(data.entries || []);
    } catch (e) {
      if (mySeq === S.seq) BO.toast("Could not load the audit log: " + BO.errorText(e), "error");
    } finally {
      if (mySeq === S.seq) $("audit-body").classList.remove("is-loading");
    }
  }

  function render(entries) {
    const body = $("audit-body");
    const frag = document.createDocumentFragment();
    entries.forEach(function (r) {
      const isBroken = S.broken && S.broken.device_id === r.device_id && S.broken.seq === r.seq;
      const group = String(r.action).split(".")[0];
      // A damaged row (details that are not the hashed text, a seq that is not a number)
      // is listed as stored, flagged with what is wrong with it.
      const damage = r.damaged ? Object.keys(r.damaged).map(function (k) { return k + ": " + r.damaged[k]; }) : [];
      frag.appendChild(el("tr", {
        class: "row" + (isBroken ? " is-broken" : "") + (damage.length ? " is-damaged" : ""),
        "data-testid": "audit-row", "data-damaged": damage.join("; "),
        "data-action": r.action, "data-device": r.device_id, "data-seq": r.seq, "data-user": r.user || "",
      }, [
        el("td", { class: "nowrap mono", title: new Date(r.ts_ms).toString(), text: BO.fmtDateTime(r.ts_ms) }),
        el("td", { class: "num", text: String(r.device_id) }),
        el("td", { class: "num muted", text: String(r.seq) }),
        el("td", { text: r.user || "–" }),
        el("td", {}, [el("span", { class: "action action-" + group, text: r.action })]),
        el("td", { class: "details mono", title: (damage.length ? "DAMAGED (" + damage.join("; ") + ")\n" : "") +
          (typeof r.details === "string" ? r.details : JSON.stringify(r.details, null, 1)),
          text: (damage.length ? "⚠ damaged (" + damage.join("; ") + ")  " : "") + detailText(r.details) }),
      ]));
    });
    body.textContent = "";
    body.appendChild(frag);
    BO.show($("audit-empty"), entries.length === 0);
    $("audit-page").textContent = entries.length
      ? "Page " + (S.page + 1) + " · " + entries.length + " entr" + (entries.length === 1 ? "y" : "ies") + (S.next ? " (more older)" : "")
      : "";
    $("audit-newer").disabled = S.page === 0;
    $("audit-older").disabled = !S.next;
  }

  // ------------------------------------------------------------------ export
  async function exportCsv() {
    const btn = $("audit-export");
    btn.disabled = true;
    const params = new URLSearchParams(S.filters);
    try {
      const resp = await fetch("/api/audit/export.csv" + (params.toString() ? "?" + params : ""), {
        headers: { Authorization: "Bearer " + api.getToken() }, credentials: "same-origin", cache: "no-store",
      });
      if (!resp.ok) {
        let msg = resp.statusText;
        try { msg = (await resp.json()).error.message; } catch (e) { /* keep statusText */ }
        throw new api.ApiError("HTTP_" + resp.status, msg, {}, resp.status);
      }
      const blob = await resp.blob();
      const url = URL.createObjectURL(blob);
      const a = el("a", { href: url, download: "audit-" + BO.fmtDate(Date.now()) + ".csv" });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
      BO.toast("CSV exported.", "ok");
    } catch (e) {
      BO.toast("Export failed: " + BO.errorText(e), "error");
    } finally {
      btn.disabled = false;
    }
  }

  // ------------------------------------------------------------------ verify
  const REASONS = { hash_mismatch: "its contents were changed", prev_mismatch: "it does not link to the entry before it",
    missing_seq: "an entry is missing", truncated: "entries were cut off the end",
    head_missing: "the record of the chain's end was removed", head_moved: "the record of the chain's end was moved",
    head_malformed: "the record of the chain's end is damaged", chain_missing: "this till's own chain is gone",
    seq_not_integer: "an entry's number is damaged", details_invalid_json: "its details are damaged",
    details_not_canonical: "its details were rewritten", details_not_text: "its details are damaged",
    device_not_integer: "a till number is damaged", device_unknown: "this till's own id is not recorded" };

  function divergedText(b) {
    return "its chain no longer extends the copy kept by till " + b.reported_by + " (" + (b.diverged || "changed") +
      "): entries were rewritten or removed on that till";
  }

  function reasonText(b) {
    return b.reason === "diverged" ? divergedText(b) : (REASONS[b.reason] || b.reason || "chain broken");
  }

  // Verifying walks every entry (about 78 s of server CPU at 1,000,000 entries), so a page
  // (re)load reuses this tab's last result for a while; "Verify again" always re-checks.
  const VERIFY_KEY = "lanpos.bo.verify";
  const VERIFY_REUSE_MS = 10 * 60 * 1000;

  function cachedVerify() {
    try {
      const c = JSON.parse(sessionStorage.getItem(VERIFY_KEY) || "null");
      if (c && c.host === location.host && Date.now() - c.at < VERIFY_REUSE_MS && c.result.ok) return c;
    } catch (e) { /* no cache */ }
    return null;
  }

  async function verify(opts) {
    const cached = opts && opts.reuse ? cachedVerify() : null;
    const box = $("audit-verify-status");
    box.dataset.ok = "";
    box.className = "verify is-checking";
    box.querySelector(".verify-icon").textContent = "…";
    $("audit-verify-text").textContent = "Checking the hash chains…";
    $("audit-verify").disabled = true;
    try {
      const r = cached ? cached.result : await api.get("/api/audit/verify", null, { timeoutMs: 300000 });
      if (!cached) {
        try {
          sessionStorage.setItem(VERIFY_KEY, JSON.stringify({ host: location.host, at: Date.now(), result: r }));
        } catch (e) { /* storage full: verify next time */ }
      }
      const devices = r.devices || [];
      fillDeviceFilter(devices.map(function (d) { return d.device_id; }));
      if (r.ok) {
        S.broken = null;
        box.dataset.ok = "true";
        box.className = "verify is-ok";
        box.querySelector(".verify-icon").textContent = "✓";
        $("audit-verify-text").textContent = "Audit log intact: " + r.entries.toLocaleString("en") + " entries on " +
          devices.length + " till" + (devices.length === 1 ? "" : "s") + " verified" +
          (cached ? " at " + BO.fmtTime(cached.at) : "") + ".";
      } else {
        const b = r.broken_at || {};
        S.broken = { device_id: b.device_id, seq: b.seq };
        box.dataset.ok = "false";
        box.dataset.brokenDevice = b.device_id;
        box.dataset.brokenSeq = b.seq;
        box.className = "verify is-bad";
        box.querySelector(".verify-icon").textContent = "✕";
        box.dataset.reason = b.reason || "";
        $("audit-verify-text").textContent = "Tampering detected: till " + b.device_id +
          (b.seq !== null && b.seq !== undefined ? ", entry #" + b.seq : "") + " — " + reasonText(b) + ".";
      }
      const list = $("audit-verify-devices");
      list.textContent = "";
      devices.forEach(function (d) {
        const bad = !d.ok;
        const chip = el("button", {
          type: "button", class: "chip " + (bad ? "chip-bad" : "chip-ok"),
          "data-testid": "audit-verify-device-" + d.device_id, "data-ok": String(!bad),
          "data-reason": bad ? d.broken_at.reason : "",
          title: bad ? "Show the entries around the break" : "Show this till's entries",
          text: "Till " + d.device_id + ": " + (bad
            ? (d.broken_at.reason === "diverged" ? "DIVERGED — " + divergedText(d.broken_at)
              : "broken at #" + d.broken_at.seq + " (" + reasonText(d.broken_at) + ")")
            : d.entries.toLocaleString("en") + " ok"),
          onclick: function () {
            $("audit-device").value = String(d.device_id);
            apply();
          },
        });
        list.appendChild(chip);
      });
      // Re-mark the rows on screen.
      document.querySelectorAll('#audit-body tr[data-testid="audit-row"]').forEach(function (tr) {
        tr.classList.toggle("is-broken", !!S.broken && Number(tr.dataset.device) === S.broken.device_id &&
          Number(tr.dataset.seq) === S.broken.seq);
      });
    } catch (e) {
      box.dataset.ok = "";
      box.className = "verify is-checking";
      box.querySelector(".verify-icon").textContent = "?";
      $("audit-verify-text").textContent = "Could not verify: " + BO.errorText(e);
    } finally {
      $("audit-verify").disabled = false;
    }
  }

  function fillDeviceFilter(ids) {
    const sel = $("audit-device");
    const keep = sel.value;
    const have = new Set(Array.prototype.map.call(sel.options, function (o) { return o.value; }));
    ids.sort(function (a, b) { return a - b; }).forEach(function (id) {
      if (!have.has(String(id))) sel.appendChild(el("option", { value: String(id), text: "Till " + id }));
    });
    sel.value = keep;
  }

  async function loadUsers() {
    try {
      const data = await api.get("/api/users");
      const sel = $("audit-user");
      (data.users || []).forEach(function (u) {
        sel.appendChild(el("option", { value: u.username, text: u.display_name + " (" + u.username + ")" }));
      });
      sel.appendChild(el("option", { value: "system", text: "system" }));
    } catch (e) { /* free choice stays "anyone" */ }
  }

  function wire() {
    const dl = $("audit-actions");
    KNOWN_ACTIONS.forEach(function (a) { dl.appendChild(el("option", { value: a })); });
    $("audit-filters").addEventListener("submit", function (ev) { ev.preventDefault(); apply(); });
    ["audit-device", "audit-user", "audit-since", "audit-until"].forEach(function (id) {
      $(id).addEventListener("change", apply);
    });
    $("audit-clear").addEventListener("click", function () {
      ["audit-action", "audit-since", "audit-until", "audit-q"].forEach(function (id) { $(id).value = ""; });
      $("audit-device").value = "";
      $("audit-user").value = "";
      apply();
    });
    $("audit-older").addEventListener("click", function () {
      if (!S.next) return;
      S.cursors[S.page + 1] = S.next;
      S.page += 1;
      load();
    });
    $("audit-newer").addEventListener("click", function () {
      if (S.page === 0) return;
      S.page -= 1;
      load();
    });
    $("audit-export").addEventListener("click", exportCsv);
    $("audit-verify").addEventListener("click", function () { verify({ reuse: false }); });
  }

  wire();
  BO.start(function () {
    const params = new URLSearchParams(location.search);
    ["action", "q"].forEach(function (k) { if (params.get(k)) $("audit-" + k).value = params.get(k); });
    loadUsers();
    apply();
    verify({ reuse: true });
  });
})();
