"""What every HTTP answer of a till carries, and which `Host` names it answers to.

A WSGI middleware around the whole app (Flask routes and the Socket.IO endpoint alike):

- The `Host` header must name this till: localhost, any loopback address, the bind
  address when it is a specific one, the machine's hostname (and `<hostname>.local`),
  an address of one of its network interfaces, or a name given with `--allowed-host`.
  Anything else is answered 421 `MISDIRECTED_REQUEST` before the app sees it. That
  stops DNS rebinding: a web page from `evil.example` whose name an attacker re-points at
  the till's address still sends `Host: evil.example`, and gets nothing. Peers call each
  other by IP address, which is one of the called till's interface addresses.
- Every response carries a strict Content-Security-Policy (scripts, styles, images,
  sockets from the till itself only; no framing), `X-Frame-Options: DENY`,
  `Referrer-Policy: no-referrer` and `X-Content-Type-Options: nosniff`.

`same_origin` is the Engine.IO origin check: a browser socket is accepted only from the
page's own origin (the scheme and the `Host` it used, which the middleware has checked).
Clients without an `Origin` header (the python-socketio client of another till) are not
browsers, and Engine.IO lets them through.

No Flask here: it is plain WSGI, so the same rules cover whatever the app serves.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
import time
from typing import Any, Callable, Iterable

import psutil

log = logging.getLogger(__name__)

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
)
# Interface addresses are read again (at most this often) when an unknown address
# arrives: a till that got a new DHCP lease keeps answering its peers.
REFRESH_S = 10.0
UNSPECIFIED = {"", "0.0.0.0", "::", "*"}


def host_name(header: str) -> str:
    """The name part of a Host header, lower case: `[::1]:5000` -> `::1`, `Till.:80` -> `till`."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else ""
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _is_loopback(name: str) -> bool:
    try:
        return ipaddress.ip_address(name.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def interface_addresses() -> set[str]:
    """Every IPv4/IPv6 address of this machine's interfaces (IPv6 without zone id)."""
    found: set[str] = set()
    try:
        for addrs in psutil.net_if_addrs().values():
            for addr in addrs:
                if addr.family in (socket.AF_INET, socket.AF_INET6) and addr.address:
                    found.add(addr.address.split("%", 1)[0].lower())
    except OSError as exc:  # no /proc (a strange sandbox): names and --allowed-host still work
        log.warning("cannot list interface addresses: %s", exc)
    return found


class AllowedHosts:
    """The names and addresses this till answers to (thread-safe)."""

    def __init__(self, bind_host: str = "", extra: Iterable[str] = (),
                 addresses: Callable[[], set[str]] = interface_addresses,
                 clock: Callable[[], float] = time.monotonic):
        names = {"localhost", "127.0.0.1", "::1"}
        if bind_host.strip() not in UNSPECIFIED:
            names.add(host_name(bind_host))
        hostname = socket.gethostname().lower().rstrip(".")
        if hostname:
            names |= {hostname, hostname + ".local"}
        names |= {host_name(h) for h in extra if h.strip()}
        self.fixed = frozenset(names)
        self._addresses = addresses
        self._clock = clock
        self._lock = threading.Lock()
        self._known = frozenset(addresses())
        self._read_at = clock()

    def allows(self, header: str | None) -> bool:
        if not header:
            return False
        name = host_name(header)
        if not name:
            return False
        if name in self.fixed or name in self._known or _is_loopback(name):
            return True
        return self._refresh_and_check(name)

    def _refresh_and_check(self, name: str) -> bool:
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False  # a name that is not ours: no interface lookup helps
        with self._lock:
            if self._clock() - self._read_at >= REFRESH_S:
                self._known = frozenset(self._addresses())
                self._read_at = self._clock()
            return name in self._known


def same_origin(origin: str | None, environ: dict[str, Any]) -> bool:
    """Engine.IO's origin check: only the page's own origin (scheme + Host it used)."""
    host = environ.get("HTTP_HOST")
    if not origin or not host:
        return False
    return origin.lower() == f"{environ.get('wsgi.url_scheme', 'http')}://{host}".lower()


class HttpSurface:
    """WSGI middleware: refuse foreign Host headers, add the security headers."""

    def __init__(self, app: Callable, hosts: AllowedHosts):
        self.app = app
        self.hosts = hosts

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        def with_headers(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
            present = {name.lower() for name, _ in headers}
            headers = list(headers) + [(k, v) for k, v in SECURITY_HEADERS if k.lower() not in present]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        host = environ.get("HTTP_HOST")
        if not self.hosts.allows(host):
            body = json.dumps({"success": False, "error": {
                "code": "MISDIRECTED_REQUEST",
                "message": "this till does not answer to that host name; use its address or "
                           "a name given with --allowed-host"}}).encode()
            with_headers("421 Misdirected Request", [("Content-Type", "application/json"),
                                                     ("Content-Length", str(len(body)))])
            return [body]
        return self.app(environ, with_headers)
