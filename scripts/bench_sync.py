#!/usr/bin/env python3
"""Replication benchmark (issues 4 and 13), for clusters of 3, 5 and 16 tills on 127.0.0.1.

    .venv/bin/python scripts/bench_sync.py [--sizes 3,5] [--sales 200] [--oos 30]
                                           [--throughput-seconds 10] [--catchup 10000]
                                           [--products 100000] [--phases all] [--keep DIR]

    # issue 13, sixteen tills: propagation only (the other phases take an hour at 16)
    .venv/bin/python scripts/bench_sync.py --sizes 3,5,16 --phases propagation,polling \
                                           --skip-bootstrap

Real node processes (tests/cluster/harness.py) with the product defaults: heartbeat
0.5 s, failover timeout 2 s, submit timeout 0.3 s. Measured per cluster size:

* propagation: a sale at one till (round robin over all tills, one at a time); from the
  moment its HTTP 201 arrives to the moment the browser socket (python-socketio client,
  logged in as cashier) of every *other* till got `sale_created` for that sale_id.
  Negative = every other till had it before the selling till's 201 reached the cashier.
* propagation by polling (`--phases polling`): the same sales, but every other till is
  asked GET /api/sales/<sale_id> in turn (one thread per till, every `--poll-interval` s)
  until it has the sale: what a client that polls instead of listening sees.
* out-of-stock: a product's stock is set to 1 (stock adjust), one unit is sold (round
  robin over the tills); time from the sale's 201 until the browser socket of *every*
  till got `critical_event` for that sku (also shown: from sending the request).
* sequencer throughput: in a second cluster whose links run through TCP proxies, tills
  2..n are cut off and sell --offline-sales each offline; after the heal they resubmit
  their outboxes (pages of 200) and the master sequences them: entries the master
  journaled after the heal, per second from the first to the last of them.
* checkout throughput: 2 threads per till post sales for N seconds at the master and
  at the clients (one cashier at a time per till: a till holds its sale lock across the
  master round trip); journal entries appended by the master per second.
* catch-up: the last till is stopped, 10,000 sales are made at the others, the till is
  restarted; time until its journal is as long as the master's (from spawning the
  process, and from its first /health answer). Timed twice on the same backlog: as the
  product does it (that far behind, the till installs a snapshot), and from a copy of the
  stopped till with snapshots off (--snapshot-min 10**9: pages only).
* checkout during failover: till 3 sells continuously (one request at a time) while
  till 1 (the master) gets kill -9; p50/p99/max of POST /api/sales.
* bootstrap: a cluster whose master holds a 100,000-product catalog; an empty till joins
  (tills 2..n-1 stay off: each would first need the same untimed pull); time until its
  journal is as long as the master's (a lower bound ">" if --bootstrap-limit ends it). The
  catalog is built by `python -m app run --bench-catalog N` when that flag exists, else
  in-process by this script with app.services.shop.seed.bulk_catalog (same function) before
  the master starts. Also timed: one signed GET /api/sync/full-export of the master.

`--phases` picks what runs per size (default all): propagation, polling, oos,
throughput, catchup, failover, sequencer (bootstrap has --skip-bootstrap/--only-bootstrap).

Targets: propagation p50 <= 20 ms, p99 <= 100 ms; out-of-stock p99 <= 150 ms;
>= 500 events/s; 10,000-event catch-up <= 2 s; bootstrap <= 10 s; checkout during
failover max <= 1 s. Only 127.0.0.1 is used; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import closing

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import requests  # noqa: E402
import socketio  # noqa: E402

from tests.cluster.harness import DEMO_PINS, Cluster, NodeProc  # noqa: E402

TARGETS = {  # metric -> (op, value)
    "prop_p50": ("<=", 20.0), "prop_p99": ("<=", 100.0), "oos_p99": ("<=", 150.0),
    "poll_p99": ("<=", 100.0),
    "seq_rate": (">=", 500.0), "catchup": ("<=", 2.0), "bootstrap": ("<=", 10.0),
    "checkout_max": ("<=", 1000.0),
}


def say(msg: str) -> None:
    print(msg, flush=True)


def load_note() -> str:
    """Other work on this box skews every figure: say how busy it was."""
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min) / {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[k]


def cluster_args(n: int, base: str, **kw) -> Cluster:
    return Cluster(n, base, failover_timeout=2.0, heartbeat_interval=0.5, submit_timeout=0.3,
                   **kw)


def journal_len(node: NodeProc) -> int:
    try:
        with closing(sqlite3.connect(node.db_path, timeout=5)) as conn:
            return conn.execute("SELECT count(*) FROM journal").fetchone()[0]
    except sqlite3.Error:
        return -1


# ------------------------------------------------------------------ browser sockets
class Watcher:
    """One logged-in python-socketio client per till, timestamping what the node emits."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.cond = threading.Condition()
        self.sales: dict[int, dict[str, float]] = {}      # till -> sale_id -> t
        self.critical: dict[int, list[tuple[str, float]]] = {}  # till -> [(sku, t)]
        self.stock: dict[int, dict[str, tuple[int, float]]] = {}
        self.clients: dict[int, socketio.Client] = {}

    def connect(self, ids: list[int] | None = None) -> None:
        for i in ids or list(self.cluster.nodes):
            node = self.cluster[i]
            self.sales[i], self.critical[i], self.stock[i] = {}, [], {}
            client = socketio.Client(reconnection=True, reconnection_delay=0.2,
                                     reconnection_delay_max=1)
            client.on("sale_created", lambda d, i=i: self._sale(i, d))
            client.on("critical_event", lambda d, i=i: self._critical(i, d))
            client.on("stock_changed", lambda d, i=i: self._stock(i, d))
            client.connect(node.url, auth={"token": node.token("cashier")},
                           transports=["websocket"], wait_timeout=5)
            self.clients[i] = client

    def close(self) -> None:
        for client in self.clients.values():
            try:
                client.disconnect()
            except Exception:  # noqa: BLE001
                pass
        self.clients.clear()

    def _sale(self, i: int, data: dict) -> None:
        t = time.monotonic()
        with self.cond:
            self.sales[i].setdefault(str(data.get("sale_id")), t)
            self.cond.notify_all()

    def _critical(self, i: int, data: dict) -> None:
        t = time.monotonic()
        with self.cond:
            self.critical[i].append((str(data.get("sku")), t))
            self.cond.notify_all()

    def _stock(self, i: int, data: dict) -> None:
        t = time.monotonic()
        with self.cond:
            self.stock[i][str(data.get("sku"))] = (int(data.get("stock", 0)), t)
            self.cond.notify_all()

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.1))
            return True


# ---------------------------------------------------------------------- helpers
def prepare_stock(cluster: Cluster, skus: list[str], qty: int = 100_000) -> None:
    master = cluster[1]
    for sku in skus:
        r = master.call("POST", "/api/stock/receive", user="manager",
                        json={"sku": sku, "quantity": qty, "reason": "bench"})
        r.raise_for_status()


def skus_of(node: NodeProc, limit: int = 60) -> list[dict]:
    r = node.call("GET", f"/api/products?limit={limit}")
    r.raise_for_status()
    return r.json()["products"]


def sale_body(sku: str, price: int) -> dict:
    return {"lines": [{"sku": sku, "quantity": 1}],
            "payments": [{"method": "card", "amount_cents": price}],
            "client_ref": uuid.uuid4().hex}


def new_session(node: NodeProc, user: str = "cashier") -> requests.Session:
    s = requests.Session()
    r = s.post(node.url + "/api/auth/login", json={"username": user, "pin": DEMO_PINS[user]},
               timeout=5)
    r.raise_for_status()
    s.headers["Authorization"] = "Bearer " + r.json()["token"]
    return s


# ------------------------------------------------------------------- measurements
def bench_propagation(cluster: Cluster, watcher: Watcher, products: list[dict], count: int
                      ) -> dict:
    ids = sorted(cluster.nodes)
    sessions = {i: new_session(cluster[i]) for i in ids}
    from_201: list[float] = []
    from_send: list[float] = []
    missed = 0
    statuses: dict[str, int] = {}
    for k in range(count):
        origin = ids[k % len(ids)]
        prod = products[k % len(products)]
        t_send = time.monotonic()
        r = sessions[origin].post(cluster[origin].url + "/api/sales",
                                  json=sale_body(prod["sku"], prod["price_cents"]), timeout=10)
        t_201 = time.monotonic()
        if r.status_code != 201:
            raise RuntimeError(f"sale at till {origin}: HTTP {r.status_code} {r.text[:200]}")
        statuses[r.json()["status"]] = statuses.get(r.json()["status"], 0) + 1
        sale_id = r.json()["sale_id"]
        others = [i for i in ids if i != origin]
        ok = watcher.wait_for(lambda sid=sale_id, o=others: all(sid in watcher.sales[i] for i in o),
                              5.0)
        if not ok:
            missed += 1
            continue
        seen = max(watcher.sales[i][sale_id] for i in others)
        from_201.append((seen - t_201) * 1000)
        from_send.append((seen - t_send) * 1000)
        if (k + 1) % 50 == 0:
            say(f"    propagation {k + 1}/{count}: p50 {pct(from_201, 50):6.1f} ms  "
                f"p99 {pct(from_201, 99):6.1f} ms (from 201)")
    return {"prop_p50": pct(from_201, 50), "prop_p99": pct(from_201, 99),
            "prop_max": max(from_201), "prop_min": min(from_201),
            "prop_send_p50": pct(from_send, 50), "prop_send_p99": pct(from_send, 99),
            "prop_missed": missed, "prop_status": statuses}


def bench_polling(cluster: Cluster, products: list[dict], count: int, interval: float) -> dict:
    """Like bench_propagation, but every other till is polled (GET /api/sales/<id>)."""
    ids = sorted(cluster.nodes)
    sessions = {i: new_session(cluster[i]) for i in ids}
    from_201: list[float] = []
    missed = 0

    def wait_till(i: int, sale_id: str, out: dict) -> None:
        s = sessions[i]
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                r = s.get(f"{cluster[i].url}/api/sales/{sale_id}", timeout=2)
                if r.status_code == 200:
                    out[i] = time.monotonic()
                    return
            except requests.RequestException:
                pass
            time.sleep(max(0.0, interval - (time.monotonic() - t0)))

    for k in range(count):
        origin = ids[k % len(ids)]
        prod = products[k % len(products)]
        r = sessions[origin].post(cluster[origin].url + "/api/sales",
                                  json=sale_body(prod["sku"], prod["price_cents"]), timeout=10)
        t_201 = time.monotonic()
        if r.status_code != 201:
            raise RuntimeError(f"sale at till {origin}: HTTP {r.status_code} {r.text[:200]}")
        sale_id = r.json()["sale_id"]
        others = [i for i in ids if i != origin]
        seen: dict[int, float] = {}
        threads = [threading.Thread(target=wait_till, args=(i, sale_id, seen), daemon=True)
                   for i in others]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        if len(seen) < len(others):
            missed += 1
            continue
        from_201.append((max(seen.values()) - t_201) * 1000)
        if (k + 1) % 50 == 0:
            say(f"    polling {k + 1}/{count}: p50 {pct(from_201, 50):6.1f} ms  "
                f"p99 {pct(from_201, 99):6.1f} ms (from 201)")
    return {"poll_p50": pct(from_201, 50), "poll_p99": pct(from_201, 99), "poll_missed": missed}


def bench_out_of_stock(cluster: Cluster, watcher: Watcher, sku: str, price: int, trials: int
                       ) -> dict:
    ids = sorted(cluster.nodes)
    manager = new_session(cluster[1], "manager")
    sessions = {i: new_session(cluster[i]) for i in ids}
    from_201: list[float] = []
    from_send: list[float] = []
    missed = 0
    for k in range(trials):
        stock = cluster[1].stock(sku)
        if stock != 1:
            r = manager.post(cluster[1].url + "/api/stock/adjust", timeout=10, json={
                "sku": sku, "quantity": 1 - stock, "reason": "bench: one left"})
            r.raise_for_status()
        if not watcher.wait_for(lambda: all(watcher.stock[i].get(sku, (None,))[0] == 1
                                            for i in ids), 5.0):
            # the stock may have been 1 everywhere already (no event): check directly
            if not all(cluster[i].stock(sku) == 1 for i in ids):
                raise RuntimeError("stock 1 did not reach every till")
        time.sleep(0.05)
        with watcher.cond:
            marks = {i: len(watcher.critical[i]) for i in ids}
        origin = ids[k % len(ids)]
        t_send = time.monotonic()
        r = sessions[origin].post(cluster[origin].url + "/api/sales",
                                  json=sale_body(sku, price), timeout=10)
        t_201 = time.monotonic()
        if r.status_code != 201:
            raise RuntimeError(f"last-unit sale at till {origin}: HTTP {r.status_code} {r.text[:200]}")

        def first(i: int, marks: dict = marks) -> float | None:
            for s, t in watcher.critical[i][marks[i]:]:
                if s == sku:
                    return t
            return None

        ok = watcher.wait_for(lambda: all(first(i) is not None for i in ids), 5.0)
        if not ok:
            missed += 1
            continue
        with watcher.cond:
            seen = max(first(i) for i in ids)
        from_201.append((seen - t_201) * 1000)
        from_send.append((seen - t_send) * 1000)
        with watcher.cond:  # the stock_changed(0) marker must not satisfy the next wait
            for i in ids:
                watcher.stock[i].pop(sku, None)
    say(f"    out-of-stock {trials} trials: p50 {pct(from_201, 50):.1f} ms  "
        f"p99 {pct(from_201, 99):.1f} ms (from 201), missed {missed}")
    return {"oos_p50": pct(from_201, 50), "oos_p99": pct(from_201, 99),
            "oos_send_p99": pct(from_send, 99), "oos_missed": missed}


def sell_load(cluster: Cluster, targets: list[int], products: list[dict], *, seconds: float,
              max_requests: int, threads_per_till: int = 2, label: str = "",
              every: float = 2.0) -> dict:
    """Threads posting sales at the given tills until `seconds` or `max_requests`."""
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"sent": 0, "201": 0, "offline": 0, "other": 0}
    lat: list[float] = []

    def worker(till: int, wid: int) -> None:
        s = new_session(cluster[till])
        url = cluster[till].url + "/api/sales"
        k = wid
        while not stop.is_set():
            with lock:
                if counts["sent"] >= max_requests:
                    return
                counts["sent"] += 1
            prod = products[k % len(products)]
            k += 7
            t0 = time.monotonic()
            try:
                r = s.post(url, json=sale_body(prod["sku"], prod["price_cents"]), timeout=10)
                code = r.status_code
                offline = code == 201 and r.json().get("status") == "offline"
            except requests.RequestException:
                code, offline = 0, False
            dt = time.monotonic() - t0
            with lock:
                lat.append(dt)
                if code == 201:
                    counts["201"] += 1
                    counts["offline"] += int(offline)
                else:
                    counts["other"] += 1

    workers = [threading.Thread(target=worker, args=(t, j), daemon=True)
               for t in targets for j in range(threads_per_till)]
    t0 = time.monotonic()
    for w in workers:
        w.start()
    last = t0
    while time.monotonic() - t0 < seconds and any(w.is_alive() for w in workers):
        time.sleep(0.25)
        if time.monotonic() - last >= every:
            last = time.monotonic()
            with lock:
                say(f"    {label}{last - t0:5.1f} s: {counts['201']} sales "
                    f"({counts['201'] / (last - t0):.0f}/s)")
    stop.set()
    for w in workers:
        w.join(timeout=15)
    elapsed = time.monotonic() - t0
    return {**counts, "elapsed": elapsed, "lat": lat}


def bench_throughput(cluster: Cluster, products: list[dict], seconds: float) -> dict:
    master = cluster[1]
    g0 = journal_len(master)
    t0 = time.monotonic()
    res = sell_load(cluster, sorted(cluster.nodes), products, seconds=seconds,
                    max_requests=200_000, label="throughput ")
    g1 = journal_len(master)
    elapsed = time.monotonic() - t0
    rate = (g1 - g0) / elapsed
    lat = sorted(res["lat"])
    say(f"    throughput: {g1 - g0} journal entries in {elapsed:.1f} s = {rate:.0f}/s; "
        f"{res['201']} x 201 ({res['offline']} offline), {res['other']} other; "
        f"request p50 {pct(lat, 50) * 1000:.0f} ms p99 {pct(lat, 99) * 1000:.0f} ms")
    return {"throughput": rate, "tp_offline": res["offline"], "tp_other": res["other"],
            "tp_201": res["201"]}


def bench_sequencer(n: int, base: str, products_per_till: int) -> dict:
    """The sequencer alone: tills 2..n are cut off (links through proxies) and each sells
    `products_per_till` sales offline; after the heal they resubmit their outboxes in
    pages of 200 and the master sequences them. Measured on the master's journal: entries
    recorded after the heal, per second between the first and the last of them."""
    cluster = cluster_args(n, os.path.join(base, f"seq{n}"), proxied=True)
    try:
        cluster.start()
        cluster.wait_master(expected=1, timeout=30)
        products = [p for p in skus_of(cluster[1]) if p["active"]][:20]
        prepare_stock(cluster, [p["sku"] for p in products])
        cluster.wait_converged(timeout=30)
        sellers = list(range(2, n + 1))
        for i in sellers:
            cluster.isolate(i)
        time.sleep(3 * 0.5)  # heartbeats stop; every till sells on its own
        total = products_per_till * len(sellers)
        say(f"    tills {sellers} cut off; {total} offline sales ...")
        # One sale at till 1 too: its journal then extends none of theirs, so after the
        # heal it adopts no cut-off till's tail and every one of them resubmits.
        cluster[1].sell(products[0]["sku"], 1, price_cents=products[0]["price_cents"])
        res = sell_load(cluster, sellers, products, seconds=600, max_requests=total,
                        threads_per_till=2, label="offline ", every=10.0)
        heal_ms = int(time.time() * 1000)
        t_heal = time.monotonic()
        cluster.heal()
        cluster.wait_converged(timeout=300)
        drain = time.monotonic() - t_heal
        master = cluster.wait_master(timeout=30)
        count, first, last = cluster[master].query(
            "SELECT count(*), min(recorded_ms), max(recorded_ms) FROM journal "
            "WHERE type = 'sale.create' AND recorded_ms >= ?", (heal_ms,))[0]
        span = max((last or 0) - (first or 0), 1) / 1000
        rate = count / span
        say(f"    {res['201']} x 201 ({res['offline']} offline); after the heal master {master} "
            f"sequenced {count} resubmitted sales in {span:.2f} s = {rate:.0f}/s; "
            f"converged {drain:.1f} s after the heal")
        return {"seq_rate": rate, "seq_count": count, "seq_drain": drain}
    finally:
        cluster.stop()


def bench_catchup(cluster: Cluster, products: list[dict], events: int) -> dict:
    ids = sorted(cluster.nodes)
    lagger = cluster[ids[-1]]
    master = cluster[1]
    lagger.stop()
    say(f"    till {lagger.device_id} stopped; making {events} sales at the others ...")
    base = journal_len(master)
    res = sell_load(cluster, ids[:-1], products, seconds=min(1800.0, 60 + events / 5),
                    max_requests=events, threads_per_till=3, label="catch-up load ",
                    every=10.0)
    if res["201"] < events:
        say(f"    WARNING: only {res['201']} of {events} sales got a 201")
    others = [cluster[i] for i in ids[:-1]]
    cluster.wait_converged(timeout=60, nodes=others)
    target = journal_len(master)
    say(f"    master journal {base} -> {target} (+{target - base}); restarting till "
        f"{lagger.device_id}")
    # The same backlog twice: as the product does it (a till this far behind installs a
    # snapshot, see --snapshot-min), then from a copy of the stopped till with snapshots
    # off (pages of /api/sync/changes only).
    backup = lagger.data_dir + ".before-catch-up"
    shutil.copytree(lagger.data_dir, backup)
    out: dict = {"catchup_events": target - base}
    for key, extra in (("catchup", []), ("catchup_pages", ["--snapshot-min", str(10**9)])):
        if key == "catchup_pages":
            lagger.stop()
            shutil.rmtree(lagger.data_dir)
            shutil.copytree(backup, lagger.data_dir)
        lagger.args = [a for a in lagger.args if a != "--snapshot-min" and a != str(10**9)]
        lagger.args += extra
        up, spawn = time_catch_up(lagger, target)
        how = "snapshot allowed" if not extra else "pages only"
        say(f"    caught up {target - base} missed events ({how}): {spawn:.2f} s after spawn, "
            f"{up:.2f} s after its first /health answer (startup {spawn - up:.2f} s)")
        out[key], out[key + "_spawn"] = up, spawn
        cluster.wait_master(timeout=30)
    lagger.args = [a for a in lagger.args if a != "--snapshot-min" and a != str(10**9)]
    shutil.rmtree(backup, ignore_errors=True)
    return out


def time_catch_up(lagger: NodeProc, target: int) -> tuple[float, float]:
    """Start the stopped till; (seconds from its first /health answer, from spawn) until
    its journal holds `target` entries."""
    t_spawn = time.monotonic()
    lagger.start()
    t_up = None
    deadline = t_spawn + 120
    while time.monotonic() < deadline:
        if t_up is None:
            try:
                if lagger.http.get(lagger.url + "/health", timeout=0.5).status_code == 200:
                    t_up = time.monotonic()
            except requests.RequestException:
                pass
        if journal_len(lagger) >= target:
            done = time.monotonic()
            return done - (t_up or done), done - t_spawn
        time.sleep(0.01)
    raise TimeoutError(f"till {lagger.device_id} did not catch up; log: {lagger.tail_log()}")


def bench_checkout_failover(cluster: Cluster, products: list[dict]) -> dict:
    till = cluster[3]
    s = new_session(till)
    url = till.url + "/api/sales"
    lat: list[tuple[float, float, int, str]] = []  # (t, latency, code, status)
    killed_at = None
    agreed_at = None
    t0 = time.monotonic()
    for k in range(5000):
        now = time.monotonic()
        if killed_at is None and now - t0 >= 2.0:
            killed_at = time.monotonic()
            cluster[1].kill()
            say("    till 1 (master) killed")
        if killed_at is not None and agreed_at is None and k % 10 == 0:
            views = [cluster[i].health() for i in cluster.nodes if i != 1]
            if all(v and v["master_id"] not in (None, 1) and v["state"] == "online" for v in views) \
                    and len({v["master_id"] for v in views}) == 1:
                agreed_at = time.monotonic()
                say(f"    new master {views[0]['master_id']} after {agreed_at - killed_at:.2f} s")
        if agreed_at is not None and now - agreed_at >= 3.0:
            break
        if now - t0 >= 20:
            break
        prod = products[k % len(products)]
        ts = time.monotonic()
        try:
            r = s.post(url, json=sale_body(prod["sku"], prod["price_cents"]), timeout=10)
            code = r.status_code
            status = r.json().get("status", "") if code == 201 else r.text[:80]
        except requests.RequestException as exc:
            code, status = 0, type(exc).__name__
        lat.append((ts - t0, (time.monotonic() - ts) * 1000, code, status))
    values = [x[1] for x in lat]
    worst = max(lat, key=lambda x: x[1])
    bad = [x for x in lat if x[2] != 201]
    offline = sum(1 for x in lat if x[3] == "offline")
    kill_rel = (killed_at - t0) if killed_at else 0
    say(f"    checkout at till 3: {len(lat)} sales, {offline} offline, {len(bad)} not 201; "
        f"worst {worst[1]:.0f} ms at {worst[0] - kill_rel:+.2f} s from the kill")
    return {"checkout_p50": pct(values, 50), "checkout_p99": pct(values, 99),
            "checkout_max": max(values), "checkout_bad": len(bad), "checkout_n": len(lat),
            "checkout_offline": offline}


# ------------------------------------------------------------------- bootstrap
def has_bench_catalog_flag() -> bool:
    """`app run --bench-catalog N` exists (a hidden flag: not in --help, so parse it)."""
    code = ("from app.__main__ import build_parser; "
            "build_parser().parse_args(['run', '--bench-catalog', '1'])")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    return done.returncode == 0


# The catalog template's PIN hashes are keyed with the pepper of the secret it was built
# under, so the clusters that start from a copy of it run under that same secret.
TEMPLATE_SECRET = "lanpos-bench-catalog-template-secret"


def build_catalog(data_dir: str, products: int) -> None:
    """In-process: demo users + sample catalog + `products` synthetic products (device 1)."""
    code = f"""
import sys, time
sys.path.insert(0, {ROOT!r})
from app import create_app
from app.config import Config
from app.services.shop.seed import bulk_catalog, seed_demo
from app.services.shop.users import ensure_admin
app = create_app(Config(data_dir={data_dir!r}, device_id=1, cluster=False, testing=True,
                        cluster_secret={TEMPLATE_SECRET!r}, log_level="WARNING"))
node = app.extensions["lanpos_node"]
seed_demo(node)
ensure_admin(node, "123456")
t0 = time.monotonic()
bulk_catalog(node, {products})  # skus BULK-000000 ..., as `run --bench-catalog` makes them
print(f"    catalog {products:,} products in {{time.monotonic() - t0:.1f}} s", flush=True)
node.db.dispose()
"""
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=1800,
                   env=dict(os.environ, PYTHONPATH=ROOT))


def full_export_time(node: NodeProc, secret: str) -> tuple[float, int]:
    from app.utils.signing import sign_request

    path = "/api/sync/full-export"
    ts = int(time.time() * 1000)
    sig = sign_request(secret, "GET", path, b"", ts, 99)
    t0 = time.monotonic()
    r = requests.get(node.url + path, timeout=120, headers={
        "X-Lanpos-Device": "99", "X-Lanpos-Timestamp": str(ts), "X-Lanpos-Signature": sig})
    r.raise_for_status()
    body = r.json()
    return time.monotonic() - t0, len(body["entries"])


def bench_bootstrap(n: int, base: str, products: int, template: str | None, use_flag: bool,
                    limit: float) -> dict:
    """Till 1 (master) holds the catalog; an empty till n joins and pulls everything.

    Tills 2..n-1 are configured in the cluster but stay switched off here: each would
    need the same untimed 100,000-entry pull first, which is what is being measured
    (and on a 2-core box it would only slow the timed till down).
    """
    extra = {1: ["--bench-catalog", str(products)]} if use_flag else None
    cluster = cluster_args(n, os.path.join(base, f"boot{n}"), extra_args=extra,
                           secret=None if use_flag else TEMPLATE_SECRET)
    if not use_flag:
        shutil.copytree(template, cluster[1].data_dir)
    master, newbie = cluster[1], cluster[n]
    try:
        say(f"    starting till 1 with the {products:,}-product catalog "
            f"(tills 2..{n - 1} stay off) ...")
        t0 = time.monotonic()
        master.start()
        master.wait_up(timeout=120)
        deadline = t0 + 1800
        last = -1
        while time.monotonic() < deadline:
            m = journal_len(master)
            if m >= products and m == last:
                break
            last = m
            time.sleep(2.0)
        target = journal_len(master)
        say(f"    till 1 holds {target:,} journal entries ({time.monotonic() - t0:.0f} s); "
            f"timing GET /api/sync/full-export ...")
        fe_time, fe_entries = full_export_time(master, cluster.secret)
        say(f"    full-export: {fe_entries:,} entries in {fe_time:.2f} s")
        say(f"    starting empty till {n} ...")
        t_spawn = time.monotonic()
        newbie.start()
        t_up = None
        done = None
        got = 0
        last_print = t_spawn
        while time.monotonic() - t_spawn < limit:
            if t_up is None:
                try:
                    if newbie.http.get(newbie.url + "/health", timeout=0.5).status_code == 200:
                        t_up = time.monotonic()
                except requests.RequestException:
                    pass
            got = journal_len(newbie)
            if got >= target:
                done = time.monotonic()
                break
            if time.monotonic() - last_print >= 30:
                last_print = time.monotonic()
                say(f"      till {n}: {got:,} / {target:,} entries "
                    f"({last_print - t_spawn:.0f} s, {got / (last_print - t_spawn):.0f}/s)")
            time.sleep(0.05)
        t_up = t_up or t_spawn
        if done is None:
            now = time.monotonic()
            say(f"    NOT DONE: {got:,} / {target:,} entries after {now - t_spawn:.0f} s "
                f"(limit {limit:.0f} s); at {got / (now - t_up):.0f} entries/s the rest "
                f"needs ~{(target - got) / max(got / (now - t_up), 1e-9):.0f} s more")
            return {"bootstrap": now - t_spawn, "bootstrap_up": now - t_up,
                    "bootstrap_incomplete": True, "bootstrap_entries": target,
                    "full_export": fe_time}
        say(f"    bootstrapped {target:,} entries: {done - t_spawn:.2f} s after spawn, "
            f"{done - t_up:.2f} s after its first /health answer")
        return {"bootstrap": done - t_spawn, "bootstrap_up": done - t_up,
                "bootstrap_entries": target, "full_export": fe_time}
    finally:
        cluster.stop()


# ------------------------------------------------------------------------- main
def start_in_order(cluster: Cluster) -> None:
    """Till 1 (which journals the demo users and catalog) first, then the others.

    Spawned all at once, 16 tills on 2 cores take ~14 s to come up; till 1, the slowest
    (it seeds), then finds another till already master (reclaim "never": it stays a
    client) and its one attempt to journal the admin user through that master can time
    out: the catalog never comes (app/__main__.py `_setup_users`, seen at 16 tills).
    """
    first = cluster[1]
    first.start()
    first.wait_up(timeout=120)
    for i, node in cluster.nodes.items():
        if i != 1:
            node.start()
    for node in cluster.nodes.values():
        node.wait_up(timeout=120)
    cluster.wait_master(expected=1, timeout=60)
    cluster.wait_seeded(timeout=120)


PHASES = ("propagation", "polling", "oos", "throughput", "catchup", "failover", "sequencer")


def run_size(n: int, base: str, args: argparse.Namespace) -> dict:
    phases = set(PHASES) if args.phases == "all" else set(args.phases.split(","))
    unknown = phases - set(PHASES)
    if unknown:
        raise SystemExit(f"unknown phases {sorted(unknown)}; known: {', '.join(PHASES)}")
    say(f"\n=== {n} tills === ({load_note()})")
    res: dict = {}
    if phases - {"sequencer"}:
        cluster = cluster_args(n, os.path.join(base, f"c{n}"))
        watcher = Watcher(cluster)
        try:
            t0 = time.monotonic()
            start_in_order(cluster)
            say(f"  cluster up in {time.monotonic() - t0:.1f} s")
            products = [p for p in skus_of(cluster[1]) if p["active"]][:20]
            oos_product = products[-1]  # its stock goes to 1 before each last-unit sale
            products = products[:-1]
            prepare_stock(cluster, [p["sku"] for p in products])
            cluster.wait_converged(timeout=60)
            if phases & {"propagation", "oos"}:
                watcher.connect()
            if "propagation" in phases:
                say(f"  propagation: {args.sales} sales, round robin over the tills ...")
                res.update(bench_propagation(cluster, watcher, products, args.sales))
            if "oos" in phases:
                say(f"  out-of-stock: {args.oos} last-unit sales ...")
                res.update(bench_out_of_stock(cluster, watcher, oos_product["sku"],
                                              oos_product["price_cents"], args.oos))
            watcher.close()
            if "polling" in phases:
                say(f"  propagation by polling: {args.sales} sales, every other till polled "
                    f"every {args.poll_interval * 1000:.0f} ms ...")
                res.update(bench_polling(cluster, products, args.sales, args.poll_interval))
            if "throughput" in phases:
                say(f"  checkout throughput: 2 threads per till for {args.throughput_seconds:.0f} s ...")
                res.update(bench_throughput(cluster, products, args.throughput_seconds))
                cluster.wait_converged(timeout=60)
            if "catchup" in phases:
                say(f"  catch-up after {args.catchup} missed events ...")
                res.update(bench_catchup(cluster, products, args.catchup))
                cluster.wait_converged(timeout=120)
            if "failover" in phases:
                say("  checkout at till 3 while master till 1 is killed ...")
                cluster.wait_master(expected=1, timeout=30)
                res.update(bench_checkout_failover(cluster, products))
        finally:
            watcher.close()
            cluster.stop()
    if "sequencer" in phases:
        say(f"  sequencer: resubmitted outboxes after a partition ({load_note()}) ...")
        res.update(bench_sequencer(n, base, args.offline_sales))
    return res


def fmt(v: float, unit: str) -> str:
    if unit == "ms":
        return f"{v:.1f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    return f"{v:.0f}/s"


def check(key: str, v: float) -> str:
    if key not in TARGETS:
        return ""
    op, t = TARGETS[key]
    return "PASS" if (v <= t if op == "<=" else v >= t) else "FAIL"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="3,5")
    ap.add_argument("--sales", type=int, default=200)
    ap.add_argument("--oos", type=int, default=30)
    ap.add_argument("--throughput-seconds", type=float, default=10.0)
    ap.add_argument("--offline-sales", type=int, default=1000,
                    help="offline sales per cut-off till for the sequencer measurement")
    ap.add_argument("--catchup", type=int, default=10_000)
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--phases", default="all",
                    help=f"comma list of {','.join(PHASES)} (default all)")
    ap.add_argument("--poll-interval", type=float, default=0.05,
                    help="seconds between two polls of one till (--phases polling)")
    ap.add_argument("--skip-bootstrap", action="store_true")
    ap.add_argument("--only-bootstrap", action="store_true")
    ap.add_argument("--bootstrap-limit", type=float, default=1200.0,
                    help="seconds to wait for the empty till (default 1200); if it is not "
                         "done by then, the time so far is shown as a lower bound (>)")
    ap.add_argument("--keep", default=None)
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    base = args.keep or tempfile.mkdtemp(prefix="lanpos-bench-sync-")
    os.makedirs(base, exist_ok=True)
    results: dict[int, dict] = {}
    try:
        for n in sizes:
            try:
                results[n] = {} if args.only_bootstrap else run_size(n, base, args)
            except (TimeoutError, RuntimeError, requests.RequestException) as exc:
                say(f"  {n} tills: FAILED: {str(exc)[:1500]}")
                results[n] = {"error": str(exc)[:300]}
        if not args.skip_bootstrap:
            use_flag = has_bench_catalog_flag()
            template = None
            if use_flag:
                say(f"\n=== bootstrap: catalog via `app run --bench-catalog {args.products}` ===")
            else:
                template = os.path.join(base, "catalog-template")
                say(f"\n=== bootstrap: `app run` has no --bench-catalog flag; building "
                    f"{args.products:,} products in-process with seed.bulk_catalog ===")
                if not os.path.exists(os.path.join(template, "lanpos.db")):
                    build_catalog(template, args.products)
            for n in sizes:
                say(f"  {n} tills: ({load_note()})")
                results.setdefault(n, {}).update(bench_bootstrap(
                    n, base, args.products, template, use_flag, args.bootstrap_limit))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    rows = [
        ("propagation p50 (from 201)", "prop_p50", "ms", "<= 20 ms"),
        ("propagation p99 (from 201)", "prop_p99", "ms", "<= 100 ms"),
        ("propagation p99 (from request)", "prop_send_p99", "ms", ""),
        ("propagation by polling p50 (from 201)", "poll_p50", "ms", ""),
        ("propagation by polling p99 (from 201)", "poll_p99", "ms", "<= 100 ms"),
        ("out-of-stock to all p99 (from 201)", "oos_p99", "ms", "<= 150 ms"),
        ("out-of-stock to all p99 (from request)", "oos_send_p99", "ms", ""),
        ("sequencer throughput (resubmitted outboxes)", "seq_rate", "/s", ">= 500/s"),
        ("checkouts/s, 2 cashiers per till", "throughput", "/s", ""),
        ("catch-up 10,000 events (after node up)", "catchup", "s", "<= 2 s"),
        ("catch-up 10,000 events (from spawn)", "catchup_spawn", "s", ""),
        ("catch-up, pages only (after node up)", "catchup_pages", "s", ""),
        ("catch-up, pages only (from spawn)", "catchup_pages_spawn", "s", ""),
        ("bootstrap 100k products (from spawn)", "bootstrap", "s", "<= 10 s"),
        ("bootstrap 100k products (after node up)", "bootstrap_up", "s", ""),
        ("GET /api/sync/full-export (100k)", "full_export", "s", ""),
        ("checkout during failover p50", "checkout_p50", "ms", ""),
        ("checkout during failover p99", "checkout_p99", "ms", ""),
        ("checkout during failover max", "checkout_max", "ms", "<= 1000 ms"),
    ]
    say("")
    say(f"finished; {load_note()}")
    head = f"{'metric':42s}" + "".join(f"{f'{n} tills':>18s}" for n in sizes) + f"  {'target':>11s}"
    say(head)
    say("-" * len(head))
    all_ok = True
    for label, key, unit, target in rows:
        cells = ""
        for n in sizes:
            v = results.get(n, {}).get(key)
            if v is None:
                cells += f"{'-':>18s}"
                continue
            verdict = check(key, v)
            all_ok &= verdict != "FAIL"
            text = fmt(v, unit)
            if key.startswith("bootstrap") and results[n].get("bootstrap_incomplete"):
                text = "> " + text
            cells += f"{text + (' ' + verdict if verdict else ''):>18s}"
        say(f"{label:42s}{cells}  {target:>11s}")
    for n in sizes:
        r = results.get(n, {})
        if "error" in r:
            all_ok = False
            say(f"{n} tills: FAILED: {r['error']}")
            continue
        say(f"{n} tills: propagation missed {r.get('prop_missed')}, polling missed "
            f"{r.get('poll_missed')}, sale statuses "
            f"{r.get('prop_status')}; out-of-stock missed {r.get('oos_missed')}; throughput "
            f"{r.get('tp_201')} x 201 ({r.get('tp_offline')} offline, {r.get('tp_other')} other); "
            f"checkout {r.get('checkout_n')} sales ({r.get('checkout_offline')} offline, "
            f"{r.get('checkout_bad')} not 201)")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
