"""The workload: cashiers selling at every till, a manager receiving stock, editing prices
and refunding, every request and its outcome written to a JSONL history.

Outcomes: ok (201, or 200 for a retried sale the till already had), fail (409: out of
stock, stale edit, nothing left to refund), error (an answer that is neither, or the
request was refused before it was sent), unknown (timeout or a connection that broke
after the request left: the sale may or may not exist - the checker decides).
A sale whose outcome is unknown is retried once with the same client_ref, as a cashier
pressing "pay" again would. Every loop is bounded in count and in time.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.chaos.checker import exception_outcome, sale_outcome
from tests.chaos.cluster import PINS, ChaosCluster, session


@dataclass
class WorkloadConfig:
    clients_per_till: int = 2
    max_ops_per_client: int = 5000
    think_s: tuple[float, float] = (0.02, 0.08)
    manager_think_s: tuple[float, float] = (0.25, 0.7)
    scarce_skus: int = 3
    scarce_stock: tuple[int, int] = (3, 5)
    plenty_skus: int = 5
    plenty_stock: int = 3000
    scarce_share: float = 0.35
    sale_timeout: float = 3.0
    seed: int = 0


class History:
    """Thread-safe, append-only record of every operation (also kept in memory)."""

    def __init__(self, path: str, t0: float):
        self.path = path
        self.t0 = t0
        self.ops: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 4)

    def add(self, op: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            op["id"] = len(self.ops) + 1
            self.ops.append(op)
            self._fh.write(json.dumps(op, separators=(",", ":")) + "\n")
            self._fh.flush()
        return op

    def close(self) -> None:
        with self._lock:
            self._fh.close()


@dataclass
class Workload:
    cluster: ChaosCluster
    history: History
    config: WorkloadConfig
    deadline: float  # monotonic
    scarce: list[str] = field(default_factory=list)
    plenty: list[str] = field(default_factory=list)
    acked_sales: list[tuple[int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    # ----------------------------------------------------------- setup
    def prepare(self) -> dict[str, int]:
        """Pick the SKUs and set their stock through the master (before any fault)."""
        rng = random.Random(self.config.seed * 7919 + 1)
        master = self.cluster.current_master() or 1
        till = self.cluster[master]
        skus = sorted(s for (s,) in till.query("SELECT sku FROM products WHERE active=1"))
        picked = rng.sample(skus, self.config.scarce_skus + self.config.plenty_skus)
        self.scarce = picked[: self.config.scarce_skus]
        self.plenty = picked[self.config.scarce_skus:]
        targets = {s: rng.randint(*self.config.scarce_stock) for s in self.scarce}
        targets.update({s: self.config.plenty_stock for s in self.plenty})
        for sku, target in targets.items():
            current = till.api("GET", f"/api/products/{sku}").json()["product"]["stock"]
            if current != target:
                r = till.api("POST", "/api/stock/adjust", json={
                    "sku": sku, "quantity": target - current, "reason": "chaos setup"})
                if r.status_code != 201:
                    raise RuntimeError(f"setup adjust {sku}: {r.status_code} {r.text[:200]}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.cluster.converged()[0]:
            time.sleep(0.2)
        return targets

    # ----------------------------------------------------------- run
    def start(self) -> None:
        for i in self.cluster.tills:
            for c in range(self.config.clients_per_till):
                t = threading.Thread(target=self._cashier, args=(i, c), daemon=True,
                                     name=f"cashier-{i}-{c}")
                self.threads.append(t)
        self.threads.append(threading.Thread(target=self._manager, daemon=True, name="manager"))
        for t in self.threads:
            t.start()

    def join(self, timeout: float = 30) -> None:
        self.stop.set()
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, end - time.monotonic()))

    def _running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def _token(self, http: requests.Session, i: int, user: str, tokens: dict) -> str | None:
        if (i, user) in tokens:
            return tokens[(i, user)]
        till = self.cluster[i]
        try:
            r = http.post(till.url + "/api/auth/login", json={"username": user, "pin": PINS[user]},
                          timeout=3)
        except requests.RequestException:
            return None
        if r.status_code != 200:
            return None
        tokens[(i, user)] = r.json()["token"]
        return tokens[(i, user)]

    def _request(self, http: requests.Session, i: int, user: str, tokens: dict, method: str,
                 path: str, timeout: float, **kwargs: Any) -> tuple[requests.Response | None, str, str]:
        """(response, outcome-if-no-response, detail)."""
        token = self._token(http, i, user, tokens)
        if token is None:
            return None, "error", "not sent: cannot log in"
        try:
            r = http.request(method, self.cluster[i].url + path, timeout=timeout,
                             headers={"Authorization": "Bearer " + token}, **kwargs)
        except requests.RequestException as exc:
            outcome, detail = exception_outcome(exc)
            return None, outcome, detail
        if r.status_code == 401:
            tokens.pop((i, user), None)
        return r, "", ""

    def _cashier(self, i: int, c: int) -> None:
        cfg = self.config
        rng = random.Random(cfg.seed * 1_000_003 + i * 101 + c)
        http = session()
        tokens: dict = {}
        for _ in range(cfg.max_ops_per_client):
            if not self._running():
                return
            scarce = rng.random() < cfg.scarce_share
            sku = rng.choice(self.scarce if scarce else self.plenty)
            qty = 1 if scarce or rng.random() < 0.8 else 2
            ref = f"{rng.getrandbits(128):032x}"
            first = self._sell(http, tokens, i, c, sku, qty, ref, None)
            if first["outcome"] == "unknown" and first["http"] is None and self._running():
                time.sleep(0.3)
                self._sell(http, tokens, i, c, sku, qty, ref, first["id"])
            elif first["outcome"] == "error":
                time.sleep(0.2)
            time.sleep(rng.uniform(*cfg.think_s))

    def _sell(self, http: requests.Session, tokens: dict, i: int, c: int, sku: str, qty: int,
              ref: str, retry_of: int | None) -> dict[str, Any]:
        t_start = self.history.now()
        body = {"lines": [{"sku": sku, "quantity": qty}],
                "payments": [{"method": "cash", "amount_cents": 100_000}], "client_ref": ref}
        r, outcome, detail = self._request(http, i, "cashier", tokens, "POST", "/api/sales",
                                           self.config.sale_timeout, json=body)
        op = {"kind": "sale", "till": i, "client": f"c{i}.{c}", "t_start": t_start,
              "t_end": self.history.now(), "sku": sku, "qty": qty, "client_ref": ref,
              "retry_of": retry_of, "http": None, "outcome": outcome, "detail": detail}
        if r is not None:
            op["http"] = r.status_code
            data = _json(r)
            op.update(sale_outcome(r.status_code, data))  # the checker's reading of it
            if op["outcome"] == "ok":
                self.acked_sales.append((i, data["sale_id"]))
            elif op["outcome"] != "fail":  # 5xx: the till failed midway, the sale may exist
                op["detail"] = _err(r, data)
        return self.history.add(op)

    def _manager(self) -> None:
        cfg = self.config
        rng = random.Random(cfg.seed * 2_000_003 + 17)
        http = session()
        tokens: dict = {}
        tills = sorted(self.cluster.tills)
        for _ in range(cfg.max_ops_per_client):
            if not self._running():
                return
            i = rng.choice(tills)
            roll = rng.random()
            if roll < 0.45:
                self._receive(http, tokens, i, rng)
            elif roll < 0.8:
                self._price(http, tokens, i, rng)
            else:
                self._refund(http, tokens, i, rng)
            time.sleep(rng.uniform(*cfg.manager_think_s))

    def _receive(self, http: requests.Session, tokens: dict, i: int, rng: random.Random) -> None:
        if rng.random() < 0.4:
            sku, qty = rng.choice(self.scarce), rng.randint(1, 3)
        else:
            sku, qty = rng.choice(self.plenty), rng.randint(10, 60)
        t_start = self.history.now()
        r, outcome, detail = self._request(http, i, "manager", tokens, "POST", "/api/stock/receive",
                                           5.0, json={"sku": sku, "quantity": qty,
                                                      "reason": "chaos delivery"})
        op = {"kind": "receive", "till": i, "client": "manager", "t_start": t_start,
              "t_end": self.history.now(), "sku": sku, "qty": qty, "http": None,
              "outcome": outcome, "detail": detail}
        if r is not None:
            op["http"] = r.status_code
            data = _json(r)
            if r.status_code == 201:
                op.update(outcome="ok", event_id=data.get("event_id"), mode=data.get("status"))
            else:
                op.update(outcome="error", detail=_err(r, data))
        self.history.add(op)

    def _price(self, http: requests.Session, tokens: dict, i: int, rng: random.Random) -> None:
        sku = rng.choice(self.scarce + self.plenty)
        t_start = self.history.now()
        r, outcome, detail = self._request(http, i, "manager", tokens, "GET", f"/api/products/{sku}", 3.0)
        op = {"kind": "price", "till": i, "client": "manager", "t_start": t_start, "sku": sku,
              "http": None, "outcome": outcome, "detail": detail}
        if r is not None and r.status_code == 200:
            product = _json(r).get("product") or {}
            price = max(50, int(product.get("price_cents", 100)) + rng.choice([-15, -5, 5, 15]))
            op["price_cents"] = price
            op["base_version"] = product.get("version")
            r, outcome, detail = self._request(
                http, i, "manager", tokens, "PATCH", f"/api/products/{sku}", 5.0,
                json={"price_cents": price, "base_version": product.get("version")})
            op.update(outcome=outcome, detail=detail)
        if r is not None:
            op["http"] = r.status_code
            data = _json(r)
            if r.status_code == 200 and op.get("price_cents"):
                op.update(outcome="ok", version=(data.get("product") or {}).get("version"))
            elif r.status_code == 409:
                op.update(outcome="fail", detail=(data.get("error") or {}).get("code", ""))
            else:
                op.update(outcome="error", detail=_err(r, data))
        op["t_end"] = self.history.now()
        self.history.add(op)

    def _refund(self, http: requests.Session, tokens: dict, i: int, rng: random.Random) -> None:
        mine = [sid for till, sid in self.acked_sales[-400:] if till == i]
        if not mine:
            return
        sale_id = rng.choice(mine)
        t_start = self.history.now()
        r, outcome, detail = self._request(http, i, "manager", tokens, "POST",
                                           f"/api/sales/{sale_id}/refund", 5.0,
                                           json={"reason": "chaos refund"})
        op = {"kind": "refund", "till": i, "client": "manager", "t_start": t_start,
              "t_end": self.history.now(), "sale_id": sale_id, "http": None, "outcome": outcome,
              "detail": detail}
        if r is not None:
            op["http"] = r.status_code
            data = _json(r)
            if r.status_code == 201:
                refund = (data.get("sale") or {}).get("refund") or {}
                op.update(outcome="ok", refund_id=refund.get("refund_id"), mode=refund.get("status"))
            elif r.status_code in (404, 409):
                op.update(outcome="fail", detail=(data.get("error") or {}).get("code", ""))
            else:
                op.update(outcome="error", detail=_err(r, data))
        self.history.add(op)


def _json(r: requests.Response) -> dict[str, Any]:
    try:
        data = r.json()
        return data if isinstance(data, dict) else {}
    except ValueError:
        return {}


def _err(r: requests.Response, data: dict[str, Any]) -> str:
    code = (data.get("error") or {}).get("code") if data else None
    return f"HTTP {r.status_code} {code or r.text[:80]}"
