"""Hosts for the chaos harness: one network namespace per till, or loopback + TCP proxies.

netns mode (root, `ip`, `iptables`): every till gets a namespace `lanpos-<run>-<i>` with
one veth (`eth0`, 10.231.<x>.<i>/24) whose other end sits on a bridge `lpbr<run>` in the
root namespace. The bridge holds 10.231.<x>.254 so the harness reaches every till over
HTTP, as the cashier's browser on that till would. Faults only ever touch traffic between
tills (the cashier's screen is on the till itself):

* partition: `iptables -I LPCHAOS -s/-d <peer> -j DROP` inside the namespaces of both ends;
* delay and loss: `tc netem` on the till's veth when the kernel has sch_netem; otherwise
  `iptables -m statistic --probability p -j DROP` for loss and an NFQUEUE delayer
  (tests/chaos/netdelay.py) for delay - both real kernel mechanisms, on the same veth.

loopback mode (no root): tills listen on 127.0.0.1 ports and reach each other only through
one TcpProxy per ordered pair (tests/cluster/netproxy.py) that can be cut or slowed. It is
weaker (a cut proxy refuses at once instead of dropping packets, no packet loss, one
kernel for everything) and every report says so.

Everything made here is named with a fixed prefix so `cleanup_leftovers()` (and
`scripts/chaos.py --cleanup`) can remove whatever a crashed run left behind. Only
addresses on loopback or inside namespaces made here are ever used.
"""

from __future__ import annotations

import atexit
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import suppress
from typing import Iterable

from tests.cluster.netproxy import TcpProxy

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NS_PREFIX = "lanpos-"
BRIDGE_PREFIX = "lpbr"
VETH_PREFIX = "lpv"
CHAIN = "LPCHAOS"
SUBNET_BASE = "10.231"
NODE_PORT = 5000
TOOL_PACKAGES = {"ip": "iproute2", "tc": "iproute2", "iptables": "iptables"}
_NS_RE = re.compile(r"^lanpos-([0-9a-f]{6})-\d+$")
_LINK_RE = re.compile(r"^(?:lpbr([0-9a-f]{6})|lpv([0-9a-f]{6})\d+)$")
OWNER_DIR = "/run/lanpos-chaos"  # <run id> -> pid of the harness that owns that run


def run(cmd: list[str], check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def missing_for_netns() -> list[str]:
    """What netns mode needs and this machine lacks (empty: netns mode can run)."""
    missing = []
    if not is_root():
        missing.append("root")
    for tool in ("ip", "tc", "iptables"):
        if shutil.which(tool) is None:
            missing.append(tool)
    return missing


def install_tools(tools: Iterable[str]) -> list[str]:
    """apt-get the Debian packages for missing tools (root only). Returns what is still missing."""
    packages = sorted({TOOL_PACKAGES[t] for t in tools if t in TOOL_PACKAGES})
    if packages and is_root() and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
        if subprocess.run(cmd, capture_output=True, env=env, timeout=300).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, env=env, timeout=300)
            subprocess.run(cmd, capture_output=True, env=env, timeout=300)
    return [t for t in tools if t != "root" and shutil.which(t) is None] + \
        (["root"] if "root" in tools else [])


# --------------------------------------------------------------------- clock skew
class ClockSkew:
    """How this machine can move one process's wall clock (or why it cannot).

    libfaketime is tried first (Debian `faketime`); it is used only if a probe shows
    Python's sleeps and thread waits still work under it with the monotonic clock
    untouched. libfaketime 0.9.10 fails that probe (see skewclock.c), so the fallback is
    skewclock.c, an LD_PRELOAD shim built with cc that moves CLOCK_REALTIME only.
    Both read the offset from a file, so a running node's clock can be stepped.
    """

    LIBFAKETIME = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
                   "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
                   "/usr/lib/faketime/libfaketimeMT.so.1")

    def __init__(self, work_dir: str):
        self.work_dir = work_dir
        self.kind: str | None = None
        self.library: str | None = None
        self.reason = ""
        self.notes: list[str] = []
        self._detect()

    def _probe(self, env: dict[str, str], skew_file: str, write_skew) -> bool:  # noqa: ANN001
        code = ("import time,threading,sys\n"
                "t=time.monotonic(); time.sleep(0.05); threading.Event().wait(0.05)\n"
                "sys.exit(0 if time.monotonic()-t < 1.0 else 3)\n")
        write_skew(skew_file, 300_000)
        try:
            r = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                               capture_output=True, timeout=5)
            ok = r.returncode == 0
        except subprocess.TimeoutExpired:
            ok = False
        if ok:  # the wall clock must really have moved
            code2 = "import time;print(time.time())"
            r = subprocess.run([sys.executable, "-c", code2], env={**os.environ, **env},
                               capture_output=True, text=True, timeout=5)
            ok = r.returncode == 0 and abs(float(r.stdout.strip() or 0) - time.time() - 300) < 5
        return ok

    def _detect(self) -> None:
        os.makedirs(self.work_dir, exist_ok=True)
        probe_file = os.path.join(self.work_dir, "skew-probe")
        lib = next((p for p in self.LIBFAKETIME if os.path.exists(p)), None)
        if lib is None:
            self.notes.append("libfaketime is not installed (apt-get install faketime)")
        else:
            env = self.env_for(probe_file, kind="libfaketime", library=lib)
            if self._probe(env, probe_file, self._write_faketime):
                self.kind, self.library = "libfaketime", lib
                return
            self.notes.append("libfaketime is installed but unusable for Python 3.11 threads "
                              "(FAKETIME_DONT_FAKE_MONOTONIC=1 -> time.sleep EINVAL; faking "
                              "the monotonic clock -> thread waits hang)")
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            self.reason = "; ".join(self.notes + ["no C compiler for the skewclock shim"])
            return
        src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "skewclock.c")
        out = os.path.join(self.work_dir, "skewclock.so")
        r = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", out, src, "-ldl"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            self.reason = "; ".join(self.notes + [f"skewclock shim did not build: {r.stderr[-300:]}"])
            return
        env = self.env_for(probe_file, kind="shim", library=out)
        if self._probe(env, probe_file, self._write_shim):
            self.kind, self.library = "shim", out
        else:
            self.reason = "; ".join(self.notes + ["skewclock shim probe failed"])

    @property
    def available(self) -> bool:
        return self.kind is not None

    def describe(self) -> str:
        if self.kind == "libfaketime":
            return f"libfaketime ({self.library})"
        if self.kind == "shim":
            return f"LD_PRELOAD skewclock shim (CLOCK_REALTIME only); {'; '.join(self.notes)}"
        return f"unavailable: {self.reason}"

    def env_for(self, skew_file: str, kind: str | None = None, library: str | None = None
                ) -> dict[str, str]:
        kind = kind or self.kind
        library = library or self.library
        if kind == "libfaketime":
            return {"LD_PRELOAD": library, "FAKETIME_TIMESTAMP_FILE": skew_file,
                    "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
        if kind == "shim":
            return {"LD_PRELOAD": library, "LANPOS_SKEW_FILE": skew_file}
        return {}

    @staticmethod
    def _write_faketime(path: str, offset_ms: int) -> None:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(f"{offset_ms / 1000:+.3f}s\n")

    @staticmethod
    def _write_shim(path: str, offset_ms: int) -> None:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(str(int(offset_ms)))
        os.replace(tmp, path)

    def set_offset(self, path: str, offset_ms: int) -> None:
        if self.kind == "libfaketime":
            self._write_faketime(path, offset_ms)
        else:
            self._write_shim(path, offset_ms)


# ------------------------------------------------------------------------ hosts
class Hosts:
    """What the rest of the harness needs from a network of tills."""

    mode = "?"
    weaker = False

    def __init__(self, n: int, work_dir: str):
        self.n = n
        self.work_dir = work_dir
        self.notes: list[str] = []

    # addressing
    def listen(self, i: int) -> tuple[str, int]:
        raise NotImplementedError

    def peers(self, i: int) -> list[str]:
        raise NotImplementedError

    def url(self, i: int) -> str:
        raise NotImplementedError

    def wrap(self, i: int, cmd: list[str]) -> list[str]:
        return cmd

    def node_args(self) -> list[str]:
        return []

    # faults
    def block(self, pairs: set[frozenset[int]]) -> None:
        """Make exactly these links cut (all others whole)."""
        raise NotImplementedError

    def impair(self, i: int, delay_ms: int, jitter_ms: int, loss_pct: float) -> str:
        raise NotImplementedError

    def unimpair(self, i: int) -> None:
        raise NotImplementedError

    def setup(self) -> None:
        pass

    def cleanup(self) -> None:
        pass


class NetnsHosts(Hosts):
    mode = "netns"

    def __init__(self, n: int, work_dir: str, run_id: str | None = None):
        super().__init__(n, work_dir)
        self.run_id = run_id or uuid.uuid4().hex[:6]
        self.bridge = f"{BRIDGE_PREFIX}{self.run_id}"
        self.octet = self._free_octet()
        self.harness_ip = f"{SUBNET_BASE}.{self.octet}.254"
        self.netem = False
        self._blocked: set[frozenset[int]] = set()
        self._impaired: dict[int, dict] = {}
        self._delayers: dict[int, subprocess.Popen] = {}
        self._made = False
        self._cleaned = False
        atexit.register(self.cleanup)

    def ns(self, i: int) -> str:
        return f"{NS_PREFIX}{self.run_id}-{i}"

    def ip(self, i: int) -> str:
        return f"{SUBNET_BASE}.{self.octet}.{i}"

    def listen(self, i: int) -> tuple[str, int]:
        return self.ip(i), NODE_PORT

    def peers(self, i: int) -> list[str]:
        return [f"{self.ip(j)}:{NODE_PORT}" for j in range(1, self.n + 1) if j != i]

    def url(self, i: int) -> str:
        return f"http://{self.ip(i)}:{NODE_PORT}"

    def wrap(self, i: int, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(i), *cmd]

    @staticmethod
    def _free_octet() -> int:
        used = run(["ip", "-4", "route", "show", "table", "all"], check=False).stdout
        used += run(["ip", "-4", "addr"], check=False).stdout
        candidates = list(range(1, 251))
        import random

        random.Random(os.getpid() ^ time.time_ns()).shuffle(candidates)
        for octet in candidates:
            net = ipaddress.ip_network(f"{SUBNET_BASE}.{octet}.0/24")
            if f"{SUBNET_BASE}.{octet}." not in used and not net.is_global:
                return octet
        raise RuntimeError("no free 10.231.x.0/24 subnet")

    def _nsrun(self, i: int, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(["ip", "netns", "exec", self.ns(i), *cmd], check=check)

    def setup(self) -> None:
        self._made = True
        os.makedirs(OWNER_DIR, exist_ok=True)
        with open(os.path.join(OWNER_DIR, self.run_id), "w", encoding="ascii") as fh:
            fh.write(str(os.getpid()))
        run(["ip", "link", "add", self.bridge, "type", "bridge"])
        run(["ip", "addr", "add", f"{self.harness_ip}/24", "dev", self.bridge])
        run(["ip", "link", "set", self.bridge, "up"])
        for i in range(1, self.n + 1):
            ns, veth = self.ns(i), f"{VETH_PREFIX}{self.run_id}{i}"
            run(["ip", "netns", "add", ns])
            run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns])
            run(["ip", "link", "set", veth, "master", self.bridge])
            run(["ip", "link", "set", veth, "up"])
            run(["ip", "-n", ns, "addr", "add", f"{self.ip(i)}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            self._nsrun(i, "iptables", "-w", "-N", CHAIN)
            self._nsrun(i, "iptables", "-w", "-I", "INPUT", "-j", CHAIN)
            self._nsrun(i, "iptables", "-w", "-I", "OUTPUT", "-j", CHAIN)
        probe = self._nsrun(1, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                            check=False)
        if probe.returncode == 0:
            self.netem = True
            self._nsrun(1, "tc", "qdisc", "del", "dev", "lo", "root", check=False)
        else:
            self.notes.append("kernel has no sch_netem (tc: " + probe.stderr.strip()[:80]
                              + "); delay = NFQUEUE delayer, loss = iptables statistic, "
                              "both on the till's veth")
        # The bridge must pass frames before anything starts (STP is off; wait for carrier).
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self._reachable(1):
                break
            time.sleep(0.05)

    def _reachable(self, i: int) -> bool:
        # A TCP connect to a closed port answers RST at once if the path works.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.3)
            try:
                s.connect((self.ip(i), 9))
            except ConnectionRefusedError:
                return True
            except OSError:
                return False
        return True

    def _apply_rules(self) -> None:
        for i in range(1, self.n + 1):
            self._nsrun(i, "iptables", "-w", "-F", CHAIN, check=False)
        for i, spec in self._impaired.items():  # appended: evaluated after partition drops
            if self.netem:
                continue
            for j in range(1, self.n + 1):
                if j == i:
                    continue
                if spec["loss"] > 0:
                    p = f"{spec['loss'] / 100:.4f}"
                    self._nsrun(i, "iptables", "-w", "-A", CHAIN, "-d", self.ip(j), "-m", "statistic",
                                "--mode", "random", "--probability", p, "-j", "DROP")
                    self._nsrun(i, "iptables", "-w", "-A", CHAIN, "-s", self.ip(j), "-m", "statistic",
                                "--mode", "random", "--probability", p, "-j", "DROP")
                if spec["delay"] > 0:
                    self._nsrun(i, "iptables", "-w", "-A", CHAIN, "-d", self.ip(j), "-j", "NFQUEUE",
                                "--queue-num", str(spec["queue"]), "--queue-bypass")
        for pair in self._blocked:  # inserted: a cut link drops before any delay queue
            a, b = sorted(pair)
            for me, other in ((a, b), (b, a)):
                self._nsrun(me, "iptables", "-w", "-I", CHAIN, "-s", self.ip(other), "-j", "DROP")
                self._nsrun(me, "iptables", "-w", "-I", CHAIN, "-d", self.ip(other), "-j", "DROP")

    def block(self, pairs: set[frozenset[int]]) -> None:
        if pairs == self._blocked:
            return
        self._blocked = set(pairs)
        self._apply_rules()

    def impair(self, i: int, delay_ms: int, jitter_ms: int, loss_pct: float) -> str:
        self.unimpair(i)
        if self.netem:
            args = ["tc", "qdisc", "replace", "dev", "eth0", "root", "netem"]
            if delay_ms:
                args += ["delay", f"{delay_ms}ms", f"{jitter_ms}ms"]
            if loss_pct:
                args += ["loss", f"{loss_pct}%"]
            self._nsrun(i, *args)
            self._impaired[i] = {"delay": delay_ms, "loss": loss_pct, "queue": 0}
            return "tc netem " + " ".join(args[7:])
        queue = 100 + i
        if delay_ms:
            proc = subprocess.Popen(
                self.wrap(i, [sys.executable, "-m", "tests.chaos.netdelay", "--queue", str(queue),
                              "--delay-ms", str(delay_ms), "--jitter-ms", str(jitter_ms),
                              "--max-seconds", "900"]),
                cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True)
            line = _readline(proc, 5.0)
            if line.strip() != "ready":
                proc.kill()
                raise RuntimeError("netdelay did not start")
            self._delayers[i] = proc
        self._impaired[i] = {"delay": delay_ms, "loss": loss_pct, "queue": queue}
        self._apply_rules()
        return (f"NFQUEUE delay {delay_ms}±{jitter_ms} ms + iptables statistic loss "
                f"{loss_pct}% on eth0 of till {i}")

    def unimpair(self, i: int) -> None:
        if i not in self._impaired:
            return
        self._impaired.pop(i)
        if self.netem:
            self._nsrun(i, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)
        else:
            self._apply_rules()
        proc = self._delayers.pop(i, None)
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()

    def cleanup(self) -> None:
        if self._cleaned or not self._made:
            return
        self._cleaned = True
        for i in list(self._delayers):
            with suppress(Exception):
                self.unimpair(i)
        for i in range(1, self.n + 1):
            kill_namespace(self.ns(i))
        with suppress(Exception):
            run(["ip", "link", "del", self.bridge], check=False)
        with suppress(OSError):
            os.remove(os.path.join(OWNER_DIR, self.run_id))


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return out[0] if out else ""


def kill_namespace(ns: str) -> None:
    """SIGKILL every process in a namespace, then delete it (its veth goes with it)."""
    pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
    for pid in pids:
        with suppress(ProcessLookupError, ValueError, PermissionError):
            os.kill(int(pid), signal.SIGKILL)
    if pids:
        time.sleep(0.2)
    run(["ip", "netns", "del", ns], check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run_is_live(run_id: str, namespaces: list[str]) -> bool:
    """Another harness (a concurrent test run, a campaign) still owns this run: its
    owner file names a live pid, or a till in one of its namespaces still has a live
    parent (a dead harness's tills are reparented to init)."""
    try:
        with open(os.path.join(OWNER_DIR, run_id), encoding="ascii") as fh:
            owner = int(fh.read().strip() or 0)
        if owner and owner != os.getpid() and _pid_alive(owner):
            return True
    except (OSError, ValueError):
        pass
    for ns in namespaces:
        for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
            try:
                with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid not in (0, 1) and ppid != os.getpid():
                return True
    return False


def cleanup_leftovers(verbose: bool = True, force: bool = False) -> list[str]:
    """Remove namespaces, bridges and veths with this harness's prefixes that no live
    harness owns (crashed runs). Runs of a concurrent harness are left alone unless
    `force`."""
    removed = []
    if shutil.which("ip") is None or not is_root():
        return removed
    by_run: dict[str, list[str]] = {}
    for line in run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        m = _NS_RE.match(name)
        if m:
            by_run.setdefault(m.group(1), []).append(name)
    live = {r for r, names in by_run.items() if not force and _run_is_live(r, names)}
    for r, names in by_run.items():
        if r in live:
            continue
        for name in names:
            kill_namespace(name)
            removed.append(f"netns {name}")
    for line in run(["ip", "-o", "link", "show"], check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        m = _LINK_RE.match(name)
        if m and (m.group(1) or m.group(2)) not in live:
            owner = os.path.join(OWNER_DIR, m.group(1) or m.group(2))
            if not force and os.path.exists(owner) and _run_is_live(m.group(1) or m.group(2), []):
                continue
            run(["ip", "link", "del", name], check=False)
            removed.append(f"link {name}")
    with suppress(OSError):
        for run_id in os.listdir(OWNER_DIR):  # owner files of runs that are gone
            if run_id not in live and not _run_is_live(run_id, []):
                os.remove(os.path.join(OWNER_DIR, run_id))
    if verbose:
        for item in removed:
            print(f"cleanup: removed {item}")
    return removed


# ------------------------------------------------------------------ loopback
class SlowProxy(TcpProxy):
    """A TcpProxy that can also hold every chunk back (loopback's stand-in for delay)."""

    delay_s = 0.0

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:  # noqa: D401
        try:
            while True:
                data = src.recv(65536)
                if not data or self.is_cut:
                    break
                if self.delay_s:
                    time.sleep(self.delay_s)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with suppress(OSError):
                    s.close()
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)


class LoopbackHosts(Hosts):
    mode = "loopback"
    weaker = True

    def __init__(self, n: int, work_dir: str):
        super().__init__(n, work_dir)
        from tests.cluster.harness import free_port

        self.ports = {i: free_port() for i in range(1, n + 1)}
        self.proxies: dict[tuple[int, int], SlowProxy] = {}
        self.notes.append("WEAKER MODE: loopback + TCP proxies (a cut refuses connections at "
                          "once instead of dropping packets; no packet loss; delay per chunk)")

    def setup(self) -> None:
        for i in self.ports:
            for j, port in self.ports.items():
                if i != j:
                    self.proxies[(i, j)] = SlowProxy(port)

    def listen(self, i: int) -> tuple[str, int]:
        return "127.0.0.1", self.ports[i]

    def peers(self, i: int) -> list[str]:
        return [f"127.0.0.1:{p.port}" for (a, _b), p in sorted(self.proxies.items()) if a == i]

    def url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]}"

    def node_args(self) -> list[str]:
        return ["--no-learn-peers"]

    def block(self, pairs: set[frozenset[int]]) -> None:
        for (a, b), proxy in self.proxies.items():
            if frozenset((a, b)) in pairs:
                if not proxy.is_cut:
                    proxy.cut()
            else:
                proxy.heal()

    def impair(self, i: int, delay_ms: int, jitter_ms: int, loss_pct: float) -> str:
        for (a, b), proxy in self.proxies.items():
            if i in (a, b):
                proxy.delay_s = delay_ms / 1000.0
        return f"proxy delay {delay_ms} ms per chunk on till {i}'s links (loss not possible in loopback)"

    def unimpair(self, i: int) -> None:
        for (a, b), proxy in self.proxies.items():
            if i in (a, b):
                proxy.delay_s = 0.0

    def cleanup(self) -> None:
        for proxy in self.proxies.values():
            proxy.close()


def make_hosts(mode: str, n: int, work_dir: str) -> Hosts:
    """mode: netns | loopback | auto (netns when possible)."""
    if mode == "auto":
        mode = "netns" if not missing_for_netns() else "loopback"
    if mode == "netns":
        missing = missing_for_netns()
        if missing:
            raise RuntimeError(f"netns mode needs {', '.join(missing)}")
        return NetnsHosts(n, work_dir)
    return LoopbackHosts(n, work_dir)
