"""Real till processes on the chaos hosts, and what the harness asks of them.

Each till is `python -m app run` with static peers, started inside its namespace (or on
loopback). The harness never talks HTTP through an environment proxy (`trust_env` off)
and only to the addresses its hosts made.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from contextlib import closing
from typing import Any

import requests

from tests.chaos.hosts import ROOT, ClockSkew, Hosts

PINS = {"admin": "123456", "manager": "234567", "cashier": "0000"}


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # never route through a proxy from the environment
    return s


class Till:
    def __init__(self, cluster: "ChaosCluster", i: int):
        self.cluster = cluster
        self.i = i
        self.data_dir = os.path.join(cluster.work_dir, f"till{i}")
        self.log_path = os.path.join(cluster.work_dir, f"till{i}.log")
        self.skew_file = os.path.join(cluster.work_dir, f"till{i}.skew")
        self.proc: subprocess.Popen | None = None
        self.http = session()
        self.paused = False
        self.wiped_dirs: list[str] = []
        self.starts = 0
        self._tokens: dict[str, str] = {}

    @property
    def url(self) -> str:
        return self.cluster.hosts.url(self.i)

    @property
    def db_path(self) -> str:
        return os.path.join(self.data_dir, "lanpos.db")

    def command(self) -> list[str]:
        host, port = self.cluster.hosts.listen(self.i)
        c = self.cluster
        cmd = [sys.executable, "-m", "app", "run", "--device-id", str(self.i), "--port", str(port),
               "--host", host, "--data-dir", self.data_dir,
               "--no-discovery", "--failover-timeout", str(c.failover_timeout),
               "--heartbeat-interval", str(c.heartbeat_interval), "--sync-interval",
               str(c.sync_interval), "--submit-timeout", str(c.submit_timeout),
               "--log-level", "WARNING"]
        for peer in c.hosts.peers(self.i):
            cmd += ["--peer", peer]
        cmd += c.hosts.node_args()
        if self.i == 1 and self.starts == 0:  # the shop is set up once, by till 1
            cmd += ["--seed-demo"]  # and POS_ADMIN_PIN (start): no secret on a command line
        return c.hosts.wrap(self.i, cmd)

    def start(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT
        env["POS_CLUSTER_SECRET"] = self.cluster.secret
        env.pop("POS_ADMIN_PIN", None)
        if self.i == 1 and self.starts == 0:  # as in command(): till 1's first start
            env["POS_ADMIN_PIN"] = PINS["admin"]
        for key in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
            env.pop(key, None)
        if self.cluster.skew is not None and self.i in self.cluster.skewable:
            if not os.path.exists(self.skew_file):
                self.cluster.skew.set_offset(self.skew_file, 0)
            env.update(self.cluster.skew.env_for(self.skew_file))
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        log.write(f"\n=== start {self.starts} at {time.time():.3f}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.starts += 1
        self.paused = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with _suppress():
                self.proc.send_signal(signal.SIGKILL)
            with _suppress():
                self.proc.wait(timeout=10)
        self.paused = False

    def terminate(self) -> None:
        if self.alive():
            if self.paused:
                self.resume()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def pause(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def wipe(self) -> str:
        """Move the data dir aside (kept as evidence for the checker) - to the till it is gone."""
        aside = f"{self.data_dir}.wiped{len(self.wiped_dirs) + 1}"
        if os.path.exists(self.data_dir):
            shutil.move(self.data_dir, aside)
            self.wiped_dirs.append(aside)
        return aside

    def wait_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"till {self.i} exited: {self.tail_log()}")
            if self.health(0.5) is not None:
                return
            time.sleep(0.1)
        raise TimeoutError(f"till {self.i} did not come up: {self.tail_log()}")

    def tail_log(self, n: int = 25) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-n:])
        except OSError:
            return ""

    # ---------------------------------------------------------------- HTTP
    def health(self, timeout: float = 1.0) -> dict[str, Any] | None:
        try:
            r = self.http.get(self.url + "/health", timeout=timeout)
            return r.json() if r.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return None

    def login(self, user: str, http: requests.Session | None = None, timeout: float = 5) -> str:
        r = (http or self.http).post(self.url + "/api/auth/login",
                                     json={"username": user, "pin": PINS[user]}, timeout=timeout)
        r.raise_for_status()
        return r.json()["token"]

    def api(self, method: str, path: str, user: str = "manager", timeout: float = 5,
            **kwargs: Any) -> requests.Response:
        for _ in range(2):
            token = self._tokens.get(user) or self.login(user)
            self._tokens[user] = token
            r = self.http.request(method, self.url + path, timeout=timeout,
                                  headers={"Authorization": "Bearer " + token}, **kwargs)
            if r.status_code != 401:
                return r
            self._tokens.pop(user, None)
        return r

    # ------------------------------------------------------------ SQLite
    def query(self, sql: str, params: tuple = (), path: str | None = None) -> list[tuple]:
        path = path or self.db_path
        if not os.path.exists(path):
            return []
        uri = f"file:{path}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
            return list(conn.execute(sql, params))

    def journal_ids(self) -> list[tuple[int, str]]:
        return self.query("SELECT gseq, event_id FROM journal ORDER BY gseq")

    def outbox_count(self) -> int:
        rows = self.query("SELECT count(*) FROM outbox")
        return rows[0][0] if rows else 0


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


class ChaosCluster:
    def __init__(self, hosts: Hosts, work_dir: str, *, n: int, skew: ClockSkew | None = None,
                 skewable: set[int] | None = None, failover_timeout: float = 2.0,
                 heartbeat_interval: float = 0.5, sync_interval: float = 30.0,
                 submit_timeout: float = 1.0):
        self.hosts = hosts
        self.work_dir = work_dir
        self.n = n
        self.secret = uuid.uuid4().hex + uuid.uuid4().hex
        self.skew = skew
        self.skewable = skewable or set()
        self.failover_timeout = failover_timeout
        self.heartbeat_interval = heartbeat_interval
        self.sync_interval = sync_interval
        self.submit_timeout = submit_timeout
        self.tills = {i: Till(self, i) for i in range(1, n + 1)}
        self._stopped = False
        atexit.register(self.stop)

    def __getitem__(self, i: int) -> Till:
        return self.tills[i]

    def start(self, timeout: float = 60) -> None:
        os.makedirs(self.work_dir, exist_ok=True)
        for t in self.tills.values():
            t.start()
        for t in self.tills.values():
            t.wait_up(timeout)
        self.wait_master(timeout)
        self.wait_seeded(timeout)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for t in self.tills.values():
            if t.paused:
                t.resume()
            t.kill()

    def views(self, timeout: float = 1.0) -> dict[int, dict | None]:
        return {i: (t.health(timeout) if t.alive() and not t.paused else None)
                for i, t in self.tills.items()}

    def agreed_master(self, views: dict[int, dict | None] | None = None) -> tuple[int, tuple] | None:
        """(master id, epoch) if every reachable till agrees and says online."""
        views = views if views is not None else self.views()
        seen = [v for v in views.values() if v is not None]
        if not seen:
            return None
        masters = {(v["master_id"], tuple(v["epoch"])) for v in seen}
        if len(masters) == 1 and all(v["state"] == "online" for v in seen):
            master, epoch = masters.pop()
            if master is not None:
                return master, epoch
        return None

    def wait_master(self, timeout: float = 30) -> tuple[int, tuple]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            views = self.views()
            last = views
            if all(v is not None for v in views.values()):
                agreed = self.agreed_master(views)
                if agreed is not None:
                    return agreed
            time.sleep(0.1)
        raise TimeoutError(f"no agreed master: {last}")

    def wait_seeded(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                counts = [len(t.query("SELECT sku FROM products")) for t in self.tills.values()]
                users = [len(t.query("SELECT username FROM users")) for t in self.tills.values()]
                if min(counts) >= 60 and min(users) >= 3:
                    return
            except sqlite3.Error:
                pass
            time.sleep(0.2)
        raise TimeoutError("demo catalog did not reach every till")

    def current_master(self) -> int | None:
        """Best guess of the sequencing master right now (majority view, else lowest claim)."""
        views = self.views(0.8)
        claims = [i for i, v in views.items() if v and v["role"] == "master"]
        followed: dict[int, int] = {}
        for v in views.values():
            if v and v.get("master_id"):
                followed[v["master_id"]] = followed.get(v["master_id"], 0) + 1
        if followed:
            best = max(followed.items(), key=lambda kv: (kv[1], -kv[0]))[0]
            if best in self.tills:
                return best
        return min(claims) if claims else None

    def converged(self) -> tuple[bool, str]:
        """Same journal everywhere, empty outboxes, one agreed online master."""
        views = self.views(2.0)
        if any(v is None for v in views.values()):
            return False, "not every till answers"
        if self.agreed_master(views) is None:
            return False, "no agreed master: " + ", ".join(
                f"{i}:{v['role']}/{v['master_id']}/{v['state']}" for i, v in views.items())
        journals = {i: t.journal_ids() for i, t in self.tills.items()}
        outbox = {i: t.outbox_count() for i, t in self.tills.items()}
        first = journals[1]
        if any(j != first for j in journals.values()):
            return False, "journals differ: " + ", ".join(f"{i}:{len(j)}" for i, j in journals.items())
        if any(outbox.values()):
            return False, f"outboxes not empty: {outbox}"
        return True, f"{len(first)} journal entries"
