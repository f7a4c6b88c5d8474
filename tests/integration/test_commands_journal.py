"""Every payload a till journals is exactly its typed command (no field off the books)."""

from __future__ import annotations

from app.services.shop.commands import parse_payload
from tests.integration.conftest import sell


def test_every_journaled_payload_parses_as_its_command(client, node, cashier, manager, admin):
    sold = [sell(client, cashier, [("BAK-003", 1)]).get_json()["sale"] for _ in range(3)]
    assert client.post("/api/products", headers=manager, json={
        "sku": "TEA-100", "name": "Green tea", "price_cents": 349, "category": "Tea",
        "tax_rate_bp": 700, "stock": 2}).status_code == 201
    assert client.post(f"/api/sales/{sold[0]['sale_id']}/refund", headers=manager, json={
        "lines": [{"sku": "BAK-003", "quantity": 1}], "reason": "stale"}).status_code == 201
    assert client.post(f"/api/sales/{sold[1]['sale_id']}/void", headers=manager).status_code == 201
    assert client.patch("/api/products/BAK-003", headers=manager,
                        json={"base_version": 1, "price_cents": 39}).status_code == 200
    for path, qty in (("receive", 10), ("adjust", -1)):
        assert client.post(f"/api/stock/{path}", headers=manager,
                           json={"sku": "DRK-003", "quantity": qty, "reason": "x"}).status_code == 201
    assert client.post("/api/users", headers=admin, json={
        "username": "neu", "role": "cashier", "pin": "1111"}).status_code == 201
    assert client.patch("/api/users/neu", headers=admin,
                        json={"display_name": "Neu"}).status_code == 200
    assert client.post("/api/auth/login", json={"username": "neu", "pin": "9999"}).status_code == 401
    assert client.post("/api/users/neu/unlock", headers=admin).status_code == 200

    entries = node.journal.store.entries_since(0, 100_000)["entries"]
    assert {"sale.create", "sale.refund", "sale.void", "product.create", "product.update",
            "stock.receive", "stock.adjust", "user.create", "user.update",
            "user.login_failed", "user.unlock"} <= {e["type"] for e in entries}
    for entry in entries:
        command = parse_payload(entry["type"], entry["payload"])
        assert command.payload() == entry["payload"], entry["type"]
