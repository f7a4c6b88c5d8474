"""The back office (/backoffice, issue 6) in Debian's Chromium against real node processes.

One 3-till cluster for the whole module (tests/cluster/harness.py, links proxied so a
till can be cut off). The manager's browser is on till 2; sales happen at tills 1 and 3.
Tests run in file order and build on each other's data: every sale made here goes through
`sell()`, so the day report at the end must add up to exactly those sales. The node kill
comes last. Screenshots: artifacts/screenshots/backoffice-*.png (1280x800).
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
import time
import uuid
from contextlib import closing
from datetime import datetime

import pytest
from playwright.sync_api import Page, expect

from tests.cluster.harness import DEMO_PINS, Cluster

pytestmark = [pytest.mark.browser, pytest.mark.cluster, pytest.mark.timeout(240)]

VIEWPORT = {"width": 1280, "height": 800}
SALES: list[dict] = []  # every sale this module made: the day report must equal their sum


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = Cluster(3, str(tmp_path_factory.mktemp("backoffice")), proxied=True)
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture()
def bo(page: Page, screenshot_dir):
    """The page, at 1280x800, failing the test on any uncaught JavaScript error."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_viewport_size(VIEWPORT)
    yield page
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page: Page, screenshot_dir, name: str) -> None:
    page.wait_for_timeout(150)  # let the last paint (flash animation, charts) settle
    page.screenshot(path=str(screenshot_dir / f"backoffice-{name}.png"))


def login(page: Page, base: str, screen: str = "stock", user: str = "manager") -> None:
    """Open a back-office screen and log in on the PIN pad, as the manager would."""
    page.goto(f"{base}/backoffice/{screen}")
    page.get_by_test_id(f"user-{user}").click()
    for digit in DEMO_PINS[user]:
        page.get_by_test_id(f"pin-key-{digit}").click()
    page.get_by_test_id("pin-enter").click()
    if user != "cashier":
        expect(page.get_by_test_id("who")).to_be_visible()
        expect(page.get_by_test_id("live-status")).to_have_attribute("data-state", "on")


def sell(node, lines: list[tuple[str, int]], method: str = "card", extra_cash: int = 0) -> dict:
    """A sale at a till through its API; remembered for the day report."""
    prices = {sku: node.product(sku)["price_cents"] for sku, _ in lines}
    total = sum(prices[sku] * qty for sku, qty in lines)
    r = node.call("POST", "/api/sales", json={
        "lines": [{"sku": s, "quantity": q} for s, q in lines],
        "payments": [{"method": method, "amount_cents": total + (extra_cash if method == "cash" else 0)}],
        "client_ref": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["total_cents"] == total
    SALES.append({"device": node.device_id, "total": total, "method": method,
                  "change": body["change_cents"], "status": body["status"]})
    return body


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def search(page: Page, term: str) -> None:
    """Type into the stock search and wait for the server's answer to be on screen."""
    box = page.get_by_test_id("stock-search")
    if box.input_value() != term:
        with page.expect_response(lambda r: "/api/products?" in r.url):
            box.fill(term)
    expect(page.locator("#stock-wrap")).not_to_have_class(re.compile("is-loading"))


def apply_audit_filter(page: Page, action: str) -> None:
    page.get_by_test_id("audit-filter-action").fill(action)
    with page.expect_response(lambda r: "/api/audit?" in r.url and f"action={action}" in r.url):
        page.get_by_test_id("audit-apply").click()
    expect(page.locator("#audit-body")).not_to_have_class(re.compile("is-loading"))


# ----------------------------------------------------------------------------- tests
def test_cashier_gets_a_clear_refusal_and_a_manager_gets_in(bo: Page, cluster, screenshot_dir):
    base = cluster[2].url
    bo.goto(f"{base}/backoffice")
    expect(bo).to_have_url(re.compile(r"/backoffice/stock$"))
    expect(bo.get_by_test_id("user-manager")).to_be_visible()
    shot(bo, screenshot_dir, "login")

    login(bo, base, "stock", user="cashier")
    denied = bo.get_by_test_id("backoffice-denied")
    expect(denied).to_be_visible()
    expect(denied).to_contain_text("Managers only")
    expect(denied).to_contain_text("Cleo Cashier is logged in as a cashier")
    expect(bo.get_by_test_id("stock-table")).to_be_hidden()
    shot(bo, screenshot_dir, "denied")

    bo.get_by_test_id("denied-switch").click()
    bo.get_by_test_id("user-admin").click()
    for digit in DEMO_PINS["admin"]:
        bo.get_by_test_id(f"pin-key-{digit}").click()
    bo.get_by_test_id("pin-enter").click()
    expect(bo.get_by_test_id("who")).to_have_text(re.compile(r"Ad"))
    expect(bo.get_by_test_id("stock-row-BAK-001")).to_be_visible()


def test_a_sale_at_till_3_moves_the_stock_row_on_till_2_within_a_second(bo: Page, cluster,
                                                                        screenshot_dir):
    base = cluster[2].url
    sku, last_one = "BAK-002", "DAI-009"
    cluster[1].set_stock(last_one, 1)
    login(bo, base, "stock")
    expect(bo.get_by_test_id("stock-row-BAK-001")).to_be_visible()
    bo.get_by_test_id("sort-stock").click()  # lowest stock first: the sold-out row shows
    row = bo.get_by_test_id(f"stock-row-{last_one}")
    expect(row).to_have_attribute("data-stock", "1")
    expect(row).to_have_attribute("data-state", "low")

    search(bo, sku)
    row = bo.get_by_test_id(f"stock-row-{sku}")
    before = int(row.get_attribute("data-stock"))
    t0 = time.monotonic()
    sell(cluster[3], [(sku, 2)])
    acked = time.monotonic()
    expect(row).to_have_attribute("data-stock", str(before - 2), timeout=1000)
    seen = time.monotonic()
    assert seen - acked <= 1.0, f"row updated {seen - acked:.3f}s after the sale was confirmed"
    print(f"sale->row: {1000 * (seen - t0):.0f} ms from the request, "
          f"{1000 * (seen - acked):.0f} ms after the 201")

    # The last unit sells at till 1: the row is marked sold out at once.
    search(bo, last_one)
    row = bo.get_by_test_id(f"stock-row-{last_one}")
    sell(cluster[1], [(last_one, 1)], method="cash", extra_cash=250)
    expect(row).to_have_attribute("data-stock", "0", timeout=1000)
    expect(row).to_have_attribute("data-state", "soldout")
    expect(row).to_contain_text("sold out")

    search(bo, "")
    bo.get_by_test_id("sort-stock").click()  # -> descending
    bo.get_by_test_id("sort-stock").click()  # -> ascending: sold out and low on top
    expect(bo.get_by_test_id(f"stock-row-{last_one}")).to_be_visible()
    shot(bo, screenshot_dir, "stock")


def test_receive_and_adjust_stock_are_applied_and_audited(bo: Page, cluster, screenshot_dir):
    base = cluster[2].url
    sku = "BAK-004"
    login(bo, base, "stock")
    search(bo, sku)
    row = bo.get_by_test_id(f"stock-row-{sku}")
    before = int(row.get_attribute("data-stock"))

    bo.get_by_test_id(f"receive-{sku}").click()
    bo.get_by_test_id("move-qty").fill("24")
    bo.get_by_test_id("move-reason").fill("Delivery note 4711")
    expect(bo.get_by_test_id("move-preview")).to_have_text(f"Stock after: {before + 24}")
    shot(bo, screenshot_dir, "receive")
    bo.get_by_test_id("move-submit").click()
    expect(row).to_have_attribute("data-stock", str(before + 24))
    expect(bo.get_by_test_id("stock-move")).to_be_hidden()

    bo.get_by_test_id(f"adjust-{sku}").click()
    bo.get_by_test_id("move-qty").fill("-3")
    bo.get_by_test_id("move-submit").click()  # no reason: refused in the dialog
    expect(bo.get_by_test_id("move-error")).to_contain_text("reason")
    bo.get_by_test_id("move-reason").fill("Damaged")
    bo.get_by_test_id("move-submit").click()
    expect(row).to_have_attribute("data-stock", str(before + 21))

    # Replicated to the other tills, and audited (with user and reason) on this one.
    wait_until(lambda: all(n.stock(sku) == before + 21 for n in cluster.alive()), 5,
               "the stock to reach every till")
    entries = cluster[2].call("GET", "/api/audit", user="manager",
                              params={"action": "stock.*", "q": sku}).json()["entries"]
    got = {(e["action"], e["user"], e["details"]["quantity"], e["details"]["reason"]) for e in entries}
    assert ("stock.received", "manager", 24, "Delivery note 4711") in got
    assert ("stock.adjusted", "manager", -3, "Damaged") in got


def test_a_new_product_reaches_every_till(bo: Page, cluster):
    base = cluster[2].url
    login(bo, base, "stock")
    bo.get_by_test_id("product-new").click()
    bo.get_by_test_id("product-sku").fill("TST-001")
    bo.get_by_test_id("product-name").fill("Test honey 250 g")
    bo.get_by_test_id("product-price").fill("3,99")  # a comma works too
    bo.get_by_test_id("product-category").fill("Pantry")
    bo.get_by_test_id("product-threshold").fill("4")
    bo.get_by_test_id("product-stock").fill("12")
    bo.get_by_test_id("product-save").click()
    row = bo.get_by_test_id("stock-row-TST-001")
    expect(row).to_have_attribute("data-stock", "12")
    expect(row).to_contain_text("€3.99")
    made = wait_until(lambda: cluster[3].call("GET", "/api/products/TST-001").json().get("product"), 5,
                      "the product at till 3")
    assert (made["price_cents"], made["low_stock_threshold"], made["category"]) == (399, 4, "Pantry")


def test_an_edit_that_lost_shows_both_versions_and_the_winner(bo: Page, cluster, screenshot_dir):
    base = cluster[2].url
    sku = "DAI-002"
    login(bo, base, "stock")
    search(bo, sku)
    bo.get_by_test_id(f"edit-{sku}").click()
    expect(bo.get_by_test_id("product-name")).to_be_visible()
    # Meanwhile the admin changes the price at till 1.
    current = cluster[1].product(sku)
    r = cluster[1].call("PATCH", f"/api/products/{sku}", user="admin",
                        json={"base_version": current["version"],
                              "price_cents": current["price_cents"] + 20})
    assert r.status_code == 200, r.text
    bo.get_by_test_id("product-price").fill("2.49")
    bo.get_by_test_id("product-save").click()
    box = bo.get_by_test_id("edit-conflict")
    expect(box).to_be_visible()
    expect(bo.get_by_test_id("edit-conflict-winner")).to_contain_text("admin")
    theirs = current["price_cents"] + 20
    expect(bo.get_by_test_id("conflict-current-price_cents")).to_have_text(
        f"€{theirs // 100}.{theirs % 100:02d}")
    expect(bo.get_by_test_id("conflict-yours-price_cents")).to_have_text("€2.49")
    shot(bo, screenshot_dir, "edit-conflict")

    bo.get_by_test_id("edit-conflict-retry").click()  # now on top of the admin's version
    bo.get_by_test_id("product-save").click()
    expect(bo.get_by_test_id("product-dialog")).to_be_hidden()
    wait_until(lambda: cluster[3].product(sku)["price_cents"] == 249, 5, "the new price everywhere")


def test_an_offline_oversell_shows_as_a_conflict_and_is_resolved(bo: Page, cluster, screenshot_dir):
    base = cluster[2].url
    sku = "SNK-009"
    cluster[1].set_stock(sku, 1)
    wait_until(lambda: cluster[3].stock(sku) == 1, 5, "stock 1 at till 3")
    login(bo, base, "conflicts")
    # The edit that lost in the test before is on the list already.
    lost_edit = bo.get_by_test_id("conflict-row").filter(has_text="DAI-002")
    expect(lost_edit).to_have_attribute("data-kind", "edit_rejected")
    expect(lost_edit).to_contain_text("version 2 by admin stands")
    expect(bo.get_by_test_id("nav-conflicts-count")).to_have_text("1")

    cluster.isolate(3)  # till 3 loses the network and sells the last unit anyway
    try:
        time.sleep(0.3)
        offline = sell(cluster[3], [(sku, 1)])
        assert offline["status"] == "offline", offline
        sell(cluster[2], [(sku, 1)])  # meanwhile the same unit sells online at till 2
    finally:
        cluster.heal()

    row = bo.get_by_test_id("conflict-row").filter(has_text=sku)
    expect(row).to_be_visible(timeout=30_000)  # pushed when till 3 is back, then live
    expect(row).to_have_attribute("data-kind", "oversell")
    expect(row).to_contain_text("Till 3")
    expect(row).to_contain_text("cashier")
    expect(row).to_contain_text("sold 1 while 0 left")
    expect(bo.get_by_test_id("nav-conflicts-count")).to_have_text("2")
    shot(bo, screenshot_dir, "conflicts")

    row.get_by_test_id("conflict-resolve").click()
    expect(bo.get_by_test_id("resolve-dialog")).to_be_visible()
    bo.get_by_test_id("resolve-recount").fill("0")
    bo.get_by_test_id("resolve-text").fill("Shelf recounted: none left")
    bo.get_by_test_id("resolve-submit").click()
    expect(row).to_have_count(0)
    expect(bo.get_by_test_id("conflicts-summary")).to_contain_text("1 open conflict")
    bo.get_by_test_id("conflicts-resolved").click()
    done = bo.get_by_test_id("conflict-row").filter(has_text=sku)
    expect(done).to_have_attribute("data-status", "resolved")
    expect(done.get_by_test_id("conflict-resolution")).to_contain_text("Shelf recounted: none left")

    # Replicated to every till (stock recounted to 0), audited where it was done.
    def everywhere():
        return all(n.stock(sku) == 0 and any(
            c["sku"] == sku and c["status"] == "resolved"
            for c in n.call("GET", "/api/conflicts", user="manager").json()["conflicts"])
            for n in cluster.alive())
    wait_until(everywhere, 10, "the resolution to reach every till")
    audited = cluster[2].call("GET", "/api/audit", user="manager",
                              params={"action": "conflict.resolved"}).json()["entries"]
    assert any(e["user"] == "manager" and e["details"]["recount"] == 0 for e in audited)


def test_audit_filters_by_action_and_exports_the_same_rows(bo: Page, cluster, screenshot_dir):
    base = cluster[2].url
    login(bo, base, "audit")
    expect(bo.get_by_test_id("audit-verify-status")).to_have_attribute("data-ok", "true")
    expect(bo.get_by_test_id("audit-row").first).to_be_visible()

    apply_audit_filter(bo, "stock.*")
    rows = bo.get_by_test_id("audit-row")
    expect(rows.first).to_have_attribute("data-action", re.compile(r"^stock\."))
    actions = rows.evaluate_all("rs => rs.map(r => r.dataset.action)")
    keys = rows.evaluate_all("rs => rs.map(r => [Number(r.dataset.device), Number(r.dataset.seq)])")
    assert actions and all(a.startswith("stock.") for a in actions), actions
    assert {"stock.received", "stock.adjusted"} <= set(actions)

    with bo.expect_download() as info:
        bo.get_by_test_id("audit-export").click()
    download = info.value
    text = open(download.path(), encoding="utf-8").read()
    exported = list(csv.DictReader(io.StringIO(text)))
    assert [[int(r["device_id"]), int(r["seq"])] for r in exported] == keys
    assert [r["action"] for r in exported] == actions
    shot(bo, screenshot_dir, "audit")

    apply_audit_filter(bo, "conflict.resolved")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-user", "manager")


def test_tampering_with_an_audit_row_turns_verify_red_and_names_it(bo: Page, cluster,
                                                                  screenshot_dir):
    node = cluster[2]
    base = node.url
    (seq,), = node.query("SELECT seq FROM audit_log WHERE device_id = 2 AND action = 'stock.received' "
                         "ORDER BY seq LIMIT 1")
    login(bo, base, "audit")
    status = bo.get_by_test_id("audit-verify-status")
    expect(status).to_have_attribute("data-ok", "true")

    # Someone edits the delivery quantity in the database file behind the node's back.
    with closing(sqlite3.connect(node.db_path, timeout=10)) as conn:
        conn.execute("UPDATE audit_log SET details = json_set(details, '$.quantity', 240) "
                     "WHERE device_id = 2 AND seq = ?", (seq,))
        conn.commit()

    bo.get_by_test_id("audit-verify").click()
    expect(status).to_have_attribute("data-ok", "false")
    expect(status).to_contain_text(f"till 2, entry #{seq}")
    expect(status).to_contain_text("changed")
    expect(bo.get_by_test_id("audit-verify-device-2")).to_have_attribute("data-ok", "false")
    bo.get_by_test_id("audit-verify-device-2").click()  # the till's entries, the bad one marked
    apply_audit_filter(bo, "stock.received")
    broken = bo.locator(f'[data-testid="audit-row"][data-device="2"][data-seq="{seq}"]')
    expect(broken).to_have_class(re.compile(r"is-broken"))
    shot(bo, screenshot_dir, "audit-tampered")


def test_day_report_totals_equal_the_sales_made_here(bo: Page, cluster, screenshot_dir):
    sell(cluster[1], [("BAK-003", 3), ("DRK-001", 1)], method="cash", extra_cash=1000)
    sell(cluster[3], [("FRV-001", 2)])
    sell(cluster[3], [("BAK-003", 1)], method="cash")
    gross = sum(s["total"] for s in SALES)
    assert gross > 0 and len(SALES) >= 6
    day = datetime.now().date().isoformat()

    base = cluster[2].url
    login(bo, base, "reports")
    expect(bo.get_by_test_id("report-kind")).to_have_attribute("data-kind", "X")
    expect(bo.get_by_test_id("report-gross")).to_have_attribute("data-cents", str(gross), timeout=10_000)
    expect(bo.get_by_test_id("report-sales-count")).to_have_attribute("data-count", str(len(SALES)))
    cash = sum(s["total"] for s in SALES if s["method"] == "cash")
    card = sum(s["total"] for s in SALES if s["method"] == "card")
    expect(bo.get_by_test_id("report-payment-cash-amount")).to_have_attribute("data-cents", str(cash))
    expect(bo.get_by_test_id("report-payment-card-amount")).to_have_attribute("data-cents", str(card))
    expect(bo.get_by_test_id("report-cash-expected")).to_have_attribute("data-cents", str(cash))
    for device in (1, 2, 3):
        mine = sum(s["total"] for s in SALES if s["device"] == device)
        if mine:
            expect(bo.get_by_test_id(f"report-till-{device}-gross")).to_have_attribute(
                "data-cents", str(mine))
    expect(bo.get_by_test_id("report-net")).to_have_attribute("data-cents", str(gross))
    api = cluster[2].call("GET", "/api/reports/day", user="manager", params={"date": day}).json()
    assert api["report"]["sales"]["gross_cents"] == gross
    assert sum(t["gross_cents"] for t in api["report"]["by_till"]) == gross
    assert sum(h["gross_cents"] for h in api["report"]["by_hour"]) == gross
    shot(bo, screenshot_dir, "reports")
    bo.emulate_media(media="print")  # what "Print" puts on paper: no controls, the figures
    expect(bo.get_by_test_id("report-close")).to_be_hidden()
    shot(bo, screenshot_dir, "reports-print")
    bo.emulate_media(media="screen")

    bo.get_by_test_id("report-close").click()
    expect(bo.get_by_test_id("close-dialog")).to_be_visible()
    bo.get_by_test_id("close-confirm").click()
    expect(bo.get_by_test_id("report-kind")).to_have_attribute("data-kind", "Z")
    expect(bo.get_by_test_id("report-close")).to_be_disabled()
    z = cluster[2].call("GET", "/api/audit", user="manager",
                        params={"action": "report.z_closed"}).json()["entries"]
    assert len(z) == 1 and z[0]["details"]["gross_cents"] == gross and z[0]["user"] == "manager"


def test_cluster_page_marks_a_killed_node_down(bo: Page, cluster, screenshot_dir):
    base = cluster[2].url
    login(bo, base, "cluster")
    for device in (1, 2, 3):
        expect(bo.get_by_test_id(f"cluster-node-{device}")).to_have_attribute("data-alive", "true")
    expect(bo.get_by_test_id("cluster-node-1")).to_have_attribute("data-role", "master")
    expect(bo.get_by_test_id("cluster-node-2")).to_have_attribute("data-role", re.compile("client|follower"))
    expect(bo.get_by_test_id("cluster-master")).to_have_text("Till 1")

    cluster[3].kill()
    t0 = time.monotonic()
    card = bo.get_by_test_id("cluster-node-3")
    # Down after the failover timeout (2 s) as the node sees it, plus one poll (1 s).
    expect(card).to_have_attribute("data-alive", "false", timeout=4000)
    took = time.monotonic() - t0
    assert took <= 3.5, f"shown down after {took:.2f}s"
    print(f"killed till 3 shown down after {took:.2f}s")
    expect(card).to_contain_text("DOWN")
    expect(bo.get_by_test_id("cluster-node-1")).to_have_attribute("data-alive", "true")
    expect(bo.get_by_test_id("cluster-summary")).to_contain_text("1 down")
    shot(bo, screenshot_dir, "cluster")
