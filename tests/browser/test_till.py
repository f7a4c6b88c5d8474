"""The cashier touchscreen (/till) in a real browser against a real node (issue 5).

Each test uses its own products so the module can share one node.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import VIEWPORTS, Api, cents, login

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

RECEIPT_NO = re.compile(r"^T1-\d{6}$")


def test_pin_login_wrong_then_right(page: Page, node) -> None:
    page.goto(f"{node.url}/till")
    page.get_by_test_id("user-cashier").click()
    for digit in "9999":
        page.get_by_test_id(f"pin-key-{digit}").click()
    page.get_by_test_id("pin-enter").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("Wrong PIN")
    expect(page.get_by_test_id("login-error")).to_contain_text("attempts left")

    for digit in "0000":
        page.get_by_test_id(f"pin-key-{digit}").click()
    page.get_by_test_id("pin-enter").click()
    pill = page.get_by_test_id("cluster-status")
    expect(pill).to_have_attribute("data-state", "online")
    expect(pill).to_contain_text("master 1")
    expect(page.get_by_test_id("who")).to_have_text("Cleo Cashier")
    expect(page.get_by_test_id("product-BAK-001")).to_have_attribute("data-stock", re.compile(r"^\d+$"))

    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("user-cashier")).to_be_visible()


def test_sell_by_barcode_and_tile_cash_change_receipt(page: Page, node) -> None:
    api = Api(node.url).login("cashier")
    milk = api.product("DAI-001")  # found by barcode (keyboard-wedge scanner)
    bread = api.product("BAK-003")  # found by tapping its tile
    login(page, node.url)

    # A wedge scanner types digits then Enter into whatever has focus.
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.type(milk["barcode"])
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("cart-line-DAI-001")).to_be_visible()

    page.get_by_test_id("product-BAK-003").click()
    page.get_by_test_id("qty-plus-BAK-003").click()
    expect(page.get_by_test_id("qty-BAK-003")).to_have_text("2")

    total = milk["price_cents"] + 2 * bread["price_cents"]
    expect(page.get_by_test_id("cart-total")).to_have_text(f"€{total // 100}.{total % 100:02d}")

    page.get_by_test_id("pay-cash").click()
    page.get_by_test_id("tendered-input").fill("20")
    change = 2000 - total
    expect(page.get_by_test_id("change-due")).to_have_text(f"€{change // 100}.{change % 100:02d}")
    page.get_by_test_id("pay-confirm").click()

    receipt = page.get_by_test_id("receipt")
    expect(receipt).to_be_visible()
    receipt_no = page.get_by_test_id("receipt-no").inner_text()
    assert RECEIPT_NO.match(receipt_no), receipt_no
    assert cents(page.get_by_test_id("receipt-change").inner_text()) == change
    assert cents(page.get_by_test_id("receipt-total").inner_text()) == total
    expect(receipt).to_contain_text(milk["name"])
    expect(receipt).to_contain_text(bread["name"])
    expect(receipt).to_contain_text("VAT 7%")

    sale = api.get(f"/api/sales/by-receipt/{receipt_no}").json()["sale"]
    assert sale["total_cents"] == total
    assert sale["change_cents"] == change
    assert {(line["sku"], line["quantity"]) for line in sale["lines"]} == {("DAI-001", 1), ("BAK-003", 2)}

    page.get_by_test_id("new-sale").click()
    expect(page.get_by_test_id("cart-total")).to_have_text("€0.00")
    # the node's own stock_changed event updated the tile
    expect(page.get_by_test_id("product-BAK-003")).to_have_attribute(
        "data-stock", str(bread["stock"] - 2))


def test_double_clicked_pay_sells_once(page: Page, node) -> None:
    api = Api(node.url).login("cashier")
    before_sales = api.sales_total()
    before_stock = api.product("SNK-002")["stock"]
    login(page, node.url)

    page.get_by_test_id("product-SNK-002").click()
    page.get_by_test_id("pay-cash").click()
    page.get_by_test_id("pay-confirm").dblclick()
    expect(page.get_by_test_id("receipt")).to_be_visible()
    page.wait_for_timeout(500)  # a second POST, if any, would have landed by now

    assert api.sales_total() == before_sales + 1
    assert api.product("SNK-002")["stock"] == before_stock - 1


def test_retry_after_lost_answer_sells_once(page: Page, node) -> None:
    """The POST reaches the node but its answer is lost: Retry reuses the client_ref."""
    api = Api(node.url).login("cashier")
    before_sales = api.sales_total()
    before_stock = api.product("SNK-003")["stock"]
    login(page, node.url)

    refs: list[str] = []

    def lose_answer(route) -> None:
        refs.append(route.request.post_data_json["client_ref"])
        route.fetch()  # the node records the sale...
        route.abort("connectionreset")  # ...but the till never hears back

    page.route("**/api/sales", lose_answer)
    page.get_by_test_id("product-SNK-003").click()
    page.get_by_test_id("pay-card").click()
    page.get_by_test_id("pay-confirm").click()
    expect(page.get_by_test_id("pay-error")).to_contain_text("will not be recorded twice")
    expect(page.get_by_test_id("pay-confirm")).to_have_text("Retry")
    page.unroute("**/api/sales")

    with page.expect_request("**/api/sales") as req:
        page.get_by_test_id("pay-confirm").click()
    expect(page.get_by_test_id("receipt")).to_be_visible()
    assert req.value.post_data_json["client_ref"] == refs[0]
    uuid.UUID(refs[0])  # generated in the browser
    assert api.sales_total() == before_sales + 1
    assert api.product("SNK-003")["stock"] == before_stock - 1


def test_out_of_stock_when_another_till_took_the_last_unit(page: Page, node) -> None:
    api = Api(node.url).login("manager")
    sku = "DAI-009"  # Camembert: one unit in the demo shop
    assert api.product(sku)["stock"] == 1
    login(page, node.url)
    page.get_by_test_id(f"product-{sku}").click()
    expect(page.get_by_test_id(f"cart-line-{sku}")).to_be_visible()

    # Someone else sells the last unit through the API first.
    r = api.post("/api/sales", {"lines": [{"sku": sku, "quantity": 1}],
                                "payments": [{"method": "card", "amount_cents": 169}],
                                "client_ref": str(uuid.uuid4())})
    assert r.status_code == 201, r.text

    tile = page.get_by_test_id(f"product-{sku}")
    expect(tile).to_have_attribute("aria-disabled", "true")  # live, via Socket.IO
    expect(tile).to_have_attribute("data-stock", "0")

    page.get_by_test_id("pay-cash").click()
    page.get_by_test_id("pay-confirm").click()
    notice = page.get_by_test_id("cart-notice")
    expect(notice).to_contain_text("Camembert")
    expect(notice).to_contain_text("none left")
    expect(page.get_by_test_id(f"cart-line-{sku}")).to_have_class(re.compile(r"\bflagged\b"))
    expect(page.get_by_test_id("receipt")).to_be_hidden()

    # A sold-out tile cannot be added again.
    page.get_by_test_id(f"line-remove-{sku}").click()
    tile.click()
    expect(page.get_by_test_id(f"cart-line-{sku}")).to_have_count(0)


def test_refund_with_manager_pin(page: Page, node) -> None:
    api = Api(node.url).login("cashier")
    r = api.post("/api/sales", {"lines": [{"sku": "HOU-009", "quantity": 3}],
                                "payments": [{"method": "cash", "amount_cents": 500}],
                                "client_ref": str(uuid.uuid4())})
    assert r.status_code == 201, r.text
    receipt_no = r.json()["receipt_no"]
    login(page, node.url)

    page.get_by_test_id("open-refund").click()
    page.get_by_test_id("refund-receipt").fill(receipt_no)
    page.get_by_test_id("refund-find").click()
    expect(page.get_by_test_id("refund-line-HOU-009")).to_be_visible()
    page.get_by_test_id("refund-plus-HOU-009").click()
    page.get_by_test_id("refund-selected").click()

    page.get_by_test_id("approver-manager").click()
    for digit in "1111":  # wrong first
        page.get_by_test_id(f"approve-key-{digit}").click()
    page.get_by_test_id("approve-enter").click()
    expect(page.get_by_test_id("approve-error")).to_contain_text("Wrong manager PIN")
    page.get_by_test_id("approver-manager").click()
    for digit in "234567":
        page.get_by_test_id(f"approve-key-{digit}").click()
    page.get_by_test_id("approve-enter").click()

    expect(page.get_by_test_id("refund-result")).to_contain_text("Give back €0.99")
    expect(page.get_by_test_id("refund-status")).to_have_attribute("data-status", "partially_refunded")
    sale = api.get(f"/api/sales/by-receipt/{receipt_no}").json()["sale"]
    assert sale["status"] == "partially_refunded"
    assert sale["lines"][0]["refunded_qty"] == 1


@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_screenshots_of_main_states(browser, node, screenshot_dir, size: str) -> None:
    context = browser.new_context(viewport=VIEWPORTS[size])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    shot = lambda name: page.screenshot(path=str(screenshot_dir / f"till-{size}-{name}.png"))  # noqa: E731

    page.goto(f"{node.url}/till")
    expect(page.get_by_test_id("user-cashier")).to_be_visible()
    shot("0-login")
    login(page, node.url)
    shot("1-empty-cart")

    for sku in ("BAK-001", "DAI-003", "DRK-003", "FRV-002", "PAN-005", "HOU-001", "PER-001", "NEW-001"):
        page.get_by_test_id(f"product-{sku}").click()
    page.get_by_test_id("qty-plus-BAK-001").click()
    page.locator(".grid-wrap").evaluate("g => g.scrollTo(0, 0)")
    shot("2-full-cart")

    page.get_by_test_id("pay-cash").click()
    page.get_by_test_id("tendered-input").fill("50")
    shot("3-payment")
    page.get_by_test_id("pay-confirm").click()
    expect(page.get_by_test_id("receipt")).to_be_visible()
    shot("4-receipt")
    page.get_by_test_id("new-sale").click()

    # Offline and failover looks: a single node is always its own master, so here the
    # page is told so by /api/cluster (the cluster tests show the real thing).
    def cluster_says(state: str, pending: int) -> None:
        page.route("**/api/cluster", lambda route: route.fulfill(json={
            "success": True, "device_id": 1, "role": "client", "master_id": None,
            "epoch": [1, 1], "state": state, "outbox_pending": pending, "nodes": []}))
        page.evaluate("window.lanposTill.refreshCluster()")
        expect(page.get_by_test_id("cluster-status")).to_have_attribute("data-state", state)

    cluster_says("offline", 3)
    expect(page.get_by_test_id("cluster-status")).to_contain_text("3 sales waiting")
    expect(page.get_by_test_id("offline-banner")).to_be_visible()
    page.get_by_test_id("product-DRK-001").click()
    shot("5-offline")
    page.unroute("**/api/cluster")
    cluster_says("failover", 1)
    shot("6-failover")

    # Touch targets: every button on the selling screen is at least 48 px.
    small = page.evaluate("""() => Array.from(document.querySelectorAll(
        '#app button, #app input')).filter(b => b.offsetParent !== null).map(b => {
            const r = b.getBoundingClientRect();
            return [b.dataset.testid || b.id || b.textContent.trim(), r.width, r.height];
        }).filter(x => x[1] < 48 || x[2] < 48)""")
    assert small == [], small
    context.close()
    assert errors == [], errors


# ----------------------------------------------------------------------------- live, several tills
@pytest.mark.cluster
def test_tile_greys_out_within_1s_when_another_till_sells_the_last_unit(page: Page, make_cluster) -> None:
    cluster = make_cluster(2)
    sku = "NEW-009"  # Computer magazine: one unit in the demo shop
    login(page, cluster[1].url)
    tile = page.get_by_test_id(f"product-{sku}")
    expect(tile).to_have_attribute("data-stock", "1")
    expect(tile).not_to_have_attribute("aria-disabled", "true")

    r = cluster[2].sell(sku)  # the last unit goes at till 2
    assert r.status_code == 201, r.text
    sold = time.monotonic()
    expect(tile).to_have_attribute("aria-disabled", "true", timeout=1000)
    assert time.monotonic() - sold <= 1.0
    expect(tile).to_have_attribute("data-stock", "0")

    tile.click()  # a greyed-out tile cannot be added
    expect(page.get_by_test_id(f"cart-line-{sku}")).to_have_count(0)


@pytest.mark.cluster
def test_status_pill_through_master_loss_and_failover(browser, make_cluster, screenshot_dir) -> None:
    """Till 3's page: master 1 goes silent, a sale is kept locally (offline), till 2
    takes over (failover), the pill is back online and the sale is confirmed.

    Three tills: a master left alone with no live peer reports itself offline.
    """
    cluster = make_cluster(3, failover_timeout=4.0)
    till3 = cluster[3]
    context = browser.new_context(viewport=VIEWPORTS["1280x800"])
    page = context.new_page()
    login(page, till3.url)
    pill = page.get_by_test_id("cluster-status")
    expect(pill).to_have_attribute("data-state", "online")
    expect(pill).to_contain_text("master 1")
    page.evaluate("""() => {
        const pill = document.querySelector('[data-testid="cluster-status"]');
        window.pillStates = [pill.dataset.state];
        new MutationObserver(() => {
            const s = pill.dataset.state;
            if (window.pillStates[window.pillStates.length - 1] !== s) window.pillStates.push(s);
        }).observe(pill, {attributes: true});
    }""")

    # Power cut at the master: it just goes silent (no FIN, no RST), like SIGSTOP.
    cluster[1].pause()
    try:
        page.get_by_test_id("product-DRK-005").click()
        page.get_by_test_id("pay-card").click()
        page.get_by_test_id("pay-confirm").click()
        receipt = page.get_by_test_id("receipt")
        expect(receipt).to_be_visible()
        expect(page.get_by_test_id("receipt-offline")).to_be_visible()
        receipt_no = page.get_by_test_id("receipt-no").inner_text()
        page.get_by_test_id("new-sale").click()
        expect(pill).to_have_attribute("data-state", re.compile("offline|failover"))
        expect(pill).to_contain_text("1 sale waiting")
        page.screenshot(path=str(screenshot_dir / "till-1280x800-7-offline-real.png"))

        # Till 2 takes over after the failover timeout; its outbox is sequenced.
        expect(pill).to_have_attribute("data-state", "online", timeout=20000)
        expect(pill).to_contain_text("master 2", timeout=5000)
        expect(pill).not_to_contain_text("syncing", timeout=10000)
        page.screenshot(path=str(screenshot_dir / "till-1280x800-8-after-failover.png"))
    finally:
        cluster[1].kill()

    states = page.evaluate("window.pillStates")
    assert states[0] == "online" and states[-1] == "online", states
    assert set(states[1:-1]) & {"offline", "failover"}, states
    assert receipt_no.startswith("T3-"), receipt_no
    sale = till3.call("GET", f"/api/sales/by-receipt/{receipt_no}").json()["sale"]
    assert sale["sync"] == "synced", sale
    assert till3.query("SELECT count(*) FROM outbox")[0][0] == 0
    # confirmed means sequenced by the new master too
    on_master = cluster[2].call("GET", f"/api/sales/by-receipt/{receipt_no}")
    assert on_master.status_code == 200, on_master.text
    context.close()
