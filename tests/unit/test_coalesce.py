"""What the browsers hear after a page of journal entries: final state, bounded."""

from app.services.shop.apply_bulk import NOTICE_CAP, coalesce


def test_final_stock_per_product_and_alerts_only_for_products_still_sold_out():
    notices = [
        ("stock_changed", {"sku": "A", "stock": 0}),
        ("critical_event", {"kind": "sold_out", "sku": "A", "stock": 0}),
        ("stock_changed", {"sku": "B", "stock": 0}),
        ("critical_event", {"kind": "sold_out", "sku": "B", "stock": 0}),
        ("stock_changed", {"sku": "A", "stock": 12}),     # restocked later in the page
        ("stock_changed", {"sku": "B", "stock": -1}),
        ("critical_event", {"kind": "oversold", "sku": "B", "stock": -1}),
        ("conflict", {"conflict_id": "c1"}),
    ]
    assert coalesce(notices) == [
        ("conflict", {"conflict_id": "c1"}),
        ("stock_changed", {"sku": "A", "stock": 12}),
        ("stock_changed", {"sku": "B", "stock": -1}),
        ("critical_event", {"kind": "oversold", "sku": "B", "stock": -1}),
    ]


def test_per_sale_and_per_product_notices_are_capped():
    sales = [("sale_created", {"sale_id": str(i)}) for i in range(NOTICE_CAP + 5)]
    products = [("product_changed", {"sku": str(i)}) for i in range(NOTICE_CAP + 1)]
    out = coalesce(sales + products)
    assert out[:NOTICE_CAP] == sales[:NOTICE_CAP]
    assert out[NOTICE_CAP:2 * NOTICE_CAP] == products[:NOTICE_CAP]
    # One notice stands for the rest: the newest sale, and a catalog reload.
    assert out[2 * NOTICE_CAP:] == [sales[-1], ("catalog_reloaded", {})]


def test_one_user_changed_per_user_a_page():
    failures = [("user_changed", {"username": "dora"}) for _ in range(50)]
    out = coalesce(failures + [("user_changed", {"username": "eve"}),
                               ("sessions_revoked", {"username": "dora"})])
    assert out == [("user_changed", {"username": "dora"}), ("user_changed", {"username": "eve"}),
                   ("sessions_revoked", {"username": "dora"})]
