"""Command line: `python -m app run|demo|verify-audit` (also the `lanpos` console script)."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

from app.config import Config, add_run_arguments, load_config

if TYPE_CHECKING:
    from app.services.node import Node

DEMO_PORTS = (5001, 5002, 5003)
DEMO_ADMIN_PIN = "123456"  # till 1 creates 'admin' with it (POS_ADMIN_PIN, not a flag)


def _users_visible(node: Node, names: set[str]) -> bool:
    from app.services.shop import users

    return names <= {u["username"] for u in users.list_users(node)}


def _setup_users(node: Node, config: Config) -> None:
    """Journal the --admin-pin user and the demo users; return once this till holds them.

    A master that goes away mid-setup (a submit that timed out, an election while many
    tills start) is waited for again, for up to a minute: each step only adds what is
    still missing, so a retry never makes anything twice.
    """
    from app.services.shop import seed, users
    from app.utils.errors import ServiceUnavailable

    wanted = ({"admin"} if config.admin_pin else set()) | (
        {u[0] for u in seed.DEMO_USERS} if config.seed_demo else set())
    if _users_visible(node, wanted):
        node.ready.set()  # a restart: logins can be served now; the rest changes no user
    deadline = time.monotonic() + 60
    for attempt in range(1, 61):
        if not seed.wait_ready(node, timeout=max(0.0, deadline - time.monotonic())):
            print(f"till{config.device_id}: no master reachable; demo data/admin not created",
                  file=sys.stderr)
            return
        try:
            if config.admin_pin:
                users.ensure_admin(node, config.admin_pin)
            if config.seed_demo:
                seed.seed_demo(node)
            break
        except ServiceUnavailable as exc:
            logging.getLogger("lanpos.setup").info("setup attempt %d: %s; waiting for a master",
                                                   attempt, exc.message)
            time.sleep(0.5)
    # A till that is not master has them once the journal stream brings them back.
    deadline = time.monotonic() + 30
    while wanted and not _users_visible(node, wanted) and time.monotonic() < deadline:
        time.sleep(0.05)


def cmd_run(args: argparse.Namespace) -> int:
    from app import create_app
    from app.extensions import socketio
    from app.services.shop import seed
    from app.utils.shop_secrets import SecretFileError
    from app.wiring import start_cluster, stop_cluster

    try:
        config = load_config(args)
        app = create_app(config)  # reads (or makes) the cluster secret
    except SecretFileError as exc:
        print(f"lanpos: error: {exc}", file=sys.stderr)
        return 2
    node = app.extensions["lanpos_node"]
    if config.admin_pin or config.seed_demo:
        node.ready.clear()  # /health "starting", logins 503 STARTING until setup is done
    start_cluster(app)

    def background_setup() -> None:
        try:
            if config.admin_pin or config.seed_demo:
                _setup_users(node, config)
        except Exception:  # noqa: BLE001 - say why, then serve the users the till has
            logging.getLogger("lanpos.setup").exception("setup of the till's users failed")
        finally:
            node.ready.set()
        if config.bench_catalog and seed.wait_ready(node, timeout=60):
            seed.bulk_catalog(node, config.bench_catalog)

    threading.Thread(target=background_setup, name="setup", daemon=True).start()

    def on_term(signum, _frame):  # noqa: ANN001
        stop_cluster(app)
        with node.db.write() as session:
            node.audit.record(session, "node.stopped", None, {"signal": signum})
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print(f"till{config.device_id} listening on http://{config.host}:{config.port}/ "
          f"(data: {config.data_dir})", flush=True)
    socketio.run(app, host=config.host, port=config.port, allow_unsafe_werkzeug=True,
                 use_reloader=False, log_output=False)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from app.utils.shop_secrets import CLUSTER_SECRET_FILE, write_secret_file

    base = os.path.abspath(args.data_dir or "demo-data")
    # One secret for the three tills, in a 0600 file: never on their command lines.
    secret_file = os.path.join(base, CLUSTER_SECRET_FILE)
    if not os.path.exists(secret_file):
        write_secret_file(secret_file, secrets.token_hex(24))
    env = dict(os.environ, POS_ADMIN_PIN=DEMO_ADMIN_PIN)
    env.pop("POS_CLUSTER_SECRET", None)  # the file is the demo shop's secret
    ports = DEMO_PORTS
    procs: list[subprocess.Popen] = []
    for i, port in enumerate(ports, start=1):
        peers = [f"127.0.0.1:{p}" for p in ports if p != port]
        cmd = [sys.executable, "-m", "app", "run", "--device-id", str(i), "--port", str(port),
               "--host", "127.0.0.1", "--data-dir", os.path.join(base, f"till{i}"),
               "--cluster-secret-file", secret_file, "--no-discovery",
               "--shop-name", "lanpos demo shop"]
        for peer in peers:
            cmd += ["--peer", peer]
        if i == 1:
            cmd += ["--seed-demo"]
        procs.append(subprocess.Popen(cmd, env=env if i == 1 else {
            k: v for k, v in env.items() if k != "POS_ADMIN_PIN"}))
    print("\nlanpos demo shop: 3 tills on this machine\n")
    for i, port in enumerate(ports, start=1):
        print(f"  till {i}:  http://127.0.0.1:{port}/till      back office: "
              f"http://127.0.0.1:{port}/backoffice")
    print("\n  PINs:  admin 123456 · manager 234567 · cashier 0000")
    print(f"  data:  {base}   (delete it to start afresh)")
    print("  stop:  Ctrl-C\n", flush=True)

    def stop(*_):  # noqa: ANN002
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        for i, p in enumerate(procs, start=1):
            if p.poll() is not None:
                print(f"till {i} exited with {p.returncode}", flush=True)
        time.sleep(1)
        if all(p.poll() is not None for p in procs):
            return 1


def cmd_verify_audit(args: argparse.Namespace) -> int:
    """Exit 0: every chain verified; 1: broken (tampering, damage, divergence); 2: could
    not verify (no database, unreadable, or another schema version than this code's)."""
    import sqlite3

    from sqlalchemy.exc import SQLAlchemyError

    from app.models.db import SCHEMA_VERSION, Database
    from app.services.audit import verify_all

    path = os.path.join(args.data_dir, "lanpos.db")
    if not os.path.isfile(path):
        print(f"no database at {path}", file=sys.stderr)
        return 2
    db = Database(path)
    try:
        with db.read() as session:
            (revision,), = session.connection().exec_driver_sql(
                "SELECT version_num FROM alembic_version").all()
            if revision != f"{SCHEMA_VERSION:04d}":
                print(f"{path} has schema {revision}, this lanpos verifies {SCHEMA_VERSION:04d}: "
                      "start the till once (it migrates), or use the matching lanpos",
                      file=sys.stderr)
                return 2
            result = verify_all(session, args.device_id)
    except (SQLAlchemyError, sqlite3.Error, ValueError) as exc:
        print(f"could not verify {path}: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    for dev in result["devices"]:
        broken = dev["broken_at"] or {}
        state = "ok" if dev["ok"] else f"BROKEN at seq {broken.get('seq')} ({broken.get('reason')})"
        if broken.get("reason") == "diverged":
            state += f": its chain was {broken.get('diverged')}, reported by till {broken.get('reported_by')}"
        print(f"device {dev['device_id']}: {dev['entries']} entries verified, {state}")
    if (result.get("broken_at") or {}).get("reason") == "device_unknown":
        print("this till's own device id is not recorded (node_state audit_device): "
              "its own chain cannot be checked (pass --device-id)")
    print("audit log verified: OK" if result["ok"] else "audit log verification FAILED")
    return 0 if result["ok"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lanpos", description="lanpos point-of-sale node")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one till node")
    add_run_arguments(run)
    run.set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="start a 3-till demo shop on 127.0.0.1")
    demo.add_argument("--data-dir", default=None, help="where the demo tills keep their data")
    demo.set_defaults(func=cmd_demo)
    verify = sub.add_parser("verify-audit", help="verify the audit hash chains of a data dir")
    verify.add_argument("--data-dir", required=True)
    verify.add_argument("--device-id", type=int, default=None,
                        help="this till's device id (default: as its database records it)")
    verify.set_defaults(func=cmd_verify_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
