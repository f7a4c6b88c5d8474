/*
 * Back office · Reports: the day report of any day (X while the day runs, Z once it is
 * closed), with sales by hour and top products drawn by the vendored Chart.js.
 * Printable (print CSS hides the controls). Today's report follows new sales live.
 */
(function () {
  "use strict";

  const BO = window.BO;
  const api = BO.api;
  const $ = BO.$;
  const el = BO.el;

  const S = { date: "", report: null, charts: {}, seq: 0 };

  function today() { return BO.fmtDate(Date.now()); }

  function shiftDay(iso, days) {
    const p = iso.split("-").map(Number);
    const d = new Date(p[0], p[1] - 1, p[2] + days, 12);
    return BO.fmtDate(d.getTime());
  }

  async function load() {
    const mySeq = ++S.seq;
    S.date = $("report-date").value || today();
    try {
      const data = await api.get("/api/reports/day", { date: S.date });
      if (mySeq !== S.seq) return;
      S.report = data.report;
      render(data.report);
    } catch (e) {
      if (mySeq === S.seq) BO.toast("Could not load the report: " + BO.errorText(e), "error");
    }
  }

  function setMoney(id, cents) {
    const n = $(id);
    n.textContent = BO.money(cents);
    n.dataset.cents = String(cents);
    n.classList.toggle("neg", cents < 0);
  }

  function row(cells) {
    return el("tr", {}, cells.map(function (c, i) {
      if (c && c.nodeType) return c;
      return el(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : { class: "num" }, [String(c)]);
    }));
  }

  function moneyCell(cents, testid) {
    return el("td", { class: "num" + (cents < 0 ? " neg" : ""), "data-cents": String(cents), "data-testid": testid || null, text: BO.money(cents) });
  }

  function render(r) {
    const closed = r.z_closed;
    const kind = $("report-kind");
    kind.dataset.kind = r.kind;
    kind.textContent = r.kind === "Z" ? "Z · closed" : "X · running";
    kind.className = "report-kind kind-" + r.kind;
    const isToday = r.date === today();
    const future = r.date > today();
    $("report-meta").textContent = (new Date(r.from_ms)).toLocaleDateString("en-GB", { weekday: "long", year: "numeric", month: "long", day: "numeric" }) +
      " · from till " + r.device_id + "'s journal · generated " + BO.fmtTime(r.generated_ms) +
      (closed ? " · Z closed by " + closed.by + " at " + BO.fmtDateTime(closed.at_ms) + " (audit till " + closed.device_id + " #" + closed.seq + ")"
        : isToday ? " · the day is still running (X)" : "");
    $("report-close").disabled = !!closed || future;
    $("report-close").title = closed ? "Already closed" : future ? "This day has not started" : "";
    $("report-next").disabled = r.date >= today();

    const c = $("r-count");
    c.textContent = String(r.sales.count);
    c.dataset.count = String(r.sales.count);
    setMoney("r-gross", r.sales.gross_cents);
    setMoney("r-refunds", r.refunds.amount_cents);
    $("r-refunds-n").textContent = r.refunds.count ? r.refunds.count + " refund" + (r.refunds.count === 1 ? "" : "s") : "";
    setMoney("r-voids", r.voids.amount_cents);
    $("r-voids-n").textContent = r.voids.count ? r.voids.count + " void" + (r.voids.count === 1 ? "" : "s") : "";
    setMoney("r-net", r.net_cents);
    setMoney("r-tax", r.tax_cents);
    setMoney("r-cash", r.cash.expected_cents);

    const pay = $("r-payments");
    pay.textContent = "";
    r.payments.forEach(function (p) {
      pay.appendChild(el("tr", { "data-testid": "report-payment-" + p.method }, [
        el("th", { scope: "row", text: p.method === "cash" ? "Cash" : p.method === "card" ? "Card" : p.method }),
        el("td", { class: "num", text: String(p.count) }),
        moneyCell(p.amount_cents, "report-payment-" + p.method + "-amount"),
      ]));
    });
    const cash = $("r-cash-table");
    cash.textContent = "";
    [["Cash taken", r.cash.tendered_cents], ["− change given", -r.cash.change_cents],
      ["− cash refunds and voids", -r.cash.refunded_cents]].forEach(function (x) {
      cash.appendChild(el("tr", {}, [el("th", { scope: "row", text: x[0] }), moneyCell(x[1])]));
    });
    cash.appendChild(el("tr", { class: "total" }, [el("th", { scope: "row", text: "= expected in the drawers" }), moneyCell(r.cash.expected_cents)]));

    const tax = $("r-tax-rates");
    tax.textContent = "";
    r.tax_by_rate.forEach(function (t) {
      tax.appendChild(el("tr", { "data-testid": "report-tax-" + t.rate_bp }, [
        el("th", { scope: "row", text: BO.rateLabel(t.rate_bp) }),
        moneyCell(t.net_gross_cents), moneyCell(t.sales_tax_cents), moneyCell(-t.refund_tax_cents),
        moneyCell(t.tax_cents, "report-tax-" + t.rate_bp + "-due"),
      ]));
    });
    if (!r.tax_by_rate.length) tax.appendChild(emptyRow(5));

    const tills = $("r-tills");
    tills.textContent = "";
    r.by_till.forEach(function (t) {
      tills.appendChild(el("tr", { "data-testid": "report-till-" + t.device_id }, [
        el("th", { scope: "row", text: "Till " + t.device_id }),
        el("td", { class: "num", text: String(t.sales_count) }),
        moneyCell(t.gross_cents, "report-till-" + t.device_id + "-gross"),
        moneyCell(-(t.refunds_cents + t.voids_cents)), moneyCell(t.net_cents), moneyCell(t.cash_expected_cents),
      ]));
    });
    if (!r.by_till.length) tills.appendChild(emptyRow(6));

    const cashiers = $("r-cashiers");
    cashiers.textContent = "";
    r.by_cashier.forEach(function (u) {
      cashiers.appendChild(el("tr", { "data-testid": "report-cashier-" + u.user }, [
        el("th", { scope: "row", text: u.user }),
        el("td", { class: "num", text: String(u.sales_count) }),
        moneyCell(u.gross_cents), moneyCell(-(u.refunds_cents + u.voids_cents)), moneyCell(u.net_cents),
      ]));
    });
    if (!r.by_cashier.length) cashiers.appendChild(emptyRow(5));

    drawCharts(r);
  }

  function emptyRow(n) {
    return el("tr", { class: "empty-row" }, [el("td", { colspan: String(n), text: "No sales this day." })]);
  }

  function drawCharts(r) {
    if (typeof window.Chart !== "function") return;
    const Chart = window.Chart;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    Chart.defaults.color = "#4a5868";
    const euros = function (v) { return BO.money(Math.round(v * 100)); };
    // Hours 0-23, trimmed to the shop's usual day (6-22) plus any hour that has sales.
    const hours = r.by_hour.filter(function (h) { return (h.hour >= 6 && h.hour <= 22) || h.count > 0; });
    const hourData = {
      labels: hours.map(function (h) { return String(h.hour).padStart(2, "0") + ":00"; }),
      datasets: [{ label: "Gross sales", data: hours.map(function (h) { return h.gross_cents / 100; }),
        backgroundColor: "#1f6feb", borderRadius: 4, maxBarThickness: 28 }],
    };
    const counts = hours.map(function (h) { return h.count; });
    upsert("hours", $("chart-hours"), {
      type: "bar", data: hourData,
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { display: false }, tooltip: { callbacks: {
          label: function (ctx) { return euros(ctx.parsed.y) + " · " + counts[ctx.dataIndex] + " sale" + (counts[ctx.dataIndex] === 1 ? "" : "s"); },
        } } },
        scales: { y: { beginAtZero: true, ticks: { callback: function (v) { return euros(v); } } }, x: { grid: { display: false } } },
      },
    });
    const top = r.top_products;
    upsert("top", $("chart-top"), {
      type: "bar",
      data: {
        labels: top.map(function (p) { return p.name.length > 28 ? p.name.slice(0, 27) + "…" : p.name; }),
        datasets: [{ label: "Units sold", data: top.map(function (p) { return p.quantity; }),
          backgroundColor: "#1a7f37", borderRadius: 4, maxBarThickness: 22 }],
      },
      options: {
        indexAxis: "y", animation: false, responsive: true, maintainAspectRatio: false,
        plugins: { legend: { display: false }, tooltip: { callbacks: {
          label: function (ctx) { const p = top[ctx.dataIndex]; return p.quantity + " units · " + BO.money(p.gross_cents); },
        } } },
        scales: { x: { beginAtZero: true, ticks: { precision: 0 } }, y: { grid: { display: false } } },
      },
    });
    $("chart-top").parentElement.classList.toggle("is-empty", top.length === 0);
    $("chart-hours").parentElement.classList.toggle("is-empty", r.sales.count === 0);
  }

  function upsert(key, canvas, config) {
    if (S.charts[key]) S.charts[key].destroy();
    S.charts[key] = new window.Chart(canvas, config);
  }

  async function closeDay() {
    const r = S.report;
    if (!r) return;
    $("close-what").textContent = "Close " + r.date + ": " + r.sales.count + " sales, gross " + BO.money(r.sales.gross_cents) +
      ", net " + BO.money(r.net_cents) + ", cash expected " + BO.money(r.cash.expected_cents) + ".";
    BO.show($("close-error"), false);
    BO.openDialog("dlg-close");
  }

  async function confirmClose() {
    const btn = $("close-confirm");
    btn.disabled = true;
    try {
      const data = await api.post("/api/reports/day/close", { date: S.date });
      S.report = data.report;
      render(data.report);
      BO.closeDialog("dlg-close");
      BO.toast("Day " + S.date + " closed (Z).", "ok");
    } catch (e) {
      $("close-error").textContent = BO.errorText(e);
      BO.show($("close-error"), true);
    } finally {
      btn.disabled = false;
    }
  }

  function wire() {
    $("report-date").value = today();
    $("report-date").max = today();
    $("report-date").addEventListener("change", load);
    $("report-prev").addEventListener("click", function () { $("report-date").value = shiftDay($("report-date").value || today(), -1); load(); });
    $("report-next").addEventListener("click", function () { $("report-date").value = shiftDay($("report-date").value || today(), 1); load(); });
    $("report-today").addEventListener("click", function () { $("report-date").value = today(); load(); });
    $("report-print").addEventListener("click", function () { window.print(); });
    $("report-close").addEventListener("click", closeDay);
    $("close-confirm").addEventListener("click", confirmClose);
  }

  const liveReload = BO.debounce(function () { if (S.date === today()) load(); }, 800);
  ["sale_created", "sale_changed"].forEach(function (name) { BO.on(name, liveReload); });
  BO.on("connect", function (info) { if (info && info.again) load(); });

  wire();
  BO.start(function () {
    const d = new URLSearchParams(location.search).get("date");
    if (d && /^\d{4}-\d{2}-\d{2}$/.test(d)) $("report-date").value = d;
    load();
  });
})();
