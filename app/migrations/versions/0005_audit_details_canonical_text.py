"""audit log: details stored as the canonical JSON text that is hashed; copies get heads

* `audit_log.details` held `json.dumps(details)` (insertion key order, spaces, \\u
  escapes) while the hash covers `canonical_json(details)`. Verification now requires
  the stored text to BE that canonical text (so two different stored texts can never
  both verify), so every row is rewritten to the canonical text of its parsed value:
  exactly what was hashed, so no hash changes. A row that does not parse, or whose
  value has no canonical text, is left as it is (verification reports it).
* Copies of other tills' chains had no head record; verification now fails a chain
  with rows but no head (`head_missing`). Each chain without one gets it here, at its
  last entry. (A head deleted before this revision cannot be told from a copy that
  never had one; the cross-till comparison, `audit.diverged`, covers that case.)

Revision ID: 0005
Revises: 0004
"""
import json

from alembic import op

from app.utils.canonical import canonical_json

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

BATCH = 2000


def _canonical(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    try:
        return canonical_json(json.loads(text))
    except (TypeError, ValueError, RecursionError):
        return None


def upgrade() -> None:
    conn = op.get_bind()
    last = -1
    while True:
        rows = conn.exec_driver_sql(
            "SELECT rowid, details FROM audit_log WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (last, BATCH)).all()
        if not rows:
            break
        last = rows[-1][0]
        changes = []
        for rowid, text in rows:
            canonical = _canonical(text)
            if canonical is not None and canonical != text:
                changes.append((canonical, rowid))
        if changes:
            conn.exec_driver_sql("UPDATE audit_log SET details = ? WHERE rowid = ?", changes)
    conn.exec_driver_sql(
        "INSERT INTO node_state (key, value) "
        "SELECT 'audit_head:' || a.device_id, a.seq || ',' || a.hash FROM audit_log AS a "
        "WHERE typeof(a.device_id) = 'integer' AND typeof(a.seq) = 'integer' "
        "AND a.seq = (SELECT MAX(b.seq) FROM audit_log AS b WHERE b.device_id = a.device_id "
        "AND typeof(b.seq) = 'integer') "
        "AND NOT EXISTS (SELECT 1 FROM node_state WHERE key = 'audit_head:' || a.device_id)")


def downgrade() -> None:
    # The canonical text is valid JSON of the same value: older code reads it as is.
    # Heads of copies are harmless to it (it only reads its own).
    pass
