from collections import Counter

from app.services.shop.pricing import PriceLine, price_cart
from app.utils.barcode import is_valid_barcode
from app.utils.sample_catalog import SAMPLE_CATALOG, SAMPLE_CATEGORIES, _build

KEYS = {"sku", "name", "category", "price_cents", "tax_rate_bp", "barcode", "stock"}


def test_counts():
    assert len(SAMPLE_CATALOG) >= 72
    assert len(SAMPLE_CATEGORIES) >= 8
    assert len(set(SAMPLE_CATEGORIES)) == len(SAMPLE_CATEGORIES)
    per_category = Counter(p["category"] for p in SAMPLE_CATALOG)
    assert set(per_category) == set(SAMPLE_CATEGORIES)
    assert all(n >= 5 for n in per_category.values())


def test_shape_and_types():
    for p in SAMPLE_CATALOG:
        assert set(p) == KEYS, p
        assert isinstance(p["sku"], str) and p["sku"]
        assert isinstance(p["name"], str) and p["name"]
        for k in ("price_cents", "tax_rate_bp", "stock"):
            assert type(p[k]) is int, (p["sku"], k)


def test_unique_skus_barcodes_names():
    for key in ("sku", "barcode", "name"):
        values = [p[key] for p in SAMPLE_CATALOG]
        assert len(set(values)) == len(values), key


def test_barcodes_valid_german_ean13():
    for p in SAMPLE_CATALOG:
        code = p["barcode"]
        assert len(code) == 13 and is_valid_barcode(code), p
        assert 400 <= int(code[:3]) <= 440, p


def test_tax_rates():
    rates = {p["tax_rate_bp"] for p in SAMPLE_CATALOG}
    assert rates == {700, 1900}
    by_cat = {p["category"]: p["tax_rate_bp"] for p in SAMPLE_CATALOG}
    for food in ("Bakery", "Dairy", "Fruit & Veg", "Snacks"):
        assert by_cat[food] == 700
    for other in ("Drinks", "Household", "Personal care"):
        assert by_cat[other] == 1900


def test_prices_realistic():
    for p in SAMPLE_CATALOG:
        assert 20 <= p["price_cents"] <= 2_000, p


def test_stock_levels():
    stocks = [p["stock"] for p in SAMPLE_CATALOG]
    assert all(1 <= s <= 120 for s in stocks)
    assert sum(1 for s in stocks if s in (1, 2)) >= 4


def test_deterministic():
    # every node of a demo cluster must seed the identical catalog
    catalog, categories = _build()
    assert catalog == SAMPLE_CATALOG
    assert categories == SAMPLE_CATEGORIES


def test_whole_catalog_prices():
    lines = [PriceLine(p["sku"], p["name"], 1, p["price_cents"], p["tax_rate_bp"]) for p in SAMPLE_CATALOG]
    totals = price_cart(lines)
    assert totals.total_cents == sum(p["price_cents"] for p in SAMPLE_CATALOG)
    assert set(totals.tax_by_rate) == {700, 1900}
