"""Storage: migrations, schema version, pragmas, restarts that keep the data; the demo seed."""

from __future__ import annotations

from sqlalchemy import text

from app.models.db import SCHEMA_VERSION, Database
from app.models.migrate import alembic_config
from app.services.shop.commands import ProductCreate
from app.services.shop.seed import DEMO_USERS, _made_here, _submit_batch, seed_demo
from app.services.shop.submit import event_for
from app.utils.barcode import is_valid_barcode
from app.utils.sample_catalog import SAMPLE_CATALOG
from tests.integration.conftest import login, sell, sql


def test_health_exposes_the_migrated_schema_version(client, node):
    (revision,), = sql(node, "SELECT version_num FROM alembic_version")
    assert client.get("/health").get_json()["schema_version"] == int(revision) == node.schema_version


def test_sqlite_pragmas(node):
    with node.db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000


def test_fresh_data_dir_gets_the_whole_schema(app_factory):
    node = app_factory().extensions["lanpos_node"]
    tables = {t for (t,) in sql(node, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"alembic_version", "journal", "outbox", "node_state", "products", "categories",
            "stock_movements", "sales", "sale_lines", "payments", "refunds", "users",
            "auth_sessions", "login_failures", "audit_log", "conflicts"} <= tables
    assert sql(node, "SELECT version_num FROM alembic_version") == [(f"{SCHEMA_VERSION:04d}",)]


def test_0002_upgrades_a_0001_database_and_keeps_its_sales(tmp_path):
    """A till of the first release keeps its data; afterwards two sales may share a
    (device, receipt_seq) pair (a till that lost its disk), receipt_no stays unique."""
    from alembic import command

    db = Database(str(tmp_path / "lanpos.db"))
    command.upgrade(alembic_config(db.engine), "0001")
    row = ("'s1', 'T2-000001', 2, 1, 'c', 'completed', 100, 0, 100, 7, '{}', 100, 0, 0, "
           "'online', 1, 'e1'")
    cols = ("sale_id, receipt_no, device_id, receipt_seq, cashier, status, subtotal_cents, "
            "discount_cents, total_cents, tax_cents, tax_by_rate, paid_cents, change_cents, "
            "refunded_cents, mode, created_ms, event_id")
    with db.engine.begin() as conn:
        conn.execute(text(f"INSERT INTO sales ({cols}) VALUES ({row})"))  # noqa: S608
    db.migrate()
    with db.engine.begin() as conn:
        head = f"{SCHEMA_VERSION:04d}"
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
        assert conn.execute(text("SELECT receipt_no FROM sales")).all() == [("T2-000001",)]
        conn.execute(text(f"INSERT INTO sales ({cols}) VALUES "  # noqa: S608
                          f"({row.replace('s1', 's2').replace('T2-000001', 'T2-000001-S2')})"))
        assert conn.execute(text("SELECT COUNT(*) FROM sales WHERE device_id = 2 "
                                 "AND receipt_seq = 1")).scalar() == 2
    db.dispose()


def test_0004_fills_in_old_refunds_as_cash_and_adds_the_movement_approver(tmp_path):
    """Refunds from before refund tenders were all paid in cash; stock movements get an
    empty approved_by."""
    from alembic import command

    db = Database(str(tmp_path / "lanpos.db"))
    command.upgrade(alembic_config(db.engine), "0003")
    with db.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO sales (sale_id, receipt_no, device_id, receipt_seq, cashier, status, "
            "subtotal_cents, discount_cents, total_cents, tax_cents, tax_by_rate, paid_cents, "
            "change_cents, refunded_cents, mode, created_ms, event_id) VALUES ('s1', 'T2-000001', "
            "2, 1, 'c', 'refunded', 349, 0, 349, 23, '{}', 349, 0, 349, 'online', 1, 'e1')"))
        conn.execute(text(
            "INSERT INTO refunds (refund_id, sale_id, kind, lines, amount_cents, tax_cents, method, "
            "user, device_id, created_ms, event_id) VALUES ('r1', 's1', 'refund', '[]', 349, 23, "
            "'cash', 'manager', 2, 2, 'e2')"))
        conn.execute(text("INSERT INTO products (sku, name, name_lower, price_cents, tax_rate_bp, "
                          "active, low_stock_threshold, version, stock) VALUES "
                          "('A', 'a', 'a', 1, 0, 1, 5, 1, 1)"))
        conn.execute(text("INSERT INTO stock_movements (event_id, sku, delta, kind, device_id, "
                          "created_ms) VALUES ('e3', 'A', 1, 'receive', 2, 3)"))
    command.upgrade(alembic_config(db.engine), "0004")
    with db.engine.begin() as conn:
        assert conn.execute(text("SELECT method, json(tenders) FROM refunds")).all() == [
            ("cash", '[{"method":"cash","amount_cents":349}]')]
        assert conn.execute(text("SELECT approved_by FROM stock_movements")).all() == [(None,)]
    db.dispose()


def test_restart_on_the_same_data_dir_keeps_everything(app_factory, data_dir, node, client, cashier,
                                                       manager):
    sale = sell(client, cashier, [("BAK-003", 2)]).get_json()
    client.post("/api/stock/adjust", headers=manager, json={"sku": "DAI-001", "quantity": -2,
                                                             "reason": "broken"})
    tables = [t for (t,) in sql(node, "SELECT name FROM sqlite_master WHERE type = 'table' "
                                      "AND name != 'alembic_version' ORDER BY name")]
    counts = {t: sql(node, f"SELECT COUNT(*) FROM {t}")[0][0] for t in tables}  # noqa: S608
    products = sql(node, "SELECT * FROM products ORDER BY sku")
    node.db.dispose()

    again = app_factory(data_dir)  # a second create_app on the same data dir
    node2 = again.extensions["lanpos_node"]
    assert sql(node2, "SELECT version_num FROM alembic_version") == [(f"{SCHEMA_VERSION:04d}",)]
    after = {t: sql(node2, f"SELECT COUNT(*) FROM {t}")[0][0] for t in tables}  # noqa: S608
    assert after["audit_log"] == counts["audit_log"] + 1  # + node.started
    assert {t: n for t, n in after.items() if t not in ("audit_log", "node_state")} == \
        {t: n for t, n in counts.items() if t not in ("audit_log", "node_state")}
    assert sql(node2, "SELECT * FROM products ORDER BY sku") == products
    client2 = again.test_client()
    # Sessions, sales, receipt numbering and the audit chain carry on.
    got = client2.get(f"/api/sales/{sale['sale_id']}", headers=cashier)
    assert got.status_code == 200 and got.get_json()["sale"]["receipt_no"] == "T1-000001"
    assert sell(client2, cashier, [("BAK-003", 1)]).get_json()["receipt_no"] == "T1-000002"
    assert client2.get("/api/audit/verify", headers=manager).get_json()["ok"] is True
    assert client2.get("/health").get_json()["role"] == "master"


def test_demo_seed_is_realistic_and_idempotent(app_factory):
    app = app_factory()
    node = app.extensions["lanpos_node"]
    assert seed_demo(node) > 60
    products = sql(node, "SELECT sku, barcode, tax_rate_bp, stock, category_id FROM products")
    assert len(products) >= 60
    assert len({p[4] for p in products}) >= 6
    assert {p[2] for p in products} == {700, 1900}
    assert all(is_valid_barcode(p[1]) and len(p[1]) == 13 for p in products)
    assert any(1 <= p[3] <= 2 for p in products)
    counts = {t: sql(node, f"SELECT COUNT(*) FROM {t}")[0][0]  # noqa: S608
              for t in ("products", "users", "journal", "stock_movements")}
    assert seed_demo(node) == 0
    assert counts == {t: sql(node, f"SELECT COUNT(*) FROM {t}")[0][0]  # noqa: S608
                      for t in ("products", "users", "journal", "stock_movements")}
    assert sorted(sql(node, "SELECT username, role FROM users")) == [
        ("admin", "admin"), ("cashier", "cashier"), ("manager", "manager")]
    assert login(app.test_client(), "manager", "234567")["user"]["role"] == "manager"


def test_an_interrupted_demo_seed_completes_what_is_missing(app_factory):
    """A demo till whose master went away mid-seed runs the seed again: it adds exactly
    the sample items it lacks, and a user or product another till made first is skipped
    (its refusal is not an error)."""
    app = app_factory()
    node = app.extensions["lanpos_node"]
    some = SAMPLE_CATALOG[:10]
    _submit_batch(node, [event_for(node, ProductCreate(**item), "system") for item in some])
    assert sql(node, "SELECT COUNT(*) FROM products")[0][0] == 10
    added = seed_demo(node)
    assert added == len(SAMPLE_CATALOG) - 10 + len(DEMO_USERS)
    assert sql(node, "SELECT COUNT(*) FROM products")[0][0] == len(SAMPLE_CATALOG)
    # The same product made again elsewhere: refused as a duplicate, counted as not ours.
    again = event_for(node, ProductCreate(**SAMPLE_CATALOG[0]), "system")
    assert _made_here(lambda: node.journal.execute(again, offline_ok=False)) == 0
    assert seed_demo(node) == 0


def test_derived_state_matches_a_rebuild_from_the_journal(node, client, cashier, manager):
    """The journal is the source of truth: re-deriving every table from it gives the same rows."""
    sale_id = sell(client, cashier, [("BAK-003", 2), ("DRK-001", 1)]).get_json()["sale_id"]
    client.post(f"/api/sales/{sale_id}/refund", headers=manager,
                json={"lines": [{"sku": "BAK-003", "quantity": 1}]})
    client.patch("/api/products/BAK-001", headers=manager, json={"base_version": 1, "price_cents": 40})
    login(client, "cashier", "0000")

    def snapshot():
        return {t: sql(node, f"SELECT * FROM {t} ORDER BY 1")  # noqa: S608
                for t in ("products", "sales", "sale_lines", "payments", "refunds", "users")}

    before = snapshot()
    before_stock = sql(node, "SELECT sku, delta, kind FROM stock_movements ORDER BY sku, id")
    with node.db.write() as session:
        node.journal.derived.rebuild(session)
    assert snapshot() == before
    assert sql(node, "SELECT sku, delta, kind FROM stock_movements ORDER BY sku, id") == before_stock


def test_bulk_catalog_matches_what_the_journal_derives(node, client, cashier, manager):
    """`run --bench-catalog N` loads products in bulk; the result equals replaying the journal."""
    from app.services.shop.seed import bulk_catalog

    (gseq_before,), = sql(node, "SELECT MAX(gseq) FROM journal")
    assert bulk_catalog(node, 120, chunk=50) == 120
    assert bulk_catalog(node, 120, chunk=50) == 0  # idempotent
    gseqs = [g for (g,) in sql(node, "SELECT gseq FROM journal WHERE gseq > ? ORDER BY gseq",
                               (gseq_before,))]
    assert gseqs == list(range(gseq_before + 1, gseq_before + 121))  # gapless, in order
    product = client.get("/api/products/BULK-000007", headers=cashier).get_json()["product"]
    assert product["stock"] == 1000 and product["category"] == "Frozen" and product["version"] == 1
    found = client.get("/api/products?search=item 00011", headers=cashier).get_json()["products"]
    assert {p["sku"] for p in found} == {f"BULK-{i:06d}" for i in range(110, 120)}
    assert sell(client, cashier, [("BULK-000007", 2)]).status_code == 201

    def snapshot():
        return {t: sql(node, f"SELECT * FROM {t} ORDER BY 1")  # noqa: S608
                for t in ("products", "categories")}

    before = snapshot()
    movements = sql(node, "SELECT event_id, sku, delta, kind, reason, device_id, user, created_ms "
                          "FROM stock_movements ORDER BY sku, id")
    with node.db.write() as session:
        node.journal.derived.rebuild(session)
    assert snapshot() == before
    assert sql(node, "SELECT event_id, sku, delta, kind, reason, device_id, user, created_ms "
                     "FROM stock_movements ORDER BY sku, id") == movements
    assert client.get("/api/audit/verify", headers=manager).get_json()["ok"] is True
    assert sql(node, "SELECT COUNT(*) FROM audit_log WHERE action = 'catalog.bulk_loaded'") == [(3,)]
