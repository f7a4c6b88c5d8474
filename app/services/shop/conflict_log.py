"""The conflicts register (oversells, rejected edits) and their resolution by a manager."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.models import ConflictRecord
from app.services.node import Node
from app.services.shop.commands import ConflictResolve
from app.services.shop.submit import AuditNote, submit
from app.utils.errors import Conflict, NotFound


def conflict_dict(c: ConflictRecord) -> dict[str, Any]:
    return {"conflict_id": c.conflict_id, "kind": c.kind, "sku": c.sku, "event_id": c.event_id,
            "origin_device": c.origin_device, "user": c.user, "details": c.details,
            "decision": c.decision, "status": c.status, "resolution": c.resolution,
            "resolved_by": c.resolved_by, "created_ms": c.created_ms,
            "resolved_ms": c.resolved_ms}


def list_conflicts(node: Node, status: str = "") -> list[dict[str, Any]]:
    with node.db.read() as session:
        query = select(ConflictRecord).order_by(ConflictRecord.created_ms.desc())
        if status:
            query = query.where(ConflictRecord.status == status)
        return [conflict_dict(c) for c in session.scalars(query.limit(500))]


def resolve(node: Node, user: str, conflict_id: str, resolution: str,
            recount: int | None) -> dict[str, Any]:
    with node.db.read() as session:
        record = session.get(ConflictRecord, conflict_id)
        if record is None:
            raise NotFound("unknown conflict", {"conflict_id": conflict_id})
        if record.status == "resolved":
            raise Conflict("this conflict is already resolved", {"conflict_id": conflict_id},
                           code="ALREADY_RESOLVED")
    command = ConflictResolve(conflict_id=conflict_id, resolution=resolution, recount=recount)
    submit(node, command, user, audit=AuditNote("conflict.resolved", command.payload()), offline_ok=False)
    with node.db.read() as session:
        return conflict_dict(session.get(ConflictRecord, conflict_id))
