"""Browser tests: Playwright driving Debian's Chromium against real lanpos nodes.

* Chromium comes from apt (`/usr/bin/chromium`); `playwright install` is never used.
* With CI=true a missing Chromium FAILS the tests; elsewhere they are skipped.
* Nodes are real `python -m app run ...` processes on 127.0.0.1, started with
  the cluster harness (tests/cluster/harness.py).
* Screenshots go to artifacts/screenshots/ (see README).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests

from tests.cluster.harness import DEMO_PINS, Cluster, NodeProc

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = REPO / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("LANPOS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS = {"1280x800": {"width": 1280, "height": 800}, "1024x768": {"width": 1024, "height": 768}}


def _chromium_or_fail() -> str:
    if shutil.which(CHROMIUM) or os.path.exists(CHROMIUM):
        return CHROMIUM
    msg = (f"Chromium not found at {CHROMIUM}: apt-get install -y --no-install-recommends "
           "chromium chromium-driver")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """pytest-playwright hook: Debian's Chromium, headless, no downloads."""
    return {
        **browser_type_launch_args,
        "executable_path": _chromium_or_fail(),
        "headless": True,
        "args": CHROMIUM_ARGS,
    }


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR


# ----------------------------------------------------------------------------- API client
class Api:
    """Tiny JSON client for arranging and checking state around the browser."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.token: str | None = None

    def login(self, username: str, pin: str | None = None) -> "Api":
        r = requests.post(f"{self.base}/api/auth/login",
                          json={"username": username, "pin": pin or DEMO_PINS[username]}, timeout=10)
        r.raise_for_status()
        self.token = r.json()["token"]
        return self

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(f"{self.base}{path}", params=params, headers=self._headers(), timeout=10)

    def post(self, path: str, body: dict | None = None) -> requests.Response:
        return requests.post(f"{self.base}{path}", json=body or {}, headers=self._headers(), timeout=10)

    def product(self, sku: str) -> dict:
        r = self.get(f"/api/products/{sku}")
        r.raise_for_status()
        return r.json()["product"]

    def sales_total(self) -> int:
        r = self.get("/api/sales", limit=1)
        r.raise_for_status()
        return r.json()["total"]


# ----------------------------------------------------------------------------- nodes
def wait_demo_ready(base: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Until the demo users can log in and the sample catalog is loaded."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"node exited with {proc.returncode} before it was ready")
        try:
            # Log in only once the user exists: failed logins count towards the lockout.
            users = requests.get(f"{base}/api/users", timeout=5).json().get("users", [])
            if not any(u["username"] == "cashier" for u in users):
                last = "demo users not there yet"
                time.sleep(0.25)
                continue
            api = Api(base).login("cashier")
            total = api.get("/api/products", limit=1).json().get("total", 0)
            if total >= 50:
                return
            last = f"{total} products"
        except (requests.RequestException, KeyError, ValueError) as exc:
            last = repr(exc)
        time.sleep(0.25)
    raise RuntimeError(f"node at {base} not ready after {timeout}s: {last}")


SHOP_NAME = "Corner Shop"


def start_cluster(n: int, base_dir: Path, **kwargs: Any) -> Cluster:
    """n real tills on 127.0.0.1 (the cluster harness); till 1 loads the demo shop.

    Readiness is checked here rather than with Cluster.wait_seeded: logging in before
    the demo users exist counts as wrong PINs and locks the user out.
    """
    extra = {i: ["--shop-name", SHOP_NAME, "--log-level", "WARNING"] for i in range(1, n + 1)}
    cluster = Cluster(n, str(base_dir), extra_args=extra, **kwargs)
    try:
        cluster.start(wait_master=False)
        cluster.wait_master(timeout=30)
        for till in cluster.nodes.values():
            wait_demo_ready(till.url, proc=till.proc)
    except Exception:
        logs = "\n".join(f"--- till{t.device_id}\n{t.tail_log()}" for t in cluster.nodes.values())
        cluster.stop()
        raise RuntimeError(f"cluster did not start:\n{logs}") from None
    return cluster


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProc]:
    """One real till with the demo shop loaded, shared by a test module."""
    cluster = start_cluster(1, tmp_path_factory.mktemp("till"))
    yield cluster[1]
    cluster.stop()


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Factory for multi-till clusters; every node is killed at teardown."""
    made: list[Cluster] = []

    def factory(n: int = 2, **kwargs: Any) -> Cluster:
        cluster = start_cluster(n, tmp_path / f"c{len(made)}", **kwargs)
        made.append(cluster)
        return cluster

    yield factory
    for cluster in made:
        cluster.stop()


# ----------------------------------------------------------------------------- page helpers
def login(page, base: str, username: str = "cashier", pin: str | None = None) -> None:
    """Open /till and log in through the PIN pad, as a cashier would."""
    from playwright.sync_api import expect

    page.goto(f"{base}/till")
    page.get_by_test_id(f"user-{username}").click()
    for digit in pin or DEMO_PINS[username]:
        page.get_by_test_id(f"pin-key-{digit}").click()
    page.get_by_test_id("pin-enter").click()
    expect(page.get_by_test_id("cluster-status")).to_be_visible()
    expect(page.locator('[data-testid^="product-"]').first).to_be_visible()


def cents(text: str) -> int:
    """'€12.30' -> 1230 (test side, exact)."""
    t = text.strip().replace("€", "").replace("−", "-")
    neg = t.startswith("-")
    major, _, minor = t.lstrip("-").partition(".")
    value = int(major) * 100 + int((minor + "00")[:2])
    return -value if neg else value
