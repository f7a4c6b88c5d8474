"""lanpos: a point-of-sale node. `create_app(config)` wires one till."""

from __future__ import annotations

import logging
import secrets

from flask import Flask

from app.config import Config
from app.extensions import socketio
from app.models.db import SCHEMA_VERSION, Database
from app.routes import (
    api_admin,
    api_auth,
    api_catalog,
    api_cluster,
    api_reports,
    api_sales,
    backoffice_pages,
    errors,
    sockets,
    sync,
    till_pages,
)
from app.services.audit import AuditLog
from app.services.journal.journal import Journal
from app.services.node import Node
from app.services.shop.state_machine import ShopStateMachine
from app.services.shop.users import pepper_stored_hashes
from app.utils.clock import wall_ms
from app.utils.http_surface import AllowedHosts, HttpSurface, same_origin
from app.utils.shop_secrets import ensure_cluster_secret, pin_pepper, restrict_data_dir

__version__ = "0.1.0"

# Notices from the journal that browsers receive as-is.
BROWSER_EVENTS = {"stock_changed", "critical_event", "conflict", "conflict_resolved",
                  "product_changed", "sale_created", "sale_changed", "catalog_reloaded",
                  "user_changed"}


def create_app(config: Config | None = None) -> Flask:
    config = config or Config()
    restrict_data_dir(config.data_dir, config.db_path)
    config.cluster_secret = ensure_cluster_secret(config.data_dir, config.cluster_secret,
                                                  config.cluster_secret_file)
    logging.basicConfig(level=getattr(logging, config.log_level.upper(), logging.INFO),
                        format=f"%(asctime)s till{config.device_id} %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for noisy in ("werkzeug", "apscheduler", "engineio", "socketio", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app = Flask(__name__)
    app.config.update(SECRET_KEY=secrets.token_hex(32), MAX_CONTENT_LENGTH=config.max_body_bytes,
                      TESTING=config.testing, JSON_SORT_KEYS=False)

    db = Database(config.db_path)
    db.migrate()
    audit = AuditLog(config.device_id, wall_ms)
    journal = Journal(db, device_id=config.device_id, machine=ShopStateMachine(), clock=wall_ms,
                      audit=audit, submit_timeout=config.submit_timeout)
    node = Node(config=config, db=db, journal=journal, audit=audit, clock=wall_ms,
                schema_version=SCHEMA_VERSION, pepper=pin_pepper(config.cluster_secret))
    app.extensions["lanpos_node"] = node
    # Migrations run without the pepper: wrap any legacy PIN hash this till holds now.
    pepper_stored_hashes(node)

    # Browser sockets from the page's own origin only; other tills' clients send no Origin.
    socketio.init_app(app, async_mode="threading", cors_allowed_origins=same_origin,
                      ping_interval=10, ping_timeout=10, max_http_buffer_size=4 * 1024 * 1024)
    # Outermost: the Host check and security headers cover the pages, the API and /socket.io.
    app.wsgi_app = HttpSurface(app.wsgi_app, AllowedHosts(config.host, config.allowed_hosts))

    def relay(notices: list) -> None:
        for name, data in notices:
            if name in BROWSER_EVENTS:
                socketio.emit(name, data, to=sockets.BROWSERS)
            elif name == "sessions_revoked":
                sockets.sweep_session_sockets(node, data["username"])
            elif name == "outbox_changed":
                socketio.emit("cluster_status", node.status_summary(), to=sockets.BROWSERS)

    journal.subscribe(relay)

    errors.init_app(app)
    for module in (api_auth, api_catalog, api_sales, api_admin, api_cluster, sync, till_pages,
                   api_reports, backoffice_pages):
        app.register_blueprint(module.bp)
    sockets.register()
    sockets.register_node_namespace()

    with db.write() as session:
        audit.record(session, "node.started", None, {
            "version": __version__, "schema_version": SCHEMA_VERSION,
            "cluster": config.cluster, "peers": config.peers})
    if not config.cluster:
        # A node without a cluster is its own master at once (tests, a one-till shop).
        journal.sequencer.start((max(journal.store.epoch[0], 1), config.device_id))
    # Ready for logins with the users it holds; `run` clears this while its setup runs.
    node.ready.set()
    return app
