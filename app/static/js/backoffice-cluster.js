/*
 * Back office · Cluster: every node with role, epoch, last heartbeat, journal position
 * and lag; this node's outbox and sync counters. Polls /api/cluster every second and
 * refreshes at once on `cluster_status` / `master_changed`. A node whose heartbeats
 * stopped for the failover timeout is shown down (red).
 */
(function () {
  "use strict";

  const BO = window.BO;
  const api = BO.api;
  const $ = BO.$;
  const el = BO.el;
  const POLL_MS = 1000;

  const S = { last: null, timer: null, inflight: false, failures: 0 };

  function epochText(e) {
    if (!e || !e.length) return "–";
    return e[0] + " · till " + e[1];
  }

  async function poll() {
    if (S.inflight) return;
    S.inflight = true;
    try {
      const data = await api.get("/api/cluster", null, { timeoutMs: 2500, sessionHook: false });
      S.last = data;
      S.failures = 0;
      BO.show($("cluster-unreachable"), false);
      render(data);
    } catch (e) {
      S.failures += 1;
      if (S.failures >= 2) BO.show($("cluster-unreachable"), true);
    } finally {
      S.inflight = false;
    }
  }

  function nodesOf(data) {
    if (data.nodes && data.nodes.length) return data.nodes;
    // A node without clustering: just itself.
    return [{ device_id: data.device_id, address: location.host, alive: true, last_seen: Date.now(),
      role: data.role, epoch: data.epoch, last_gseq: data.sync ? data.sync.last_gseq : null, self: true }];
  }

  function render(data) {
    const sync = data.sync || {};
    $("cl-master").textContent = data.master_id != null ? "Till " + data.master_id : "none";
    $("cl-epoch").textContent = epochText(data.epoch);
    const state = data.state || "–";
    $("cl-state").textContent = (data.role || "?") + " · " + state;
    $("cl-state").title = "Till " + data.device_id + " is " + (data.role || "?") + ", " + state;
    $("cl-state").dataset.state = state;
    $("cl-outbox").textContent = String(data.outbox_pending != null ? data.outbox_pending : sync.outbox_pending != null ? sync.outbox_pending : "–");
    $("cl-outbox").classList.toggle("warn", (data.outbox_pending || 0) > 0);
    $("cl-last-sync").textContent = sync.last_sync_time ? BO.fmtAgo(sync.last_sync_time) : "never";
    $("cl-syncs").textContent = (sync.successful_syncs || 0) + " ok · " + (sync.failed_syncs || 0) + " failed";
    $("cl-syncs").title = (sync.total_syncs || 0) + " sync rounds in all";
    BO.show($("cl-sync-error"), !!sync.last_error && (sync.failed_syncs || 0) > 0);
    $("cl-sync-error").textContent = sync.last_error ? "Last sync error: " + sync.last_error : "";

    const nodes = nodesOf(data);
    // Only the master measures lag; elsewhere work it out from the master's journal position.
    const master = nodes.filter(function (n) { return n.device_id === data.master_id; })[0];
    nodes.forEach(function (n) {
      if (n.lag == null && master && master.last_gseq != null && n.last_gseq != null && n.alive) {
        n.lag = Math.max(master.last_gseq - n.last_gseq, 0);
      }
    });
    const alive = nodes.filter(function (n) { return n.alive; }).length;
    $("cluster-summary").textContent = nodes.length + " till" + (nodes.length === 1 ? "" : "s") + " · " + alive + " up" +
      (nodes.length - alive ? " · " + (nodes.length - alive) + " down" : "") + " · updated " + BO.fmtTime(Date.now());

    const box = $("cluster-nodes");
    const seen = new Set();
    nodes.forEach(function (n) {
      const id = String(n.device_id);
      seen.add(id);
      let card = box.querySelector('[data-testid="cluster-node-' + id + '"]');
      if (!card) {
        card = el("article", { class: "node-card", "data-testid": "cluster-node-" + id, "data-device": id });
        box.appendChild(card);
      }
      paintCard(card, n, data);
    });
    Array.prototype.slice.call(box.children).forEach(function (c) {
      if (!seen.has(c.dataset.device)) c.remove();
    });
    Array.prototype.slice.call(box.children)
      .sort(function (a, b) { return Number(a.dataset.device) - Number(b.dataset.device); })
      .forEach(function (c) { box.appendChild(c); });
  }

  function paintCard(card, n, data) {
    const alive = !!n.alive;
    const role = alive ? (n.role || "unknown") : (n.role || "unknown");
    card.dataset.alive = String(alive);
    card.dataset.role = role;
    card.className = "node-card " + (alive ? "is-up" : "is-down") + (n.device_id === data.master_id && alive ? " is-master" : "") + (n.self ? " is-self" : "");
    const lag = n.lag != null ? n.lag : null;
    card.textContent = "";
    card.append(
      el("header", { class: "node-head" }, [
        el("span", { class: "node-dot", "aria-hidden": "true" }),
        el("h2", { text: "Till " + n.device_id }),
        n.self ? el("span", { class: "tag tag-muted", text: "this node" }) : null,
        el("span", { class: "tag role-" + role, "data-testid": "cluster-role-" + n.device_id, text: role }),
      ]),
      el("p", { class: "node-status", "data-testid": "cluster-alive-" + n.device_id,
        text: alive ? "Up" : "DOWN — no heartbeat " + (n.last_seen ? "since " + BO.fmtTime(n.last_seen) : "yet") }),
      el("dl", { class: "node-facts" }, [
        el("dt", { text: "Address" }), el("dd", { class: "mono", text: n.address || "–" }),
        el("dt", { text: "Last heartbeat" }), el("dd", { text: n.self ? "(this node)" : BO.fmtAgo(n.last_seen) }),
        el("dt", { text: "Epoch" }), el("dd", { text: epochText(n.epoch) }),
        el("dt", { text: "Journal position" }), el("dd", { class: "mono", text: n.last_gseq != null ? String(n.last_gseq) : "–" }),
        el("dt", { text: "Lag" }), el("dd", { class: lag ? "warn" : "", text: lag != null ? String(lag) + (lag === 1 ? " entry" : " entries") : "–" }),
      ]),
    );
  }

  BO.on("cluster_status", function () { poll(); });
  BO.on("master_changed", function (m) {
    poll();
    if (m && m.master_id != null) BO.toast("Master is now till " + m.master_id + ".", "info");
  });

  BO.start(function () {
    poll();
    S.timer = setInterval(poll, POLL_MS);
  });
})();
