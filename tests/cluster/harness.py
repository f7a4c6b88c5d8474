"""Start real lanpos node processes on 127.0.0.1 and poke them, for tests and scripts.

Only loopback addresses are used. Every wait is bounded by a timeout.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from typing import Any

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_PINS = {"admin": "123456", "manager": "234567", "cashier": "0000"}


def _ports_outside_the_ephemeral_range() -> range:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            low, high = (int(v) for v in fh.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(10_000, low) if low > 11_000 else range(high + 1, 65_536)


_NODE_PORTS = _ports_outside_the_ephemeral_range()
_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port for a node, outside the kernel's ephemeral range.

    A port from bind(0) comes from that range: between this check and the node's own
    bind, the kernel can hand the same port to another socket (a TCP proxy of the same
    test binding port 0, a client connection). The node then dies with "Address already
    in use" while its /health is answered by whatever took the port (seen once in a
    browser test: a proxy to another till). Ports outside the range are never handed
    out by bind(0) or connect(); a port is given once per process.
    """
    for _ in range(500):
        port = random.choice(_NODE_PORTS)
        if port in _handed_out:
            continue
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_NODE_PORTS}")


class NodeProc:
    """One till: `python -m app run ...` as a child process."""

    def __init__(self, device_id: int, port: int, data_dir: str, *, peers: list[str],
                 secret: str, args: list[str] | None = None, env: dict | None = None,
                 python: list[str] | None = None):
        self.device_id = device_id
        self.port = port
        self.data_dir = data_dir
        self.peers = peers
        self.secret = secret
        self.args = list(args or [])
        self.env = env
        self.python = python or [sys.executable]
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(data_dir + ".log")
        self._tokens: dict[str, str] = {}
        self.http = requests.Session()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> str:
        return os.path.join(self.data_dir, "lanpos.db")

    def command(self) -> list[str]:
        cmd = [*self.python, "-m", "app", "run", "--device-id", str(self.device_id),
               "--port", str(self.port), "--host", "127.0.0.1", "--data-dir", self.data_dir,
               "--no-discovery"]
        for peer in self.peers:
            cmd += ["--peer", peer]
        return cmd + self.args

    def start(self) -> "NodeProc":
        os.makedirs(self.data_dir, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT
        # Secrets by environment, never on the command line (`ps` shows that to everyone).
        env["POS_CLUSTER_SECRET"] = self.secret
        env.update(self.env or {})
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._tokens.clear()
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: what a power cut looks like to the other tills."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def pause(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)

    def wait_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"till {self.device_id} exited; log: {self.tail_log()}")
            try:
                r = self.http.get(self.url + "/health", timeout=1)
                # The right till answering, not whatever else holds the port, and ready to
                # serve logins (503 "starting" while it journals its --admin-pin/demo users).
                body = r.json()
                if r.status_code == 200 and body.get("device_id") == self.device_id \
                        and body.get("state") != "starting":
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"till {self.device_id} did not come up; log: {self.tail_log()}")

    def tail_log(self, n: int = 30) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-n:])
        except OSError:
            return ""

    # ------------------------------------------------------------- API
    def health(self) -> dict[str, Any] | None:
        try:
            return self.http.get(self.url + "/health", timeout=1).json()
        except (requests.RequestException, ValueError):
            return None

    def cluster(self) -> dict[str, Any] | None:
        """The manager's view (peers with addresses, sync counters)."""
        try:
            return self.call("GET", "/api/cluster", user="manager", timeout=1).json()
        except (requests.RequestException, ValueError):
            return None

    def token(self, user: str = "cashier") -> str:
        if user not in self._tokens:
            r = self.http.post(self.url + "/api/auth/login",
                               json={"username": user, "pin": DEMO_PINS[user]}, timeout=5)
            r.raise_for_status()
            self._tokens[user] = r.json()["token"]
        return self._tokens[user]

    def call(self, method: str, path: str, *, user: str = "cashier", timeout: float = 5,
             **kwargs: Any) -> requests.Response:
        headers = {"Authorization": "Bearer " + self.token(user)}
        return self.http.request(method, self.url + path, headers=headers, timeout=timeout,
                                 **kwargs)

    def sell(self, sku: str, quantity: int = 1, *, price_cents: int | None = None,
             client_ref: str | None = None, timeout: float = 5) -> requests.Response:
        if price_cents is None:
            price_cents = self.product(sku)["price_cents"] * quantity
        return self.call("POST", "/api/sales", timeout=timeout, json={
            "lines": [{"sku": sku, "quantity": quantity}],
            "payments": [{"method": "card", "amount_cents": price_cents}],
            "client_ref": client_ref or uuid.uuid4().hex})

    def product(self, sku: str) -> dict[str, Any]:
        r = self.call("GET", f"/api/products/{sku}")
        r.raise_for_status()
        return r.json()["product"]

    def stock(self, sku: str) -> int:
        return self.product(sku)["stock"]

    def set_stock(self, sku: str, target: int) -> None:
        """Adjust (as the manager, with a reason) until the stock is `target`."""
        current = self.stock(sku)
        if current != target:
            r = self.call("POST", "/api/stock/adjust", user="manager",
                          json={"sku": sku, "quantity": target - current, "reason": "test setup"})
            assert r.status_code == 201, r.text

    # ---------------------------------------------------------- direct DB
    def journal(self) -> list[tuple[int, str]]:
        """(gseq, event_id) of the whole journal, read straight from the SQLite file."""
        with closing(sqlite3.connect(self.db_path, timeout=10)) as conn:
            return list(conn.execute("SELECT gseq, event_id FROM journal ORDER BY gseq"))

    def journal_and_outbox(self) -> tuple[list[tuple[int, str]], int]:
        """The journal and the outbox size in ONE read transaction (one snapshot).

        Read one after the other, they can straddle a commit that moves events from the
        outbox into the journal (a master journaling its own offline sales when its
        lease comes back): an old journal and an empty outbox, so the events are in
        neither. `Cluster.wait_converged` must never see that as converged.
        """
        with closing(sqlite3.connect(self.db_path, timeout=10, isolation_level=None)) as conn:
            conn.execute("BEGIN")
            journal = list(conn.execute("SELECT gseq, event_id FROM journal ORDER BY gseq"))
            outbox = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
            conn.execute("COMMIT")
        return journal, outbox

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with closing(sqlite3.connect(self.db_path, timeout=10)) as conn:
            return list(conn.execute(sql, params))


class Cluster:
    """N tills on 127.0.0.1 with static peers; node 1 loads the demo catalog."""

    def __init__(self, n: int, base_dir: str, *, failover_timeout: float = 2.0,
                 heartbeat_interval: float = 0.5, sync_interval: float = 30.0,
                 reclaim: str = "never", reclaim_delay: float = 30.0, seed: bool = True,
                 extra_args: dict[int, list[str]] | None = None, secret: str | None = None,
                 proxied: bool = False, submit_timeout: float = 1.0):
        self.secret = secret or uuid.uuid4().hex
        self.ports = {i: free_port() for i in range(1, n + 1)}
        # proxied: every link between two tills runs through a TcpProxy that can be cut.
        self.mesh = None
        if proxied:
            from tests.cluster.netproxy import ProxyMesh

            self.mesh = ProxyMesh(self.ports)
        self.nodes: dict[int, NodeProc] = {}
        # A 2-core CI box running 3 tills and the test can be slower than a shop's LAN:
        # a longer submit wait keeps "online" results deterministic in tests.
        common = ["--submit-timeout", str(submit_timeout),
                  "--failover-timeout", str(failover_timeout), "--heartbeat-interval",
                  str(heartbeat_interval), "--sync-interval", str(sync_interval),
                  "--reclaim", reclaim, "--reclaim-delay", str(reclaim_delay)]
        for i, port in self.ports.items():
            peers = [f"127.0.0.1:{p}" for j, p in self.ports.items() if j != i]
            args = list(common)
            if self.mesh is not None:
                peers = self.mesh.peers_of(i)
                args.append("--no-learn-peers")
            env = None
            if seed and i == 1:
                args += ["--seed-demo"]
                env = {"POS_ADMIN_PIN": DEMO_PINS["admin"]}
            args += (extra_args or {}).get(i, [])
            self.nodes[i] = NodeProc(i, port, os.path.join(base_dir, f"till{i}"), peers=peers,
                                     secret=self.secret, args=args, env=env)

    def __getitem__(self, device_id: int) -> NodeProc:
        return self.nodes[device_id]

    def start(self, wait_master: bool = True) -> "Cluster":
        for node in self.nodes.values():
            node.start()
        for node in self.nodes.values():
            node.wait_up()
        if wait_master:
            self.wait_master(timeout=20)
            self.wait_seeded()
        return self

    def stop(self) -> None:
        for node in self.nodes.values():
            node.kill()
        if self.mesh is not None:
            self.mesh.close()

    def isolate(self, device_id: int) -> None:
        assert self.mesh is not None, "Cluster(proxied=True) is needed to cut links"
        self.mesh.isolate(device_id)

    def heal(self) -> None:
        assert self.mesh is not None
        self.mesh.heal()

    def alive(self) -> list[NodeProc]:
        return [n for n in self.nodes.values() if n.alive()]

    def wait_master(self, expected: int | None = None, timeout: float = 15,
                    nodes: list[NodeProc] | None = None) -> int:
        """Until every given (default: live) node reports the same sequencing master."""
        deadline = time.monotonic() + timeout
        last: list = []
        while time.monotonic() < deadline:
            group = nodes or self.alive()
            views = [n.health() for n in group]
            last = views
            if all(v is not None for v in views):
                masters = {v["master_id"] for v in views}
                epochs = {tuple(v["epoch"]) for v in views}
                online = all(v["state"] == "online" for v in views)
                if len(masters) == 1 and len(epochs) == 1 and online and None not in masters:
                    master = masters.pop()
                    if expected is None or master == expected:
                        return master
            time.sleep(0.05)
        raise TimeoutError(f"no agreement on a master: {last}")

    def wait_seeded(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                # Log in only once the demo users exist: failed logins count toward lockout.
                users = [n.http.get(n.url + "/api/users", timeout=2).json()["users"]
                         for n in self.alive()]
                if not all({"cashier", "manager", "admin"} <= {u["username"] for u in us}
                           for us in users):
                    time.sleep(0.2)
                    continue
                if all(n.call("GET", "/api/products?limit=1").json().get("total", 0) >= 60
                       for n in self.alive()):
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError("demo catalog did not reach every till")

    def wait_converged(self, timeout: float = 30, nodes: list[NodeProc] | None = None
                       ) -> list[tuple[int, str]]:
        """Until every given node has the same journal and an empty outbox.

        Each node's journal and outbox are read in one snapshot: read apart, a master
        draining its outbox between the two reads looked converged with a journal that
        lacked the drained sales (test_regression_paused_master_sequences_after_wake
        then found acknowledged sales missing on another till; docs/chaos.md).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            group = nodes or self.alive()
            states = [n.journal_and_outbox() for n in group]
            journals = [j for j, _ in states]
            outboxes = [o for _, o in states]
            if all(j == journals[0] for j in journals) and not any(outboxes):
                return journals[0]
            time.sleep(0.2)
        raise TimeoutError("journals did not converge: " + ", ".join(
            f"till{n.device_id}: {len(n.journal())} entries, outbox "
            f"{n.query('SELECT count(*) FROM outbox')[0][0]}" for n in (nodes or self.alive())))
