"""The one place for configuration: command-line flags > POS_* environment > defaults."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from app.utils.shop_secrets import read_secret_file


@dataclass
class Config:
    device_id: int = 1
    port: int = 5000
    host: str = "0.0.0.0"
    data_dir: str = "./data"
    peers: list[str] = field(default_factory=list)
    # Never from a flag (it would show in `ps`): POS_CLUSTER_SECRET, --cluster-secret-file,
    # or the data dir's 0600 file (app/utils/shop_secrets.py).
    cluster_secret: str | None = None
    cluster_secret_file: str | None = None
    # Host names (besides localhost, this machine's hostname and addresses) that browsers
    # may use to reach this till (app/utils/http_surface.py: DNS rebinding).
    allowed_hosts: list[str] = field(default_factory=list)
    discovery: bool = True
    # Add a peer that heartbeats us from an address we did not know (a till that joined
    # with --peer pointing at us). Tests that route all traffic through proxies turn it off.
    learn_peers: bool = True
    heartbeat_interval: float = 0.5
    failover_timeout: float = 2.0
    sync_interval: float = 30.0
    submit_timeout: float = 0.3
    reclaim: str = "never"
    reclaim_delay: float = 30.0
    # A till that lacks this many journal entries (and more than it holds) installs a
    # snapshot of the master's shop instead of replaying them (replication.bootstrap).
    snapshot_min: int = 10_000
    # Never from a flag either: POS_ADMIN_PIN or --admin-pin-file.
    admin_pin: str | None = None
    admin_pin_file: str | None = None
    seed_demo: bool = False
    # Hidden (benchmarks only): add N synthetic products once this node can journal edits.
    bench_catalog: int = 0
    shop_name: str = "lanpos demo shop"
    session_ttl: int = 12 * 3600
    idle_lock: int = 300
    # Managers and admins need PINs of 6+ digits (cashiers 4+); the wrong-PIN back-off
    # itself is fixed policy (app/services/shop/lockout.py).
    strong_pins_for_managers: bool = True
    max_body_bytes: int = 256 * 1024
    # Off in the Flask-test-client suite: the node is then its own master at once.
    cluster: bool = True
    testing: bool = False
    log_level: str = "INFO"

    @property
    def db_path(self) -> str:
        return os.path.join(self.data_dir, "lanpos.db")

    @property
    def failover_timeout_ms(self) -> int:
        return int(self.failover_timeout * 1000)


# name -> (type, help); a flag --x-y and an env POS_X_Y exist for each.
_FLAGS: dict[str, tuple[type, str]] = {
    "device_id": (int, "this till's device id (the lowest live id is master)"),
    "port": (int, "HTTP/Socket.IO port"),
    "host": (str, "address to bind (default 0.0.0.0: tills must reach each other)"),
    "data_dir": (str, "folder for the SQLite file and the cluster secret"),
    "cluster_secret_file": (str, "0600 file holding the shared secret that signs node-to-node "
                                 "traffic (default: <data-dir>/cluster_secret, made on first "
                                 "start; or env POS_CLUSTER_SECRET)"),
    "heartbeat_interval": (float, "seconds between heartbeats (default 0.5)"),
    "failover_timeout": (float, "seconds without heartbeat before a peer is dead (default 2)"),
    "sync_interval": (float, "seconds between periodic sync rounds (default 30)"),
    "submit_timeout": (float, "seconds a till waits for the master before selling offline"),
    "reclaim": (str, "never|auto: may a returning lower id take the master role back"),
    "reclaim_delay": (float, "seconds a returning node must be caught up before reclaiming"),
    "snapshot_min": (int, "journal entries a till may lack before it installs a snapshot "
                          "instead of replaying them (default 10000)"),
    "admin_pin_file": (str, "0600 file holding the PIN of user 'admin', created on first start "
                            "(or env POS_ADMIN_PIN)"),
    "shop_name": (str, "shop name on receipts"),
    "session_ttl": (int, "login session lifetime in seconds"),
    "idle_lock": (int, "seconds of inactivity before the till screen locks"),
    "log_level": (str, "logging level"),
}

_BOOL_ENVS = {"discovery", "seed_demo"}

# Flags that once took a secret on the command line, where every local user reads it in `ps`.
_REMOVED_SECRET_FLAGS = {
    "--cluster-secret": "put the secret in a file only you can read (chmod 600) and pass "
                        "--cluster-secret-file PATH, or set POS_CLUSTER_SECRET; without either "
                        "the till keeps its own in <data-dir>/cluster_secret",
    "--admin-pin": "put the PIN in a file only you can read (chmod 600) and pass "
                   "--admin-pin-file PATH, or set POS_ADMIN_PIN",
}


class _RemovedSecretFlag(argparse.Action):
    """A clear error, not 'unrecognized argument', for a removed secret flag."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        parser.error(f"{option_string} is no longer accepted (a secret on the command line shows "
                     f"in `ps` to every user of this machine): "
                     f"{_REMOVED_SECRET_FLAGS[option_string or '']}")


def _env_value(name: str, typ: type, env: Mapping[str, str]) -> Any:
    raw = env.get("POS_" + name.upper())
    if raw is None or raw == "":
        return None
    return typ(raw)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `run` (and, minus a few, of `demo`)."""
    for name, (typ, help_text) in _FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=typ, default=None, help=help_text)
    for flag in _REMOVED_SECRET_FLAGS:
        parser.add_argument(flag, action=_RemovedSecretFlag, nargs="?", help=argparse.SUPPRESS)
    parser.add_argument("--allowed-host", action="append", default=None, dest="allowed_hosts",
                        metavar="NAME", help="a host name browsers may use to reach this till, "
                        "besides localhost, its hostname and its addresses (repeatable); "
                        "env POS_ALLOWED_HOSTS=name,name")
    parser.add_argument("--peer", action="append", default=None, dest="peers", metavar="HOST:PORT",
                        help="static peer (repeatable); env POS_PEERS=host:port,host:port")
    parser.add_argument("--no-discovery", action="store_true", default=None, dest="no_discovery",
                        help="turn zeroconf discovery off (env POS_DISCOVERY=0)")
    parser.add_argument("--no-learn-peers", action="store_true", default=None, dest="no_learn_peers",
                        help="only talk to --peer/zeroconf addresses, never to addresses learned "
                             "from incoming heartbeats (env POS_LEARN_PEERS=0)")
    parser.add_argument("--seed-demo", action="store_true", default=None, dest="seed_demo",
                        help="load the sample catalog and demo users on first start")
    # Hidden: scripts/bench_checkout.py loads a large synthetic catalog (env POS_BENCH_CATALOG).
    parser.add_argument("--bench-catalog", type=int, default=None, dest="bench_catalog",
                        metavar="N", help=argparse.SUPPRESS)


def load_config(args: argparse.Namespace | None = None, env: Mapping[str, str] | None = None,
                **overrides: Any) -> Config:
    """Build a Config: explicit overrides > flags > POS_* env > defaults."""
    env = os.environ if env is None else env
    cfg = Config()
    for name, (typ, _) in _FLAGS.items():
        value = getattr(args, name, None) if args is not None else None
        if value is None:
            value = _env_value(name, typ, env)
        if value is not None:
            setattr(cfg, name, value)
    peers = getattr(args, "peers", None) if args is not None else None
    if not peers and env.get("POS_PEERS"):
        peers = [p.strip() for p in env["POS_PEERS"].split(",") if p.strip()]
    cfg.peers = list(peers or [])
    allowed = getattr(args, "allowed_hosts", None) if args is not None else None
    if not allowed and env.get("POS_ALLOWED_HOSTS"):
        allowed = [h.strip() for h in env["POS_ALLOWED_HOSTS"].split(",") if h.strip()]
    cfg.allowed_hosts = list(allowed or [])
    # Secrets: a file named by a flag, else the environment (never a flag's value).
    if cfg.cluster_secret_file is None:
        cfg.cluster_secret = env.get("POS_CLUSTER_SECRET") or None
    if cfg.admin_pin_file is not None:
        cfg.admin_pin = read_secret_file(cfg.admin_pin_file)
    else:
        cfg.admin_pin = env.get("POS_ADMIN_PIN") or None
    if args is not None and getattr(args, "no_discovery", None):
        cfg.discovery = False
    elif env.get("POS_DISCOVERY", "").lower() in {"0", "false", "no", "off"}:
        cfg.discovery = False
    if args is not None and getattr(args, "no_learn_peers", None):
        cfg.learn_peers = False
    elif env.get("POS_LEARN_PEERS", "").lower() in {"0", "false", "no", "off"}:
        cfg.learn_peers = False
    if args is not None and getattr(args, "seed_demo", None):
        cfg.seed_demo = True
    elif env.get("POS_SEED_DEMO", "").lower() in {"1", "true", "yes", "on"}:
        cfg.seed_demo = True
    bench = getattr(args, "bench_catalog", None) if args is not None else None
    if bench is None:
        bench = _env_value("bench_catalog", int, env)
    if bench is not None:
        if bench < 0:
            raise ValueError("--bench-catalog must not be negative")
        cfg.bench_catalog = bench
    valid = {f.name for f in fields(Config)}
    for key, value in overrides.items():
        if key not in valid:
            raise TypeError(f"unknown config key {key}")
        setattr(cfg, key, value)
    if cfg.reclaim not in {"never", "auto"}:
        raise ValueError("--reclaim must be 'never' or 'auto'")
    if cfg.device_id < 1:
        raise ValueError("--device-id must be a positive integer")
    return cfg
