#!/usr/bin/env python3
"""Checkout benchmark (issue 2): a REAL node process with a 100,000-product catalog.

    .venv/bin/python scripts/bench_checkout.py [--products 100000] [--sales 2000]
        [--clients 4] [--time-cap 60] [--search-queries 500] [--keep]

1. Starts `python -m app run --device-id 1 --port <free> --host 127.0.0.1 --data-dir <tmp>
   --no-discovery --seed-demo --bench-catalog N`. `--bench-catalog N` is a hidden flag
   (env POS_BENCH_CATALOG) that makes the node itself call
   `app.services.shop.seed.bulk_catalog(node, N)` once it is master: N products journaled
   as ordinary `product.create` events, written in bulk.
2. Over HTTP with `requests` (keep-alive sessions, Bearer token of the demo cashier):
   * POST /api/sales with 1 client, then with --clients concurrent clients; each run is
     bounded by --sales sales and --time-cap seconds. Every sale has 1-4 random lines of
     the bulk catalog, a cash payment and its own client_ref, like a till sends it.
   * GET /api/products?search=... on the 100k catalog (names, SKU, barcode, misses).
3. Samples the node's RSS with psutil every 20 ms and reports the peak.

Prints progress lines while it runs and a table at the end; exits non-zero when any
request failed, the node died, or (with --strict) a target was missed.
Targets on the 2-core reference machine: checkout p99 <= 20 ms with one client,
search p99 <= 30 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
CHECKOUT_P99_TARGET_MS = 20.0
SEARCH_P99_TARGET_MS = 30.0


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))  # ceil(q/100 * n)
    return ordered[min(rank, len(ordered)) - 1]


class RssSampler(threading.Thread):
    """Peak resident memory of the node process, sampled every `interval` seconds."""

    def __init__(self, pid: int, interval: float = 0.02):
        super().__init__(name="rss", daemon=True)
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self.window_peak = 0
        self.current = 0
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                rss = self.proc.memory_info().rss
            except psutil.Error:
                return
            self.current = rss
            self.peak = max(self.peak, rss)
            self.window_peak = max(self.window_peak, rss)
            self._stop.wait(self.interval)

    def reset_window(self) -> None:
        self.window_peak = self.current

    def stop(self) -> None:
        self._stop.set()


class Node:
    def __init__(self, data_dir: Path, products: int):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "node.log"
        self.log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115
        cmd = [sys.executable, "-m", "app", "run", "--device-id", "1", "--port", str(self.port),
               "--host", "127.0.0.1", "--data-dir", str(data_dir / "till1"), "--no-discovery",
               "--seed-demo", "--bench-catalog", str(products), "--log-level", "WARNING"]
        say("starting node: " + " ".join(cmd[1:]))
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8").splitlines()[-lines:])
        except OSError:
            return ""


class BenchError(Exception):
    pass


def wait_ready(node: Node, products: int, timeout: float) -> str:
    """Wait for master role, the demo cashier and the whole bulk catalog; return a token."""
    deadline = time.monotonic() + timeout
    http = requests.Session()
    token = None
    last_report = 0.0
    last_sku = f"BULK-{products - 1:06d}"
    while time.monotonic() < deadline:
        if not node.alive():
            raise BenchError(f"the node exited with {node.proc.returncode}:\n{node.tail()}")
        try:
            if token is None:
                # One login at a time, with a long timeout: while a catalog chunk holds the
                # write lock, a login waits; a storm of retried logins would slow the load.
                resp = http.post(f"{node.base}/api/auth/login",
                                 json={"username": "cashier", "pin": "0000"}, timeout=300)
                if resp.status_code == 200:
                    token = resp.json()["token"]
                    say("node is up: master, demo users seeded; loading the catalog ...")
            if token is not None:
                headers = {"Authorization": f"Bearer {token}"}
                if products == 0 or http.get(f"{node.base}/api/products/{last_sku}",
                                             headers=headers, timeout=10).status_code == 200:
                    total = http.get(f"{node.base}/api/products?limit=1", headers=headers,
                                     timeout=30).json()["total"]
                    say(f"catalog ready: {total:,} products")
                    return token
                if time.monotonic() - last_report > 5:
                    total = http.get(f"{node.base}/api/products?limit=1", headers=headers,
                                     timeout=30).json()["total"]
                    say(f"  ... {total:,} products loaded")
                    last_report = time.monotonic()
        except requests.RequestException:
            pass
        time.sleep(1.0)
    raise BenchError(f"the node was not ready within {timeout:.0f} s:\n{node.tail()}")


def random_cart(rng: random.Random, products: int) -> list[dict]:
    skus = rng.sample(range(products), rng.randint(1, 4))
    return [{"sku": f"BULK-{i:06d}", "quantity": rng.randint(1, 3)} for i in skus]


def checkout_run(node: Node, token: str, clients: int, max_sales: int, time_cap: float,
                 products: int, label: str) -> dict:
    """POST /api/sales from `clients` threads until max_sales sales or time_cap seconds."""
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    started = [0]
    deadline = time.monotonic() + time_cap

    def worker(n: int) -> None:
        rng = random.Random(1000 + n)
        http = requests.Session()
        headers = {"Authorization": f"Bearer {token}"}
        while time.monotonic() < deadline:
            with lock:
                if started[0] >= max_sales:
                    return
                started[0] += 1
            body = {"lines": random_cart(rng, products),
                    "payments": [{"method": "cash", "amount_cents": 10_000_000}],
                    "client_ref": uuid.uuid4().hex}
            t0 = time.perf_counter()
            try:
                resp = http.post(f"{node.base}/api/sales", json=body, headers=headers, timeout=30)
                ok = resp.status_code == 201
                problem = "" if ok else f"HTTP {resp.status_code}: {resp.text[:200]}"
            except requests.RequestException as exc:
                ok, problem = False, f"{type(exc).__name__}: {exc}"
            elapsed = (time.perf_counter() - t0) * 1000
            with lock:
                if ok:
                    latencies.append(elapsed)
                else:
                    errors.append(problem)

    threads = [threading.Thread(target=worker, args=(n,), name=f"client{n}") for n in range(clients)]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(timeout=5)
        if any(t.is_alive() for t in threads):
            with lock:
                done = len(latencies)
            say(f"  {label}: {done:,} sales so far")
    wall = time.perf_counter() - t_start
    if not latencies:
        raise BenchError(f"{label}: no sale succeeded; first error: {errors[:1]}")
    result = {"label": label, "sales": len(latencies), "errors": len(errors),
              "first_error": errors[0] if errors else "", "wall_s": wall,
              "per_s": len(latencies) / wall, "p50": percentile(latencies, 50),
              "p99": percentile(latencies, 99), "max": max(latencies)}
    say(f"  {label}: {result['sales']:,} sales in {wall:.1f} s = {result['per_s']:.0f}/s, "
        f"p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, errors {len(errors)}")
    return result


def search_run(node: Node, token: str, queries: int, products: int) -> dict:
    http = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    mid = products // 2
    from app.utils.barcode import make_ean13

    terms = [
        "item 0421",                      # name substring, ~10 hits
        "dairy",                          # one category in the names: ~12,500 hits, page 1
        f"item {products - 1:06d}",       # exactly one
        f"BULK-{mid:06d}",                # SKU
        make_ean13(f"29{mid + 7:010d}"),  # barcode
        "milk",                           # the demo catalog
        "no such product",                # a miss
    ]
    latencies: dict[str, list[float]] = {t: [] for t in terms}
    errors: list[str] = []
    for i in range(queries):
        term = terms[i % len(terms)]
        t0 = time.perf_counter()
        resp = http.get(f"{node.base}/api/products", params={"search": term, "limit": 50},
                        headers=headers, timeout=30)
        elapsed = (time.perf_counter() - t0) * 1000
        if resp.status_code != 200:
            errors.append(f"HTTP {resp.status_code}: {resp.text[:200]}")
            continue
        latencies[term].append(elapsed)
        if (i + 1) % 100 == 0:
            say(f"  search: {i + 1} queries")
    every = [v for values in latencies.values() for v in values]
    if not every:
        raise BenchError(f"search: no query succeeded; first error: {errors[:1]}")
    result = {"queries": len(every), "errors": len(errors),
              "first_error": errors[0] if errors else "",
              "p50": percentile(every, 50), "p99": percentile(every, 99), "max": max(every),
              "by_term": {t: (percentile(v, 50), percentile(v, 99)) for t, v in latencies.items() if v}}
    say(f"  search: {len(every)} queries, p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, "
        f"errors {len(errors)}")
    return result


def floor_run(node: Node, requests_count: int = 300) -> dict:
    """GET /health: no database, no auth; what the HTTP stack and the machine cost alone."""
    http = requests.Session()
    latencies = []
    for _ in range(requests_count):
        t0 = time.perf_counter()
        resp = http.get(f"{node.base}/health", timeout=30)
        latencies.append((time.perf_counter() - t0) * 1000)
        if resp.status_code != 200:
            raise BenchError(f"/health answered {resp.status_code}")
    result = {"count": len(latencies), "p50": percentile(latencies, 50),
              "p99": percentile(latencies, 99), "max": max(latencies)}
    say(f"  GET /health: p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--sales", type=int, default=2000, help="sales per run (default 2000)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients of run 2")
    parser.add_argument("--time-cap", type=float, default=60.0, help="seconds per run (default 60)")
    parser.add_argument("--search-queries", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50, help="sales before measuring")
    parser.add_argument("--load-timeout", type=float, default=900.0)
    parser.add_argument("--strict", action="store_true", help="exit 2 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the node's data dir")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    data_dir = Path(tempfile.mkdtemp(prefix="lanpos-bench-"))
    node = Node(data_dir, args.products)
    sampler = RssSampler(node.proc.pid)
    sampler.start()
    failures: list[str] = []
    try:
        t0 = time.monotonic()
        token = wait_ready(node, args.products, args.load_timeout)
        load_s = time.monotonic() - t0
        load_peak = sampler.peak
        say(f"warm-up: {args.warmup} sales, 20 searches")
        checkout_run(node, token, 1, args.warmup, 60, args.products, "warm-up")
        search_run(node, token, 20, args.products)

        sampler.reset_window()
        load_before = os.getloadavg()[0]
        say("run 0: GET /health x 300 (the floor: HTTP stack and machine, no database)")
        floor = floor_run(node)
        say(f"run 1: one client, up to {args.sales:,} sales / {args.time_cap:.0f} s")
        single = checkout_run(node, token, 1, args.sales, args.time_cap, args.products, "1 client")
        say(f"run 2: {args.clients} concurrent clients, up to {args.sales:,} sales / "
            f"{args.time_cap:.0f} s")
        multi = checkout_run(node, token, args.clients, args.sales, args.time_cap, args.products,
                             f"{args.clients} clients")
        say(f"run 3: product search, {args.search_queries} queries on {args.products:,} products")
        search = search_run(node, token, args.search_queries, args.products)
        run_peak = sampler.window_peak
        load_after = os.getloadavg()[0]

        # Sanity: every acknowledged sale is there.
        http = requests.Session()
        headers = {"Authorization": f"Bearer {token}"}
        total_sales = http.get(f"{node.base}/api/sales?limit=1", headers=headers, timeout=30).json()["total"]
        expected = args.warmup + single["sales"] + multi["sales"]
        if total_sales != expected:
            failures.append(f"the node lists {total_sales} sales, {expected} were acknowledged")
        for run in (single, multi, search):
            if run["errors"]:
                failures.append(f"{run.get('label', 'search')}: {run['errors']} errors, first: "
                                f"{run['first_error']}")
        if not node.alive():
            failures.append(f"the node died:\n{node.tail()}")
    except BenchError as exc:
        say(f"FAILED: {exc}")
        return 1
    finally:
        sampler.stop()
        node.stop()
        if args.keep:
            say(f"data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)

    mb = 1024 * 1024
    ok1 = single["p99"] <= CHECKOUT_P99_TARGET_MS
    oks = search["p99"] <= SEARCH_P99_TARGET_MS
    cpu = os.cpu_count()
    print()
    print(f"lanpos checkout benchmark — {args.products:,} products, real node on 127.0.0.1, "
          f"{cpu} CPUs, Python {sys.version.split()[0]}")
    print(f"catalog load (--bench-catalog, in the node): {load_s:.1f} s; machine load average "
          f"(1 min) {load_before:.1f} before the runs, {load_after:.1f} after (other work on it "
          f"competes for the CPUs)")
    print()
    print(f"{'measurement':<34}{'count':>8}{'per s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}  target")
    print("-" * 86)
    print(f"{'GET /health (floor, no database)':<34}{floor['count']:>8}{'':>9}{floor['p50']:>9.1f}"
          f"{floor['p99']:>9.1f}{floor['max']:>9.1f}")
    for run, target in ((single, f"p99 <= {CHECKOUT_P99_TARGET_MS:.0f} ms: "
                                 f"{'PASS' if ok1 else 'MISS'}"), (multi, "")):
        print(f"{'POST /api/sales, ' + run['label']:<34}{run['sales']:>8}{run['per_s']:>9.0f}"
              f"{run['p50']:>9.1f}{run['p99']:>9.1f}{run['max']:>9.1f}  {target}")
    print(f"{'GET /api/products?search=':<34}{search['queries']:>8}{'':>9}{search['p50']:>9.1f}"
          f"{search['p99']:>9.1f}{search['max']:>9.1f}  p99 <= {SEARCH_P99_TARGET_MS:.0f} ms: "
          f"{'PASS' if oks else 'MISS'}")
    for term, (p50, p99) in search["by_term"].items():
        print(f"{'    search ' + repr(term):<34}{'':>8}{'':>9}{p50:>9.1f}{p99:>9.1f}")
    print("-" * 86)
    print(f"node peak RSS: {sampler.peak / mb:.0f} MB overall, {load_peak / mb:.0f} MB by the end of "
          f"the catalog load, {run_peak / mb:.0f} MB during the measured runs")
    print(f"errors: {single['errors'] + multi['errors'] + search['errors']}")
    if failures:
        print()
        for failure in failures:
            print("FAILED: " + failure)
        return 1
    if args.strict and not (ok1 and oks):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
