"""Node-to-node HTTP sync routes (filled in with replication)."""

from flask import Blueprint

bp = Blueprint("sync", __name__, url_prefix="/api/sync")
