"""Health, cluster view, shop settings for the pages."""

from flask import Blueprint, jsonify

from app.routes.guards import node

bp = Blueprint("api_cluster", __name__)


@bp.get("/health")
def health():
    n = node()
    status = n.status()
    return jsonify({"status": "ok", "device_id": n.device_id, "role": status["role"],
                    "master_id": status["master_id"], "epoch": status["epoch"],
                    "state": status["state"], "schema_version": n.schema_version})


@bp.get("/api/cluster")
def cluster():
    n = node()
    return jsonify({"success": True, **n.status(), "outbox_pending": n.ledger.outbox_pending(),
                    "schema_version": n.schema_version})


@bp.get("/api/config/shop")
def shop():
    n = node()
    return jsonify({"success": True, "shop_name": n.config.shop_name, "device_id": n.device_id,
                    "currency": "EUR", "idle_lock_s": n.config.idle_lock})
