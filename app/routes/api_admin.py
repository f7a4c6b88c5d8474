"""Users, audit log, conflicts."""

import csv
import io

from flask import Blueprint, Response, jsonify, request, stream_with_context

from app.routes.guards import current_user, node, optional_user, parse, query_int, require_role
from app.routes.schemas import ConflictResolve, UserCreate, UserUpdate
from app.services import audit
from app.services.shop import conflict_log
from app.services.shop import users as users_service
from app.utils.errors import Forbidden, ValidationError

bp = Blueprint("api_admin", __name__, url_prefix="/api")
# Highest (ts_ms, device_id, seq) of an audit cursor: as the filters allow, seq a SQLite INTEGER.
CURSOR_MAX = (10**15, 99_999, 2**63 - 1)


@bp.get("/users")
def list_users():
    """Anyone: the login screen's tiles (username, display name). Logged in: with roles.

    A guest on the shop's LAN learns no roles (which account is worth attacking) and no
    inactive accounts; staff get the roles (the till's approver dialog lists managers).
    `?all=1` (admin only): every user, inactive ones too, with `failures` and
    `retry_after_ms` (the back office's Users page).
    """
    if request.args.get("all") == "1":
        # The Users page: inactive users too, with their wrong-PIN state (admins only).
        user = current_user()
        if user["role"] != "admin":
            raise Forbidden("only an admin can list every user", {"required_role": "admin"})
        return jsonify({"success": True, "users": users_service.list_users_for_admin(node())})
    users = users_service.list_users(node())
    if optional_user() is None:
        users = [{"username": u["username"], "display_name": u["display_name"]} for u in users]
    return jsonify({"success": True, "users": users})


@bp.post("/users")
@require_role("admin")
def create_user():
    body = parse(UserCreate)
    user = users_service.create_user(node(), current_user()["username"], body.model_dump())
    return jsonify({"success": True, "user": user}), 201


@bp.patch("/users/<username>")
@require_role("admin")
def update_user(username: str):
    body = parse(UserUpdate)
    user = users_service.update_user(node(), current_user()["username"], username,
                                     body.model_dump(exclude_unset=True))
    return jsonify({"success": True, "user": user})


@bp.post("/users/<username>/unlock")
@require_role("admin")
def unlock_user(username: str):
    """Clear a user's wrong-PIN back-off on every till (journaled, audited)."""
    user = users_service.unlock_user(node(), current_user()["username"], username)
    return jsonify({"success": True, "user": user})


def _audit_filters() -> dict:
    args = request.args
    device = args.get("device_id")
    return {
        "action": args.get("action", "")[:60], "user": args.get("user", "")[:64],
        "text": args.get("q", "")[:100],
        "device_id": query_int("device_id", 0, 0, 99_999) if device else None,
        "since_ms": query_int("since", 0, 0, 10**15) if args.get("since") else None,
        "until_ms": query_int("until", 0, 0, 10**15) if args.get("until") else None,
    }


@bp.get("/audit")
@require_role("manager")
def audit_list():
    before = None
    if request.args.get("before"):
        try:
            ts, dev, seq = (int(x) for x in request.args["before"].split("."))
            before = (ts, dev, seq)
        except ValueError:
            raise ValidationError("before must be a cursor from 'next'", {"field": "before"}) from None
        # Each part must fit SQLite's 64-bit INTEGER (a bigger one made the query fail: 500).
        if not all(0 <= part <= hi for part, hi in zip(before, CURSOR_MAX, strict=True)):
            raise ValidationError("before must be a cursor from 'next'", {"field": "before"})
    with node().db.read() as session:
        result = audit.search(session, limit=query_int("limit", 100, 1, 1000), before=before,
                              **_audit_filters())
    return jsonify({"success": True, **result})


@bp.get("/audit/export.csv")
@require_role("manager")
def audit_export():
    filters = _audit_filters()

    def rows():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(audit.CSV_HEADER)
        with node().db.read() as session:
            for i, cells in enumerate(audit.export_rows(session, **filters)):
                writer.writerow(cells)
                if i % 500 == 0:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    return Response(stream_with_context(rows()), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=audit.csv"})


@bp.get("/audit/verify")
@require_role("manager")
def audit_verify():
    n = node()
    with n.db.read() as session:
        result = audit.verify_all(session, n.config.device_id)
    return jsonify({"success": True, **result})


@bp.get("/conflicts")
@require_role("manager")
def conflicts():
    return jsonify({"success": True, "conflicts": conflict_log.list_conflicts(
        node(), request.args.get("status", "")[:10])})


@bp.post("/conflicts/<conflict_id>/resolve")
@require_role("manager")
def resolve_conflict(conflict_id: str):
    body = parse(ConflictResolve)
    record = conflict_log.resolve(node(), current_user()["username"], conflict_id,
                                  body.resolution, body.recount)
    return jsonify({"success": True, "conflict": record})
