"""Day reports: X (any time) and Z (close the day). Manager or admin."""

from flask import Blueprint, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from app.routes.guards import current_user, node, parse, require_role
from app.services.shop import reports

bp = Blueprint("api_reports", __name__, url_prefix="/api/reports")


class CloseBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    date: StrictStr = Field(min_length=10, max_length=10)


@bp.get("/day")
@require_role("manager")
def day():
    n = node()
    when = reports.parse_day(request.args.get("date", "")[:20], n.clock())
    return jsonify({"success": True, "report": reports.day_report(n, when)})


@bp.post("/day/close")
@require_role("manager")
def close_day():
    body = parse(CloseBody)
    n = node()
    when = reports.parse_day(body.date, n.clock())
    report = reports.z_close(n, current_user()["username"], when)
    return jsonify({"success": True, "report": report}), 201
