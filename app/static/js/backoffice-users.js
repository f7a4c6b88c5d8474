/*
 * Back office · Users (admin only; the shell shows anyone else an "admins only" screen).
 * Every user with role, status and wrong-PIN state (GET /api/users?all=1); add, change
 * role, reset PIN, deactivate / reactivate and unlock through the JSON API
 * (POST /api/users, PATCH /api/users/<u>, POST /api/users/<u>/unlock). The API decides
 * (PIN length per role, the last active admin); its refusal is shown as it comes.
 * Live on `user_changed` (a change at any till, a wrong PIN anywhere).
 */
(function () {
  "use strict";

  const BO = window.BO;
  const api = BO.api;
  const $ = BO.$;
  const el = BO.el;

  const S = { list: [], seq: 0, editing: null, mode: null, lockTimer: null };
  const ROLE_LABEL = { cashier: "Cashier", manager: "Manager", admin: "Admin" };

  function path(username) { return "/api/users/" + encodeURIComponent(username); }

  async function load() {
    const mySeq = ++S.seq;
    try {
      const data = await api.get("/api/users", { all: "1" });
      if (mySeq !== S.seq) return;
      S.list = data.users || [];
      render();
    } catch (e) {
      showError("Could not load users: " + BO.errorText(e));
    }
  }

  function showError(text) {
    const box = $("users-error");
    box.textContent = text || "";
    BO.show(box, !!text);
  }

  function lockText(u) {
    if (!u.failures) return "–";
    const s = u.retry_after_ms > 0 ? " · locked for " + Math.ceil(u.retry_after_ms / 1000) + " s" : "";
    return u.failures + " wrong" + s;
  }

  function actionButton(text, testid, cls, fn) {
    return el("button", { type: "button", class: "btn btn-small " + cls, "data-testid": testid, text: text, onclick: fn });
  }

  function render() {
    const body = $("users-body");
    body.textContent = "";
    const me = BO.S.user ? BO.S.user.username : null;
    S.list.forEach(function (u) {
      const locked = u.retry_after_ms > 0;
      const actions = [
        actionButton("Role", "user-role-" + u.username, "btn-secondary", function () { openEdit(u, "role"); }),
        actionButton("Reset PIN", "user-pin-" + u.username, "btn-secondary", function () { openEdit(u, "pin"); }),
        u.active
          ? actionButton("Deactivate", "user-deactivate-" + u.username, "btn-danger", function () { patch(u, { active: false }, u.display_name + " deactivated."); })
          : actionButton("Reactivate", "user-reactivate-" + u.username, "btn-primary", function () { patch(u, { active: true }, u.display_name + " reactivated."); }),
        u.failures > 0 ? actionButton("Unlock", "user-unlock-" + u.username, "btn-primary", function () { unlock(u); }) : null,
      ];
      body.appendChild(el("tr", {
        class: "row" + (u.active ? "" : " is-inactive") + (locked ? " is-locked-user" : ""),
        "data-testid": "user-row-" + u.username, "data-username": u.username, "data-role": u.role,
        "data-active": u.active ? "1" : "0", "data-failures": String(u.failures || 0), "data-locked": locked ? "1" : "0",
      }, [
        el("td", {}, [el("strong", { text: u.display_name }), u.username === me ? el("span", { class: "sub", text: "you" }) : null]),
        el("td", { class: "mono", text: u.username }),
        el("td", {}, [el("span", { class: "tag role-" + u.role, "data-testid": "user-role-tag-" + u.username, text: ROLE_LABEL[u.role] || u.role })]),
        el("td", {}, [el("span", { class: "tag " + (u.active ? "tag-ok" : "tag-muted"), "data-testid": "user-status-" + u.username, text: u.active ? "active" : "inactive" })]),
        el("td", { class: "nowrap" }, [u.failures
          ? el("span", { class: "tag tag-pins " + (locked ? "tag-soldout" : "tag-low"), "data-testid": "user-failures-" + u.username, text: lockText(u) })
          : el("span", { class: "muted", "data-testid": "user-failures-" + u.username, text: "–" })]),
        el("td", { class: "actions" }, [el("div", { class: "user-actions" }, actions)]),
      ]));
    });
    BO.show($("users-empty"), S.list.length === 0);
    const active = S.list.filter(function (u) { return u.active; }).length;
    const lockedN = S.list.filter(function (u) { return u.retry_after_ms > 0; }).length;
    $("users-summary").textContent = S.list.length + " user" + (S.list.length === 1 ? "" : "s") + " · " + active + " active" +
      (lockedN ? " · " + lockedN + " locked out" : "");
    // A lock-out ends by itself: look again when the first one runs out.
    clearTimeout(S.lockTimer);
    const waits = S.list.map(function (u) { return u.retry_after_ms; }).filter(function (ms) { return ms > 0; });
    if (waits.length) S.lockTimer = setTimeout(load, Math.min(Math.min.apply(null, waits) + 250, 15 * 60 * 1000));
  }

  // ---------------------------------------------------------------- actions
  async function patch(u, body, done) {
    showError("");
    try {
      await api.patch(path(u.username), body);
      BO.toast(done, "ok");
    } catch (e) {
      showError(BO.errorText(e));
      BO.toast(BO.errorText(e), "error");
    }
    load();
  }

  async function unlock(u) {
    showError("");
    try {
      const data = await api.post(path(u.username) + "/unlock", {});
      const n = (data.user && data.user.failures_cleared) || 0;
      BO.toast(u.display_name + " unlocked" + (n ? " (" + n + " wrong PIN" + (n === 1 ? "" : "s") + " cleared)" : "") + ".", "ok");
    } catch (e) {
      showError(BO.errorText(e));
      BO.toast(BO.errorText(e), "error");
    }
    load();
  }

  /** The two PIN fields of a dialog: mismatch shown as soon as the second is as long as the first. */
  function pinsState(prefix) {
    const a = $(prefix + "-pin").value;
    const b = $(prefix + "-pin2").value;
    const differ = b.length > 0 && (b.length >= a.length || a.slice(0, b.length) !== b) && a !== b;
    BO.show($(prefix + "-mismatch"), differ);
    return { pin: a, again: b, differ: differ };
  }

  function wirePins(prefix) {
    [prefix + "-pin", prefix + "-pin2"].forEach(function (id) {
      $(id).addEventListener("input", function () {
        const v = $(id).value;
        if (/\D/.test(v)) $(id).value = v.replace(/\D/g, "");  // a PIN is digits; the API checks the rest
        pinsState(prefix);
      });
    });
  }

  function checkPins(prefix, required, errBox) {
    const p = pinsState(prefix);
    if (!p.pin && !p.again) {
      if (required) { errBox.textContent = "Enter the PIN twice."; BO.show(errBox, true); return null; }
      return "";
    }
    if (p.pin !== p.again) {
      BO.show($(prefix + "-mismatch"), true);
      errBox.textContent = "The two PINs differ: type the same PIN twice.";
      BO.show(errBox, true);
      return null;
    }
    return p.pin;
  }

  function resetPins(prefix) {
    $(prefix + "-pin").value = "";
    $(prefix + "-pin2").value = "";
    BO.show($(prefix + "-mismatch"), false);
  }

  function openAdd() {
    $("uf-username").value = "";
    $("uf-display").value = "";
    $("uf-role").value = "cashier";
    resetPins("uf");
    BO.show($("uf-error"), false);
    BO.openDialog("dlg-user");
  }

  async function submitAdd(ev) {
    ev.preventDefault();
    const err = $("uf-error");
    BO.show(err, false);
    const username = $("uf-username").value.trim();
    if (!username) { err.textContent = "Enter a username."; BO.show(err, true); return; }
    const pin = checkPins("uf", true, err);
    if (pin === null) return;
    const body = { username: username, role: $("uf-role").value, pin: pin };
    const display = $("uf-display").value.trim();
    if (display) body.display_name = display;
    const btn = $("uf-submit");
    btn.disabled = true;
    try {
      const data = await api.post("/api/users", body);
      BO.closeDialog("dlg-user");
      BO.toast((data.user.display_name || username) + " added as " + data.user.role + ": they can log in at every till.", "ok");
      load();
    } catch (e) {
      err.textContent = BO.errorText(e);
      BO.show(err, true);
    } finally {
      btn.disabled = false;
    }
  }

  function openEdit(u, mode) {
    S.editing = u;
    S.mode = mode;
    $("edit-title").textContent = mode === "role" ? "Change role" : "Reset PIN";
    $("edit-what").textContent = u.display_name + " (" + u.username + ") · now " + (ROLE_LABEL[u.role] || u.role);
    BO.show($("ef-role-wrap"), mode === "role");
    $("ef-role").value = u.role;
    $("ef-pin-label").textContent = "New PIN";
    $("ef-pin-hint").textContent = mode === "role"
      ? "Only needed when a cashier becomes a manager or admin (their PIN must then be at least 6 digits)."
      : "Their sessions end on every till; wrong-PIN lock-outs are cleared.";
    resetPins("ef");
    BO.show($("ef-error"), false);
    BO.openDialog("dlg-edit");
  }

  async function submitEdit(ev) {
    ev.preventDefault();
    const u = S.editing;
    if (!u) return;
    const err = $("ef-error");
    BO.show(err, false);
    const pin = checkPins("ef", S.mode === "pin", err);
    if (pin === null) return;
    const body = {};
    if (S.mode === "role") {
      if ($("ef-role").value === u.role && !pin) { err.textContent = "Pick another role."; BO.show(err, true); return; }
      if ($("ef-role").value !== u.role) body.role = $("ef-role").value;
    }
    if (pin) body.pin = pin;
    const btn = $("ef-submit");
    btn.disabled = true;
    try {
      const data = await api.patch(path(u.username), body);
      BO.closeDialog("dlg-edit");
      BO.toast(S.mode === "role" ? u.display_name + " is now " + (ROLE_LABEL[data.user.role] || data.user.role) + "." : "PIN of " + u.display_name + " reset.", "ok");
      load();
    } catch (e) {
      err.textContent = BO.errorText(e);
      BO.show(err, true);
    } finally {
      btn.disabled = false;
    }
  }

  function wire() {
    $("btn-user-add").addEventListener("click", openAdd);
    $("user-form").addEventListener("submit", submitAdd);
    $("edit-form").addEventListener("submit", submitEdit);
    wirePins("uf");
    wirePins("ef");
  }

  const reload = BO.debounce(load, 120);
  BO.on("user_changed", reload);
  BO.on("connect", function (info) { if (info && info.again) load(); });
  BO.on("relogin", load);

  wire();
  BO.start(function () { load(); });
})();
