"""Node-to-node HTTP sync routes. Every call must carry the cluster secret's signature."""

from __future__ import annotations

import time
from functools import wraps

from flask import Blueprint, Response, jsonify, request, send_file

from app.routes.guards import node, query_int
from app.services.audit import chain_head, export_chain
from app.services.journal.replication import changes_json, export_snapshot, full_export_json
from app.services.journal.snapshots import SnapshotUnavailable
from app.utils.errors import ApiError, Unauthorized
from app.utils.signing import verify_request

bp = Blueprint("sync", __name__, url_prefix="/api/sync")


def signed(view):
    """Refuse (and audit) any caller that cannot sign with the cluster secret."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        n = node()
        try:
            device = int(request.headers.get("X-Lanpos-Device", ""))
            ts = int(request.headers.get("X-Lanpos-Timestamp", ""))
        except ValueError:
            device, ts = 0, 0
        path = request.full_path if request.query_string else request.path
        ok = bool(n.config.cluster_secret) and verify_request(
            n.config.cluster_secret, request.method, path, request.get_data(), ts, device,
            request.headers.get("X-Lanpos-Signature", ""), now_ms=int(time.time() * 1000))
        if not ok:
            if n.cluster is not None:
                n.cluster.refuse(request.remote_addr or "?", f"unsigned sync call {request.path}")
            raise Unauthorized("node-to-node calls must be signed with the cluster secret",
                               code="NODE_UNAUTHORIZED")
        return view(*args, **kwargs)

    return wrapped


@bp.get("/changes")
@signed
def changes():
    since = query_int("since", 0, 0, 10**12)
    limit = query_int("limit", 1000, 1, 10_000)
    return Response(changes_json(node().journal, since, limit), mimetype="application/json")


@bp.get("/ids")
@signed
def ids():
    low = query_int("low", 0, 0, 10**12)
    high = query_int("high", 0, 0, 10**12)
    if high - low > 10_000:
        raise ApiError("VALIDATION_ERROR", "at most 10,000 ids per call", 400)
    epochs = request.args.get("epochs") == "1"
    return jsonify({"success": True, "ids": node().journal.store.ids_between(low, high, epochs=epochs)})


@bp.get("/full-export")
@signed
def export():
    """The whole journal as JSON; `?format=sqlite`: journal and derived tables as one
    SQLite file (how an empty till bootstraps, `replication.bootstrap`)."""
    n = node()
    if request.args.get("format") == "sqlite":
        try:
            handle, meta = export_snapshot(n.journal, n.config.data_dir)
        except SnapshotUnavailable as exc:
            raise ApiError("SNAPSHOT_UNAVAILABLE", f"{exc}; pull /api/sync/changes instead",
                           409) from exc
        response = send_file(handle, mimetype="application/vnd.sqlite3",
                             download_name="lanpos-snapshot.db")
        response.headers["X-Lanpos-Schema-Version"] = str(n.schema_version)
        response.headers["X-Lanpos-Last-Gseq"] = str(meta["last_gseq"])
        return response
    return Response(full_export_json(n.journal, n.schema_version), mimetype="application/json")


@bp.get("/schema")
@signed
def schema():
    return jsonify({"success": True, "schema_version": node().schema_version})


@bp.get("/status")
@signed
def status():
    n = node()
    if n.cluster is not None:
        return jsonify({"success": True, **n.cluster.sync_status()})
    last, _ = n.journal.store.position()
    return jsonify({"success": True, "role": "master" if n.journal.sequencer.active else "client",
                    "epoch": list(n.journal.store.epoch), "last_gseq": last,
                    "outbox_pending": n.journal.outbox.pending(), "lag": 0})


@bp.get("/audit")
@signed
def audit_chain():
    device = query_int("device_id", 0, 1, 99_999)
    after = query_int("after", 0, 0, 10**12)
    with node().db.read() as session:  # one snapshot: the head matches the entries
        entries = export_chain(session, device, after, query_int("limit", 1000, 1, 5000))
        head = chain_head(session, device)
    return jsonify({"success": True, "entries": entries, "head": head})
