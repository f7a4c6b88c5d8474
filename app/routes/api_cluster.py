"""Health, cluster view, shop settings for the pages."""

from flask import Blueprint, jsonify

from app.routes.guards import has_role, node, optional_user

bp = Blueprint("api_cluster", __name__)


@bp.get("/health")
def health():
    """Open to anyone. 503 with `"state": "starting"` until the till can serve a login."""
    n = node()
    status = n.status()
    ready = n.ready.is_set()
    return jsonify({"status": "ok" if ready else "starting", "device_id": n.device_id,
                    "role": status["role"], "master_id": status["master_id"],
                    "epoch": status["epoch"], "state": status["state"] if ready else "starting",
                    "schema_version": n.schema_version}), 200 if ready else 503


@bp.get("/api/cluster")
def cluster():
    """The status pill's summary for anyone; peers, addresses and sync counters for managers."""
    n = node()
    if has_role(optional_user(), "manager"):
        return jsonify({"success": True, **n.status(), "outbox_pending": n.journal.outbox.pending(),
                        "schema_version": n.schema_version})
    return jsonify({"success": True, **n.status_summary(), "schema_version": n.schema_version})


@bp.get("/api/config/shop")
def shop():
    n = node()
    return jsonify({"success": True, "shop_name": n.config.shop_name, "device_id": n.device_id,
                    "currency": "EUR", "idle_lock_s": n.config.idle_lock})
