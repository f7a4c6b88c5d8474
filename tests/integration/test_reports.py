"""Day reports (X/Z) and the back-office pages, through the Flask test client (issue 6).

Own fixtures (the shared tests/integration/conftest.py is written concurrently): one app
per test on a temp SQLite, seeded with the demo shop.
"""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timedelta

import pytest

from app import create_app
from app.config import Config
from app.services.shop import reports
from app.services.shop.seed import seed_demo
from app.utils.money import round_half_up_div

PINS = {"admin": "123456", "manager": "234567", "cashier": "0000"}


@pytest.fixture()
def app(tmp_path):
    application = create_app(Config(data_dir=str(tmp_path), cluster=False, testing=True))
    seed_demo(application.extensions["lanpos_node"])
    yield application
    application.extensions["lanpos_node"].db.dispose()


@pytest.fixture()
def client(app):
    return app.test_client()


def token(client, user: str) -> dict:
    r = client.post("/api/auth/login", json={"username": user, "pin": PINS[user]})
    assert r.status_code == 200, r.get_json()
    return {"Authorization": "Bearer " + r.get_json()["token"]}


def product(client, auth, sku: str) -> dict:
    return client.get(f"/api/products/{sku}", headers=auth).get_json()["product"]


def sell(client, auth, lines: list[tuple[str, int]], payments: list[tuple[str, int]]) -> dict:
    r = client.post("/api/sales", headers=auth, json={
        "lines": [{"sku": s, "quantity": q} for s, q in lines],
        "payments": [{"method": m, "amount_cents": a} for m, a in payments],
        "client_ref": uuid.uuid4().hex})
    assert r.status_code == 201, r.get_json()
    return r.get_json()["sale"]


def today() -> str:
    return date.today().isoformat()


def report(client, auth, day: str | None = None) -> dict:
    r = client.get("/api/reports/day", headers=auth, query_string={"date": day or today()})
    assert r.status_code == 200, r.get_json()
    return r.get_json()["report"]


# ------------------------------------------------------------------ the figures
def test_empty_day_is_all_zero(client):
    mgr = token(client, "manager")
    r = report(client, mgr, "2001-02-03")
    assert r["kind"] == "X" and r["z_closed"] is None
    assert r["sales"] == {"count": 0, "gross_cents": 0, "tax_cents": 0, "discount_cents": 0,
                          "items": 0, "average_cents": 0}
    assert r["refunds"]["amount_cents"] == r["voids"]["amount_cents"] == 0
    assert r["net_cents"] == 0 and r["cash"]["expected_cents"] == 0
    assert [p["method"] for p in r["payments"]] == ["card", "cash"]
    assert len(r["by_hour"]) == 24 and r["top_products"] == [] and r["by_till"] == []


def test_day_report_adds_up_exactly(client):
    cash = token(client, "cashier")
    mgr = token(client, "manager")
    bread = product(client, cash, "BAK-003")  # 7 %
    water = next(p for p in client.get("/api/products", headers=cash, query_string={"limit": 200})
                 .get_json()["products"] if p["tax_rate_bp"] == 1900)
    b, w = bread["price_cents"], water["price_cents"]

    s1 = sell(client, cash, [(bread["sku"], 2)], [("cash", 2 * b + 55)])        # change 55
    s2 = sell(client, cash, [(water["sku"], 3), (bread["sku"], 1)], [("card", 3 * w + b)])
    s3 = sell(client, mgr, [(water["sku"], 1)], [("card", 100), ("cash", w - 100 + 1000)])  # split
    # Refund one bread of s2 (manager), void s3 entirely.
    r = client.post(f"/api/sales/{s2['sale_id']}/refund", headers=mgr,
                    json={"lines": [{"sku": bread["sku"], "quantity": 1}]})
    assert r.status_code == 201, r.get_json()
    r = client.post(f"/api/sales/{s3['sale_id']}/void", headers=mgr)
    assert r.status_code == 201, r.get_json()

    rep = report(client, mgr)
    gross = s1["total_cents"] + s2["total_cents"] + s3["total_cents"]
    assert rep["sales"]["count"] == 3
    assert rep["sales"]["gross_cents"] == gross
    assert rep["sales"]["items"] == 2 + 4 + 1
    assert rep["refunds"] == {"count": 1, "amount_cents": b,
                              "tax_cents": round_half_up_div(b * 700, 10700)}
    assert rep["voids"]["count"] == 1 and rep["voids"]["amount_cents"] == s3["total_cents"]
    assert rep["net_cents"] == gross - b - s3["total_cents"]

    methods = {p["method"]: p for p in rep["payments"]}
    assert methods["card"]["amount_cents"] == s2["total_cents"] + 100
    assert methods["cash"]["amount_cents"] == s1["total_cents"] + (w - 100)
    assert methods["card"]["amount_cents"] + methods["cash"]["amount_cents"] == gross
    # Money goes back in the sale's own tenders: s2's refund to its card, s3's void 100 to
    # the card and the rest in cash. Drawer: cash taken - change - cash given back.
    assert methods["card"]["refunded_cents"] == b + 100
    assert methods["cash"]["refunded_cents"] == s3["total_cents"] - 100
    tendered = (2 * b + 55) + (w - 100 + 1000)
    change = 55 + 1000
    assert rep["cash"] == {"tendered_cents": tendered, "change_cents": change,
                           "refunded_cents": s3["total_cents"] - 100,
                           "expected_cents": tendered - change - (s3["total_cents"] - 100)}

    rates = {t["rate_bp"]: t for t in rep["tax_by_rate"]}
    sales_tax = {700: 0, 1900: 0}
    for s in (s1, s2, s3):
        for rate, v in s["tax_by_rate"].items():
            sales_tax[int(rate)] += v["tax_cents"]
    void_tax = round_half_up_div(w * 1900, 11900)
    assert rates[700]["sales_tax_cents"] == sales_tax[700]
    assert rates[700]["refund_tax_cents"] == round_half_up_div(b * 700, 10700)
    assert rates[1900]["refund_tax_cents"] == void_tax
    assert rates[700]["tax_cents"] == sales_tax[700] - round_half_up_div(b * 700, 10700)
    assert rep["tax_cents"] == sum(t["tax_cents"] for t in rep["tax_by_rate"])
    assert rep["tax_cents"] == (rep["sales"]["tax_cents"] - rep["refunds"]["tax_cents"]
                                - rep["voids"]["tax_cents"])

    assert [t["device_id"] for t in rep["by_till"]] == [1]
    till = rep["by_till"][0]
    assert till["gross_cents"] == gross and till["sales_count"] == 3
    assert till["cash_expected_cents"] == rep["cash"]["expected_cents"]
    who = {c["user"]: c for c in rep["by_cashier"]}
    assert who["cashier"]["sales_count"] == 2
    assert who["cashier"]["gross_cents"] == s1["total_cents"] + s2["total_cents"]
    assert who["manager"]["gross_cents"] == s3["total_cents"]
    assert who["manager"]["refunds_cents"] == b and who["manager"]["voids_cents"] == s3["total_cents"]

    assert sum(h["gross_cents"] for h in rep["by_hour"]) == gross
    assert sum(h["count"] for h in rep["by_hour"]) == 3
    assert rep["by_hour"][datetime.now().hour]["count"] >= 1
    top = rep["top_products"]
    assert top[0]["sku"] == water["sku"] and top[0]["quantity"] == 4
    assert {p["sku"]: p["quantity"] for p in top} == {water["sku"]: 4, bread["sku"]: 3}
    for value in (rep["sales"]["gross_cents"], rep["cash"]["expected_cents"], rep["tax_cents"]):
        assert isinstance(value, int)


def test_sales_of_other_days_are_not_counted(app, client):
    cash = token(client, "cashier")
    mgr = token(client, "manager")
    sell(client, cash, [("BAK-003", 1)], [("card", product(client, cash, "BAK-003")["price_cents"])])
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    assert report(client, mgr, yesterday)["sales"]["count"] == 0
    assert report(client, mgr)["sales"]["count"] == 1
    start, end = reports.day_bounds(date.today())
    assert start <= int(time.time() * 1000) < end
    assert end - start in (23 * 3600_000, 24 * 3600_000, 25 * 3600_000)


# ------------------------------------------------------------------ Z close
def test_z_close_is_audited_once(client):
    cash = token(client, "cashier")
    mgr = token(client, "manager")
    price = product(client, cash, "BAK-003")["price_cents"]
    sell(client, cash, [("BAK-003", 2)], [("cash", 2 * price)])

    r = client.post("/api/reports/day/close", headers=mgr, json={"date": today()})
    assert r.status_code == 201, r.get_json()
    closed = r.get_json()["report"]
    assert closed["kind"] == "Z" and closed["z_closed"]["by"] == "manager"

    entries = client.get("/api/audit", headers=mgr, query_string={"action": "report.z_closed"}
                         ).get_json()["entries"]
    assert len(entries) == 1
    d = entries[0]["details"]
    assert d["date"] == today() and d["sales_count"] == 1 and d["gross_cents"] == 2 * price
    assert d["cash_expected_cents"] == 2 * price and d["payments"]["cash"] == 2 * price

    again = client.post("/api/reports/day/close", headers=mgr, json={"date": today()})
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "ALREADY_CLOSED"
    assert report(client, mgr)["kind"] == "Z"
    assert client.get("/api/audit/verify", headers=mgr).get_json()["ok"] is True


@pytest.mark.parametrize("body, code", [
    ({"date": "2024-13-01"}, "VALIDATION_ERROR"),
    ({"date": "yesterday!"}, "VALIDATION_ERROR"),
    ({"date": 20240101}, "VALIDATION_ERROR"),
    ({}, "VALIDATION_ERROR"),
    ({"date": "2024-01-01", "extra": 1}, "VALIDATION_ERROR"),
])
def test_close_rejects_bad_bodies(client, body, code):
    mgr = token(client, "manager")
    r = client.post("/api/reports/day/close", headers=mgr, json=body)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == code


def test_future_day_cannot_be_closed(client):
    mgr = token(client, "manager")
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    r = client.post("/api/reports/day/close", headers=mgr, json={"date": tomorrow})
    assert r.status_code == 400 and r.get_json()["error"]["details"]["field"] == "date"


def test_bad_date_query(client):
    mgr = token(client, "manager")
    for bad in ("2024-02-30", "24-1-1", "x" * 30):
        r = client.get("/api/reports/day", headers=mgr, query_string={"date": bad})
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "VALIDATION_ERROR"


# ------------------------------------------------------------------ who may
def test_reports_need_a_manager(app, client):
    assert app.test_client(use_cookies=False).get("/api/reports/day").status_code == 401
    cash = token(client, "cashier")
    r = client.get("/api/reports/day", headers=cash)
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "FORBIDDEN"
    r = client.post("/api/reports/day/close", headers=cash, json={"date": today()})
    assert r.status_code == 403
    admin = token(client, "admin")
    assert client.get("/api/reports/day", headers=admin).status_code == 200


# ------------------------------------------------------------------ pages
@pytest.mark.parametrize("page", ["stock", "conflicts", "audit", "cluster", "reports", "users"])
def test_backoffice_pages_render_for_anyone(client, page):
    r = client.get(f"/backoffice/{page}")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert f'data-page="{page}"' in html
    assert "/static/js/api.js" in html and f"/static/js/backoffice-{page}.js" in html
    assert "/static/vendor/socket.io.min.js" in html
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    assert 'data-testid="backoffice-denied"' in html


def test_backoffice_root_redirects_to_stock(client):
    for path in ("/backoffice", "/backoffice/"):
        r = client.get(path)
        assert r.status_code == 302 and r.headers["Location"].endswith("/backoffice/stock")
    assert client.get("/backoffice/nope").status_code == 404


def test_page_assets_are_served(client):
    for path in ("/static/js/backoffice.js", "/static/js/backoffice-stock.js",
                 "/static/js/backoffice-reports.js", "/static/css/backoffice.css",
                 "/static/vendor/chart.umd.min.js"):
        assert client.get(path).status_code == 200, path
    html = client.get("/backoffice/reports").get_data(as_text=True)
    assert "/static/vendor/chart.umd.min.js" in html
