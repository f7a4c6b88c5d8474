"""Command line: `python -m app run|demo|verify-audit` (also the `lanpos` console script)."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import threading
import time

from app.config import add_run_arguments, load_config

DEMO_PORTS = (5001, 5002, 5003)


def _secret_for(data_dir: str, given: str | None) -> str:
    """The cluster secret: given, or kept in the data dir (made on first start)."""
    if given:
        return given
    path = os.path.join(data_dir, "cluster_secret")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip()
    os.makedirs(data_dir, exist_ok=True)
    secret = secrets.token_hex(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(secret)
    return secret


def cmd_run(args: argparse.Namespace) -> int:
    from app import create_app
    from app.extensions import socketio
    from app.services import seed, users
    from app.services.bootstrap import start_cluster, stop_cluster

    config = load_config(args)
    config.cluster_secret = _secret_for(config.data_dir, config.cluster_secret)
    app = create_app(config)
    node = app.extensions["lanpos_node"]
    start_cluster(app)

    def background_setup() -> None:
        if not (config.admin_pin or config.seed_demo or config.bench_catalog):
            return
        if not seed.wait_ready(node, timeout=60):
            print(f"till{config.device_id}: no master reachable; demo data/admin not created",
                  file=sys.stderr)
            return
        if config.admin_pin:
            users.ensure_admin(node, config.admin_pin)
        if config.seed_demo:
            seed.seed_demo(node)
        if config.bench_catalog:
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
    base = os.path.abspath(args.data_dir or "demo-data")
    secret = _secret_for(base, None)
    ports = DEMO_PORTS
    procs: list[subprocess.Popen] = []
    for i, port in enumerate(ports, start=1):
        peers = [f"127.0.0.1:{p}" for p in ports if p != port]
        cmd = [sys.executable, "-m", "app", "run", "--device-id", str(i), "--port", str(port),
               "--host", "127.0.0.1", "--data-dir", os.path.join(base, f"till{i}"),
               "--cluster-secret", secret, "--no-discovery", "--shop-name", "lanpos demo shop"]
        for peer in peers:
            cmd += ["--peer", peer]
        if i == 1:
            cmd += ["--seed-demo", "--admin-pin", "1234"]
        procs.append(subprocess.Popen(cmd))
    print("\nlanpos demo shop: 3 tills on this machine\n")
    for i, port in enumerate(ports, start=1):
        print(f"  till {i}:  http://127.0.0.1:{port}/till      back office: "
              f"http://127.0.0.1:{port}/backoffice")
    print("\n  PINs:  admin 1234 · manager 2345 · cashier 0000")
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
    from app.models.db import Database
    from app.services.audit import verify_all

    path = os.path.join(args.data_dir, "lanpos.db")
    if not os.path.exists(path):
        print(f"no database at {path}", file=sys.stderr)
        return 2
    db = Database(path)
    with db.read() as session:
        result = verify_all(session)
    for dev in result["devices"]:
        broken = dev["broken_at"] or {}
        state = "ok" if dev["ok"] else f"BROKEN at seq {broken.get('seq')} ({broken.get('reason')})"
        print(f"device {dev['device_id']}: {dev['entries']} entries verified, {state}")
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
    verify.set_defaults(func=cmd_verify_audit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
