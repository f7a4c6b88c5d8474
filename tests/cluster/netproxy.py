"""A tiny TCP proxy on 127.0.0.1 whose link can be cut and healed (partitions in tests).

Each proxy forwards one listening loopback port to one target port. `cut()` closes
every open connection and refuses new ones, which is what a pulled cable looks like
to both ends; `heal()` lets traffic through again. Threads stop when the proxy closes.
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class TcpProxy:
    def __init__(self, target_port: int, listen_port: int = 0):
        self.target_port = target_port
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", listen_port))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        self.is_cut = False
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"proxy-{self.port}").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if self.is_cut:
                with suppress(OSError):
                    client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                with suppress(OSError):
                    client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update({client, upstream})
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or self.is_cut:
                    break
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

    def cut(self) -> None:
        self.is_cut = True
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with suppress(OSError):
                s.close()

    def heal(self) -> None:
        self.is_cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        with suppress(OSError):
            self.server.close()


class ProxyMesh:
    """One proxy per ordered pair (i -> j): node i reaches node j only through it."""

    def __init__(self, ports: dict[int, int]):
        self.proxies: dict[tuple[int, int], TcpProxy] = {}
        for i in ports:
            for j, port in ports.items():
                if i != j:
                    self.proxies[(i, j)] = TcpProxy(port)

    def peers_of(self, i: int) -> list[str]:
        return [f"127.0.0.1:{p.port}" for (a, _b), p in sorted(self.proxies.items()) if a == i]

    def isolate(self, node: int) -> None:
        for (a, b), proxy in self.proxies.items():
            if node in (a, b):
                proxy.cut()

    def heal(self) -> None:
        for proxy in self.proxies.values():
            proxy.heal()

    def close(self) -> None:
        for proxy in self.proxies.values():
            proxy.close()
