"""Browser tests: Playwright driving Debian's Chromium against real lanpos nodes.

* Chromium comes from apt (`/usr/bin/chromium`); `playwright install` is never used.
* With CI=true a missing Chromium FAILS the tests; elsewhere they are skipped.
* Nodes are real `python -m app run ...` processes on 127.0.0.1 (the cluster
  harness when it is there, else one node started here).
* Screenshots go to artifacts/screenshots/ (see README).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

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
DEMO_PINS = {"admin": "1234", "manager": "2345", "cashier": "0000"}
CLUSTER_SECRET = "browser-test-secret"


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
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_demo_ready(base: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Until the demo users can log in and the sample catalog is loaded."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"node exited with {proc.returncode} before it was ready")
        try:
            api = Api(base).login("cashier")
            total = api.get("/api/products", limit=1).json().get("total", 0)
            if total >= 50:
                return
            last = f"{total} products"
        except (requests.RequestException, KeyError, ValueError) as exc:
            last = repr(exc)
        time.sleep(0.25)
    raise RuntimeError(f"node at {base} not ready after {timeout}s: {last}")


@dataclass
class SoloNode:
    """One `python -m app run` node with the demo data (no peers)."""

    tmp: Path
    device_id: int = 1
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "SoloNode":
        data = self.tmp / f"till{self.device_id}"
        data.mkdir(parents=True, exist_ok=True)
        self.log_path = self.tmp / f"till{self.device_id}.log"
        cmd = [sys.executable, "-m", "app", "run", "--device-id", str(self.device_id),
               "--port", str(self.port), "--host", "127.0.0.1", "--data-dir", str(data),
               "--no-discovery", "--cluster-secret", CLUSTER_SECRET, "--admin-pin", "1234",
               "--seed-demo", "--shop-name", "Corner Shop (browser tests)", "--log-level", "WARNING"]
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_demo_ready(self.base, proc=self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"node did not start; log:\n{self.log_tail()}") from None
        return self

    def log_tail(self, n: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoloNode]:
    """A real till node on 127.0.0.1 with the demo shop loaded (one per test module)."""
    n = SoloNode(tmp_path_factory.mktemp("till")).start()
    yield n
    n.stop()


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
