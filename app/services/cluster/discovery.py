"""Zeroconf: advertise this till as _lanpos._tcp.local. and browse for the others.

Discovery only finds peers; heartbeats decide who is alive (a kill -9'd node stays
listed for a long time). The instance name carries the device id, so two live tills
never fight over a name. When the node binds to loopback, multicast stays on loopback.
"""

from __future__ import annotations

import logging
import socket
from typing import Callable

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

from app.config import Config

log = logging.getLogger(__name__)
SERVICE = "_lanpos._tcp.local."


def _advertised_address(host: str) -> str:
    if host not in ("0.0.0.0", "", "::"):
        return host
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent: picks the LAN interface
            return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"


class Discovery:
    def __init__(self, cfg: Config, cluster_id: str, on_found: Callable[[str], None]):
        self.cfg = cfg
        self.cluster_id = cluster_id
        self.on_found = on_found
        self.address = _advertised_address(cfg.host)
        interfaces = [self.address] if cfg.host not in ("0.0.0.0", "", "::") else None
        self.zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only) if interfaces \
            else Zeroconf(ip_version=IPVersion.V4Only)
        self.info = ServiceInfo(
            SERVICE, f"lanpos-till-{cfg.device_id}-{cluster_id}.{SERVICE}",
            addresses=[socket.inet_aton(self.address)], port=cfg.port,
            properties={"device_id": str(cfg.device_id), "port": str(cfg.port),
                        "version": "0.1.0", "schema": "1", "cluster": cluster_id},
            server=f"lanpos-till-{cfg.device_id}.local.")
        self.browser: ServiceBrowser | None = None

    def start(self) -> None:
        self.zc.register_service(self.info, allow_name_change=False)
        self.browser = ServiceBrowser(self.zc, SERVICE, handlers=[self._changed])

    def _changed(self, zeroconf: Zeroconf, service_type: str, name: str,
                 state_change: ServiceStateChange) -> None:
        if state_change is not ServiceStateChange.Added:
            return
        info = zeroconf.get_service_info(service_type, name, timeout=2000)
        if info is None:
            return
        props = {k.decode(): (v.decode() if v else "") for k, v in info.properties.items()}
        if props.get("cluster") != self.cluster_id or props.get("device_id") == str(self.cfg.device_id):
            return
        for addr in info.parsed_addresses(IPVersion.V4Only):
            log.info("zeroconf found till %s at %s:%s", props.get("device_id"), addr, info.port)
            self.on_found(f"{addr}:{info.port}")
            break

    def stop(self) -> None:
        try:
            self.zc.unregister_service(self.info)
        except Exception:  # noqa: BLE001
            pass
        self.zc.close()
