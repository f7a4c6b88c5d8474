"""The I/O shell around the pure election core: peers, heartbeats, links, sync rounds.

The core (`election.py`) decides; this module does what it says, in order: persist
first, then act, then send. Heartbeats ride on one Socket.IO websocket client per
peer (`PeerLink`); the master pushes journal entries to the nodes connected to its
own server, and clients submit events to the master over their link to it.
Zeroconf only finds peers; heartbeats decide who is alive.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

import socketio
from apscheduler.schedulers.background import BackgroundScheduler

from app.services import refusals
from app.services.cluster.election import (
    BecomeMaster,
    ElectionCore,
    Epoch,
    Follow,
    Heartbeat,
    MasterLost,
    PersistEpoch,
    Refused,
    StepDown,
)
from app.services.cluster.lease import LeaseFence, Renewed, Stalled
from app.services.cluster.push_batch import PushBatcher
from app.services.cluster.sync_rounds import SyncRounds
from app.services.journal.events import EVENT_TYPES, Event
from app.services.journal.ledger import LinkDown
from app.services.journal.replication import Diverged, HttpPeer, SyncError, drop_losing_tail, pull
from app.services.node import Node
from app.utils.clock import monotonic_ms
from app.utils.signing import cluster_id, open_sealed, seal

log = logging.getLogger(__name__)
NODE_NS = "/node"
# Outbox resubmission (push_outbox): events per submit, per outbox read (and audit
# entry), and the most chunks one sync round submits.
PUSH_PAGE = 500
PUSH_CHUNK = 5000
MAX_PUSH_CHUNKS = 100


class MonotonicJobs:
    """Interval jobs on the monotonic clock, one thread each.

    APScheduler 3 times interval jobs by the wall clock: when a till's clock is stepped
    back (NTP, a person fixing it) by 300 s, every job stops for 300 s - no heartbeat,
    no lease, no sync. A thread waiting on the monotonic clock is not fooled. A run that
    overruns its interval is not repeated to catch up (like coalesce=True).
    """

    def __init__(self) -> None:
        self._stop = threading.Event()

    def every(self, interval: float, fn: Callable[[], Any], name: str) -> None:
        def loop() -> None:
            next_at = time.monotonic() + interval
            while not self._stop.wait(max(0.0, next_at - time.monotonic())):
                try:
                    fn()
                except Exception:  # noqa: BLE001 - a job must never die
                    log.exception("job %s failed", name)
                next_at = max(next_at + interval, time.monotonic())

        threading.Thread(target=loop, name=f"job-{name}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


class PeerLink:
    """Our websocket client to one peer's /node namespace, reconnecting by itself."""

    def __init__(self, runtime: "ClusterRuntime", address: str):
        self.runtime = runtime
        self.address = address
        self.device_id: int | None = None
        self.connected = False
        self._stop = threading.Event()
        # websocket-client checks the UTF-8 of every text frame in pure Python (a quarter
        # of a till's CPU while journal pages stream in); the frame is decoded as UTF-8
        # right after anyway (`WebSocket.recv`), in C, which refuses the same bytes.
        self.sio = socketio.Client(reconnection=False, logger=False, engineio_logger=False,
                                   websocket_extra_options={"skip_utf8_validation": True})
        self.sio.on("connect", self._on_connect, namespace=NODE_NS)
        self.sio.on("disconnect", self._on_disconnect, namespace=NODE_NS)
        self.sio.on("sync_update", self._on_sync_update, namespace=NODE_NS)
        self.sio.on("critical_event", self._on_critical, namespace=NODE_NS)
        self._thread = threading.Thread(target=self._run, name=f"link-{address}", daemon=True)

    @property
    def master_id(self) -> int:
        return self.device_id or 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.sio.disconnect()
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.connected:
                try:
                    self.sio.connect(f"http://{self.address}", transports=["websocket"],
                                     namespaces=[NODE_NS], auth=self.runtime.connect_auth,
                                     wait_timeout=2)
                except Exception as exc:  # noqa: BLE001 - peer down or refused us
                    log.debug("link %s: connect failed: %s", self.address, exc)
                    try:
                        self.sio.disconnect()
                    except Exception:  # noqa: BLE001
                        pass
                    self._stop.wait(0.3)
                    continue
            self._stop.wait(0.2)

    def _on_connect(self) -> None:
        self.connected = True
        self.runtime.send_heartbeats([self])

    def _on_disconnect(self, *_args: Any) -> None:
        was = self.connected
        self.connected = False
        if was and self.device_id is not None:
            self.runtime.on_peer_down(self.device_id)

    def _on_sync_update(self, envelope: dict) -> None:
        self.runtime.on_sync_update(envelope, self)

    def _on_critical(self, envelope: dict) -> None:
        body = self.runtime.open_envelope(envelope)
        if body is not None:
            self.runtime.emit_browsers("critical_event", body)

    def emit(self, event: str, data: dict, callback: Callable | None = None) -> bool:
        if not self.connected:
            return False
        try:
            self.sio.emit(event, data, namespace=NODE_NS, callback=callback)
            return True
        except Exception:  # noqa: BLE001 - link dropped between check and emit
            return False

    def submit(self, events: list[dict], timeout: float) -> list[dict]:
        """Ledger's MasterLink: hand events to the master and wait for its acks."""
        if not self.connected:
            raise LinkDown("not connected")
        body = {"from": self.runtime.device_id, "epoch": self.runtime.core_epoch().to_list(),
                "events": events}
        try:
            reply = self.sio.call("submit", self.runtime.seal(body), namespace=NODE_NS,
                                  timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - timeout or disconnected
            raise LinkDown(f"{type(exc).__name__}") from exc
        opened = self.runtime.open_envelope(reply)
        if opened is None:
            raise LinkDown("unsigned reply")
        acks = opened.get("acks") or []
        if len(acks) != len(events):
            raise LinkDown("bad reply")
        return acks


class ClusterRuntime:
    def __init__(self, node: Node, *, emit_nodes: Callable[[str, dict], None],
                 emit_browsers: Callable[[str, dict], None],
                 clock: Callable[[], int] = monotonic_ms):
        cfg = node.config
        # The election core and the lease run on monotonic time (wall clocks jump).
        self.now_ms = clock
        self.node = node
        self.cfg = cfg
        self.device_id = cfg.device_id
        self.secret = cfg.cluster_secret or ""
        self.cluster_id = cluster_id(self.secret)
        self.emit_nodes = emit_nodes
        self.emit_browsers = emit_browsers
        self.lock = threading.RLock()
        ep = node.ledger.epoch
        self.core = ElectionCore(
            cfg.device_id, schema_version=node.schema_version,
            failover_timeout_ms=cfg.failover_timeout_ms, reclaim=cfg.reclaim,
            reclaim_delay_ms=int(cfg.reclaim_delay * 1000), epoch=Epoch(ep[0], ep[1]),
            now=self.now_ms())
        self.links: dict[str, PeerLink] = {}
        self.caught_up = False
        self.promoting = False
        self.master_lost_at: int | None = None
        # The master's lease and the stall fence (pure policy; see lease.py).
        self.lease = LeaseFence(cfg.failover_timeout_ms)
        # What the ledger reads through its ClusterView (this runtime, once started).
        self._master_link: PeerLink | None = None
        self._isolated = False
        # Sync-round triggers, coalesced (pure policy; see sync_rounds.py).
        self.rounds = SyncRounds(self._sync_once)
        self._http_peers: dict[str, HttpPeer] = {}
        # Audit chain heads: as peers announce them, and how far our copies reach.
        self._peer_audit_seq: dict[int, int] = {}
        self._copied_audit_seq: dict[int, int] = {}
        self._last_state: tuple | None = None
        self.stats = {"last_sync_time": None, "total_syncs": 0, "successful_syncs": 0,
                      "failed_syncs": 0, "total_events_synced": 0, "last_error": None}
        self.pushes = PushBatcher(self._receive_pushed)
        self.scheduler = MonotonicJobs()
        self.background = BackgroundScheduler(daemon=True)
        self.discovery: Any = None

    # ------------------------------------------------- the ledger's ClusterView
    def lease_live(self) -> bool:
        return self.lease.may_sequence(self.now_ms())

    def isolated(self) -> bool:
        return self._isolated

    def master_link(self) -> PeerLink | None:
        return self._master_link

    # ----------------------------------------------------------------- life
    def start(self) -> None:
        ledger = self.node.ledger
        self.lease.start(self.now_ms())  # the ledger reads it once the wiring attaches us
        ledger.subscribe_appended(self._broadcast_entries)
        ledger.subscribe_offline(self._retry_soon)  # push an offline sale as soon as a master answers
        for address in self.cfg.peers:
            self.add_peer(address)
        # The heartbeat (which also renews the master's lease) must never stall, so it
        # runs on the monotonic clock. The periodic safety nets run on APScheduler: a
        # wall-clock step only delays them, and sync is also kicked by gaps, new links,
        # failed rounds and a new master.
        self.scheduler.every(self.cfg.heartbeat_interval, self.heartbeat_tick, "heartbeat")
        self.background.add_job(self.sync_round, "interval", seconds=self.cfg.sync_interval,
                                id="sync", max_instances=1, coalesce=True,
                                kwargs={"reason": "periodic"})
        self.background.add_job(self.pull_audit, "interval", seconds=5, id="audit",
                                max_instances=1, coalesce=True)
        self.background.start()
        if self.cfg.discovery:
            from app.services.cluster.discovery import Discovery

            try:
                self.discovery = Discovery(self.cfg, self.cluster_id, self.add_peer)
                self.discovery.start()
            except Exception as exc:  # noqa: BLE001 - a till must run without multicast
                log.warning("zeroconf discovery unavailable: %s", exc)

    def stop(self) -> None:
        self.scheduler.stop()
        try:
            self.background.shutdown(wait=False)
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass
        if self.discovery is not None:
            self.discovery.stop()
        for link in list(self.links.values()):
            link.stop()

    def add_peer(self, address: str) -> None:
        own = {f"127.0.0.1:{self.cfg.port}", f"localhost:{self.cfg.port}",
               f"{self.cfg.host}:{self.cfg.port}"}
        with self.lock:
            if address in self.links or address in own:
                return
            link = PeerLink(self, address)
            self.links[address] = link
        link.start()

    # ------------------------------------------------------------ signing
    def seal(self, body: dict) -> dict:
        return seal(self.secret, body)

    def open_envelope(self, envelope: Any) -> dict | None:
        return open_sealed(self.secret, envelope)

    def connect_auth(self) -> dict:
        body = {"device_id": self.device_id, "ts": int(time.time() * 1000),
                "cluster_id": self.cluster_id}
        return self.seal(body)

    def core_epoch(self) -> Epoch:
        with self.lock:
            return self.core.epoch

    # ---------------------------------------------------------- heartbeats
    def _my_heartbeat(self) -> dict:
        last_gseq, last_epoch = self.node.ledger.position()
        with self.lock:
            self.core.set_local_state(last_gseq=last_gseq, last_epoch=Epoch(*last_epoch),
                                      eligible=self.eligible())
            hb = self.core.heartbeat()
        return self.seal({"hb": hb.to_dict(), "port": self.cfg.port,
                          "outbox_pending": self.node.ledger.outbox_pending(),
                          "audit_seq": self.node.audit.last_seq})

    def eligible(self) -> bool:
        master = self.core.master_id
        return self.caught_up or master is None or master == self.device_id

    def _renew_lease(self) -> None:
        """Do what the lease fence (lease.py) decides for this heartbeat tick: audit a
        stall, and after a lapsed lease is renewed journal what went to the outbox
        meanwhile (the ledger reads the lease itself, through `lease_live`). A master
        that wakes from a stall cut off from every peer journals nothing at its old term
        (chaos seed 3000, session 4)."""
        ledger = self.node.ledger
        for action in self.lease.on_tick(self.now_ms(), has_peers=bool(self.links)):
            if isinstance(action, Stalled):
                self._audit("node.stalled", {"gap_ms": action.gap_ms,
                                             "was_sequencing": ledger.sequencing})
            elif isinstance(action, Renewed):
                if action.was_lapsed and ledger.sequencing:
                    self.kick_sync("lease renewed")  # journal what went to the outbox meanwhile

    def heartbeat_tick(self) -> None:
        try:
            self._renew_lease()
            envelope = self._my_heartbeat()
            with self.lock:
                actions = self.core.tick(self.now_ms())
            self.handle(actions)
            self.send_heartbeats(list(self.links.values()), envelope)
            self._refresh_master_link()
            self._update_isolation()
            self._push_status_if_changed()
        except Exception:  # noqa: BLE001 - never let the heartbeat job die
            log.exception("heartbeat tick failed")

    def send_heartbeats(self, links: list[PeerLink], envelope: dict | None = None) -> None:
        """Our heartbeat to each link; each reply is the peer's heartbeat."""
        envelope = envelope or self._my_heartbeat()
        for link in links:
            # The ack's arguments are the peer's to choose: none (an empty ack) or several
            # must be refused like a bad one, not raise TypeError in the socket thread.
            link.emit("heartbeat", envelope,
                      callback=lambda *reply, lk=link, gen=self.lease.sent_generation:
                      self._on_ack(reply, lk, gen))

    def _on_ack(self, args: tuple, link: PeerLink, stall_gen: int | None = None) -> None:
        """A peer's ack to our heartbeat, as the socket gave it: exactly one envelope."""
        if len(args) != 1:
            self.refuse(link.address, f"heartbeat ack with {len(args)} arguments, not 1")
            return
        self._on_reply(args[0], link, stall_gen)

    def _on_reply(self, reply: Any, link: PeerLink, stall_gen: int | None = None) -> None:
        body = self.open_envelope(reply)
        if body is None:
            self.refuse(link.address, "unsigned or wrongly signed heartbeat reply")
            return
        self.lease.on_reply(stall_gen)  # an answer to a heartbeat sent since the last stall
        self._take_heartbeat(body, link.address, link)

    def on_heartbeat(self, envelope: Any, remote_addr: str) -> dict | None:
        """A peer's heartbeat arrived at our server; answer with ours."""
        body = self.open_envelope(envelope)
        if body is None:
            self.refuse(remote_addr, "unsigned or wrongly signed heartbeat")
            return None
        self._take_heartbeat(body, remote_addr, None)
        return self._my_heartbeat()

    def _take_heartbeat(self, body: dict, remote_addr: str, link: PeerLink | None) -> None:
        try:
            hb = Heartbeat.from_dict(body.get("hb"))
        except ValueError as exc:
            self.refuse(remote_addr, f"malformed heartbeat: {exc}")
            return
        if hb.device_id == self.device_id:
            if link is not None:  # our own address reached us (e.g. via discovery)
                link.stop()
            return
        if isinstance(body.get("audit_seq"), int):
            self._peer_audit_seq[hb.device_id] = body["audit_seq"]
        if link is not None:
            link.device_id = hb.device_id
        elif self.cfg.learn_peers and not any(lk.device_id == hb.device_id
                                              for lk in self.links.values()):
            # A heartbeat from a till we have no link to: link back to it.
            port = body.get("port")
            host = remote_addr.rsplit(":", 1)[0] if ":" in remote_addr else remote_addr
            if isinstance(port, int):
                self.add_peer(f"{host}:{port}")
        with self.lock:
            actions = self.core.on_heartbeat(hb, self.now_ms())
        self.handle(actions)
        self._refresh_master_link()

    def on_peer_down(self, device_id: int) -> None:
        with self.lock:
            actions = self.core.on_peer_down(device_id, self.now_ms())
        self.handle(actions)
        self._refresh_master_link()
        self._update_isolation()
        self._push_status_if_changed()

    def refuse(self, who: str, reason: str) -> None:
        """Audit refused node traffic, at most once a minute per sender (refusals.py)."""
        refusals.refuse(self.node, "node.refused", who, reason)

    def on_node_connect(self, auth: Any, remote_addr: str) -> bool:
        body = self.open_envelope(auth)
        if body is None:
            self.refuse(remote_addr, "node connection without a valid cluster signature")
            return False
        return True

    # ------------------------------------------------------------- actions
    def handle(self, actions: list) -> None:
        """Persist first, then act, then tell."""
        for action in actions:
            if isinstance(action, PersistEpoch):
                self.node.ledger.persist_epoch((action.epoch.number, action.epoch.master_id))
            elif isinstance(action, BecomeMaster):
                # A new term journals nothing before it has caught up (_promote); a sitting
                # master that re-claims (it learned of a higher epoch) stops at once.
                self.node.ledger.stop_sequencing()
                self._audit("election.won", {"epoch": action.epoch.to_list()})
                threading.Thread(target=self._promote, args=(action.epoch,), daemon=True,
                                 name="promote").start()
            elif isinstance(action, StepDown):
                self.node.ledger.stop_sequencing()
                self.promoting = False
                self._audit("role.step_down", {"epoch": action.epoch.to_list(),
                                               "new_master": action.master_id})
            elif isinstance(action, Follow):
                if self.node.ledger.sequencing:
                    self.node.ledger.stop_sequencing()
                self.caught_up = False
                self.master_lost_at = None
                self._audit("election.follow", {"master_id": action.master_id,
                                                "epoch": action.epoch.to_list()})
                self.emit_browsers("master_changed", {"master_id": action.master_id,
                                                      "epoch": action.epoch.to_list()})
                self._refresh_master_link()
                self.kick_sync("new master")
            elif isinstance(action, MasterLost):
                self._master_link = None
                self.master_lost_at = self.now_ms()
                self._audit("election.master_lost", {"master_id": action.previous_master_id})
            elif isinstance(action, Refused):
                self.refuse(f"device {action.device_id}", action.reason)

    def _promote(self, epoch: Epoch) -> None:
        """Catch up from the freshest alive peer, then start sequencing at `epoch`."""
        self.promoting = True
        ledger = self.node.ledger
        self._master_link = None
        try:
            self._catch_up_before_sequencing()
        except Exception as exc:  # noqa: BLE001 - sequence anyway; the peer resyncs to us
            log.warning("catch-up before sequencing failed: %s", exc)
        with self.lock:
            still = self.core.role == "master" and self.core.epoch == epoch
        if not still:
            self.promoting = False
            return
        resequenced = ledger.start_sequencing((epoch.number, epoch.master_id))
        self.promoting = False
        self.caught_up = True
        self._audit("role.master", {"epoch": epoch.to_list(), "resequenced_outbox": resequenced})
        self.emit_browsers("master_changed", {"master_id": self.device_id, "epoch": epoch.to_list()})
        self.send_heartbeats(list(self.links.values()))  # tell them now, not at the next tick
        self._push_status_if_changed(force=True)

    def _catch_up_before_sequencing(self) -> None:
        """Pull entries that alive peers got from the old master and we missed.

        Only a peer whose journal *extends* ours is followed; a diverged peer (the other
        side of a healed partition) keeps its tail until it follows us, then drops it
        into its outbox and resubmits it. So the winning master's journal stays the base.
        """
        now = self.now_ms()
        my_gseq, _ = self.node.ledger.position()
        with self.lock:
            peers = sorted((p for p in self.core.peers(now) if p.alive and p.last_gseq > my_gseq),
                           key=lambda p: p.last_gseq, reverse=True)
        for p in peers:
            link = self._link_for(p.device_id)
            if link is None:
                continue
            try:
                result = pull(self.node.ledger, self._http(link.address), truncate=False,
                              **self._snapshot_args())
            except Diverged as exc:
                self._audit("sync.catch_up_skipped", {"from_device": p.device_id,
                                                      "reason": str(exc)})
                continue
            self._audit("sync.catch_up", {"from_device": p.device_id, **result})

    # ----------------------------------------------------------- sync
    def _snapshot_args(self) -> dict[str, Any]:
        return {"snapshot_dir": self.node.config.data_dir,
                "snapshot_min": self.node.config.snapshot_min}

    def _http(self, address: str) -> HttpPeer:
        peer = self._http_peers.get(address)
        if peer is None:
            peer = self._http_peers[address] = HttpPeer(address, self.secret, self.device_id)
        return peer

    def _link_for(self, device_id: int | None) -> PeerLink | None:
        if device_id is None:
            return None
        for link in self.links.values():
            if link.device_id == device_id and link.connected:
                return link
        return None

    def _refresh_master_link(self) -> None:
        with self.lock:
            master = self.core.master_id
            role = self.core.role
        if role == "master" or master is None or master == self.device_id:
            self._master_link = None
            return
        before = self._master_link
        self._master_link = self._link_for(master)
        if self._master_link is not None and self._master_link is not before:
            self.kick_sync("master link up")

    def _update_isolation(self) -> None:
        """A master that knows peers but hears none is alone in a partition.

        Its sales may end up in a losing tail, so they are taken as offline sales:
        never refused, reported as offline to the cashier, conflicts recorded later.
        """
        with self.lock:
            role = self.core.role
            peers = self.core.peers(self.now_ms())
        known = bool(self.links) or bool(peers)
        self._isolated = role == "master" and known and not any(p.alive for p in peers)

    def kick_sync(self, reason: str) -> None:
        threading.Thread(target=self.sync_round, kwargs={"reason": reason}, daemon=True,
                         name="sync-now").start()

    def sync_round(self, reason: str = "periodic") -> None:
        """Pull what we miss from the master, push our outbox to it.

        One round at a time; a request that arrives during a round (a new master, a
        link coming up) is not dropped: the round runs once more when it ends
        (`SyncRounds`).
        """
        self.rounds.request(reason)

    def _sync_once(self, reason: str) -> None:
        try:
            with self.lock:
                role, master = self.core.role, self.core.master_id
            if role == "master":
                if self.node.ledger.sequencing:
                    self.node.ledger.drain_outbox()
                return
            if master is None:
                return
            link = self._link_for(master)
            self.stats["total_syncs"] += 1
            self.stats["last_sync_time"] = int(time.time() * 1000)
            if link is None:
                raise SyncError(f"no link to master {master}")
            # Our losing tail (if any) goes back to the outbox, the outbox to the master,
            # and only then do we pull what we miss: after a partition every till's
            # resubmission reaches the master at once, instead of each till first
            # applying everything the tills before it resubmitted.
            http = self._http(link.address)
            dropped = drop_losing_tail(self.node.ledger, http)
            try:
                pushed = self.push_outbox(link)
            finally:
                # A push that fails (a master that stepped down, a timeout) still lets
                # the journal catch up; the round then counts as failed and is retried.
                result = pull(self.node.ledger, http, **self._snapshot_args())
            result["dropped"] += dropped
            self.caught_up = True
            self.stats["successful_syncs"] += 1
            self.stats["total_events_synced"] += result["pulled"] + pushed
            self._audit("sync.round", {"reason": reason, "master_id": master, "pushed": pushed,
                                       **result})
        except (SyncError, LinkDown) as exc:
            self.stats["failed_syncs"] += 1
            self.stats["last_error"] = str(exc)
            log.info("sync round failed: %s", exc)
            self._retry_soon()
        except Exception as exc:  # noqa: BLE001
            self.stats["failed_syncs"] += 1
            self.stats["last_error"] = str(exc)
            log.exception("sync round failed")
        finally:
            self._push_status_if_changed()

    def pull_audit(self) -> int:
        """Copy each live peer's own audit chain (verified link by link) into ours, and
        report a chain that no longer extends our copy (`audit.take_peer_chain`)."""
        from app.services.audit import chain_head, take_peer_chain

        added = 0
        for link in list(self.links.values()):
            if not link.connected or not link.device_id or link.device_id == self.device_id:
                continue
            head = self._peer_audit_seq.get(link.device_id)
            copied = self._copied_audit_seq.get(link.device_id)
            if head is not None and copied is not None and head == copied:
                continue  # its heartbeat says its chain ends where our copy does
            with self.node.db.read() as session:
                last = chain_head(session, link.device_id)
            ours = last["seq"] if last else 0
            # From our last entry on: the peer must still hold it, unchanged.
            try:
                page = self._http(link.address).get(
                    f"/api/sync/audit?device_id={link.device_id}&after={max(ours - 1, 0)}"
                    "&limit=2000")
            except SyncError as exc:
                log.debug("audit pull from %s failed: %s", link.address, exc)
                continue
            if not isinstance(page, dict):
                continue
            with self.node.db.write() as session:
                result = take_peer_chain(session, self.node.audit, link.device_id, page)
            added += result["added"]
            self._copied_audit_seq[link.device_id] = ours + result["added"]
            if result.get("recorded"):
                log.warning("audit chain of till %s no longer extends our copy (%s): "
                            "audit.diverged recorded", link.device_id, result["diverged"])
        return added

    def _retry_soon(self) -> None:
        """A sync round within a second (after a failed round or an offline sale), not at
        the next periodic run."""
        if not self.rounds.want_retry():
            return

        def run() -> None:
            self.rounds.retry_fired()  # cleared first: a failing round may ask again
            self.sync_round(reason="retry")

        timer = threading.Timer(1.0, run)
        timer.daemon = True
        timer.start()

    def push_outbox(self, link: PeerLink) -> int:
        """Submit our outbox to the master in HLC (causal) order, pages of `PUSH_PAGE`.

        Pages go out back to back: each submit waits for its acks, so the master has
        sequenced a page before it sees the next (a refund never overtakes its sale).
        The acked events stay in the outbox until the journal brings them back (the pull
        that follows in the sync round, or the master's pushes).
        """
        ledger = self.node.ledger
        pushed = 0
        ledger.drop_journaled_from_outbox()
        after: Event | None = None
        for _ in range(MAX_PUSH_CHUNKS):
            chunk = ledger.outbox_events(limit=PUSH_CHUNK, after=after)
            if not chunk:
                break
            after = chunk[-1]
            answers: list[str] = []
            try:
                self._push_pages(link, chunk, answers)
            finally:
                # One entry per chunk, after its pages: an audit write between pages would
                # wait for this till's write lock while it applies the journal coming back.
                if answers:
                    self._audit("sync.resubmitted", {"master_id": link.device_id,
                                                     "events": len(answers),
                                                     "acks": _count(answers)})
            pushed += len(answers)
            if len(chunk) < PUSH_CHUNK:
                break
        return pushed

    def _push_pages(self, link: PeerLink, chunk: list[Event], answers: list[str]) -> None:
        """Submit `chunk` in pages; collect each ack's status."""
        ledger = self.node.ledger
        for start in range(0, len(chunk), PUSH_PAGE):
            acks = link.submit([e.to_dict() for e in chunk[start:start + PUSH_PAGE]],
                               timeout=10.0)
            answers += [str(a.get("status")) for a in acks]
            ledger.forget_turned_down(acks)
            if any(a.get("status") == "not_master" for a in acks):
                raise LinkDown("master is not sequencing")
            if any(a.get("status") == "deferred" for a in acks):
                self._retry_soon()  # after the events they wait for are journaled

    def on_submit(self, envelope: Any, remote_addr: str) -> dict:
        body = self.open_envelope(envelope)
        if body is None:
            self.refuse(remote_addr, "unsigned submit")
            return {"body": "", "sig": ""}  # the submitter takes it for no answer
        events_raw = body.get("events") or []
        try:
            events = [Event.from_dict(e) for e in events_raw]
        except (KeyError, TypeError, ValueError):
            return self.seal({"acks": [{"status": "refused", "error": {
                "code": "VALIDATION_ERROR", "message": "malformed event", "status": 400}}
                for _ in events_raw]})
        for ev in events:
            if ev.type not in EVENT_TYPES:
                return self.seal({"acks": [{"status": "refused", "event_id": e.event_id, "error": {
                    "code": "VALIDATION_ERROR", "message": f"unknown event type {ev.type}",
                    "status": 400}} for e in events]})
        try:
            their_epoch = Epoch.from_list(body.get("epoch"))
        except ValueError:
            their_epoch = Epoch(0, 0)
        if their_epoch > self.core_epoch():
            return self.seal({"acks": [{"status": "not_master", "event_id": e.event_id}
                                       for e in events]})
        acks = self.node.ledger.sequence(events, from_device=body.get("from"))
        return self.seal({"acks": acks})

    def on_sync_update(self, envelope: Any, link: PeerLink) -> None:
        body = self.open_envelope(envelope)
        if body is None:
            self.refuse(link.address, "unsigned sync_update")
            return
        try:
            epoch = Epoch.from_list(body.get("epoch"))
        except ValueError:
            return
        with self.lock:
            mine, master = self.core.epoch, self.core.master_id
        if epoch < mine:
            self.refuse(f"device {link.device_id}", f"sync_update from stale epoch {epoch.to_list()}")
            return
        if epoch != mine or master != link.device_id:
            return  # not (yet) our master: the next heartbeat/sync sorts it out
        self.pushes.push(tuple(epoch.to_list()), body.get("entries") or [], body.get("prev"))

    def _receive_pushed(self, entries: list[dict], prev: dict | None) -> None:
        result = self.node.ledger.receive_entries(entries, prev=prev)
        if result.gap_after is not None or result.diverged:
            self.kick_sync("gap" if result.gap_after is not None else "diverged")

    def _broadcast_entries(self, entries: list[dict], prev: dict | None) -> None:
        epoch = self.core_epoch()
        self.emit_nodes("sync_update", self.seal({"epoch": epoch.to_list(), "entries": entries,
                                                  "prev": prev}))

    def broadcast_critical(self, data: dict) -> None:
        if self.node.ledger.sequencing:
            self.emit_nodes("critical_event", self.seal(data))

    # -------------------------------------------------------------- view
    def state(self) -> str:
        with self.lock:
            role, master = self.core.role, self.core.master_id
        if role == "master":
            if not self.node.ledger.sequencing:
                return "failover"
            return "offline" if self._isolated else "online"
        if master is not None and self._link_for(master) is not None:
            ledger = self.node.ledger
            if ledger.last_offline_ms is not None:
                if ledger.outbox_pending():
                    return "offline"  # our last sale could not reach the master
                ledger.last_offline_ms = None
            return "online"
        lost = self.master_lost_at
        if lost is not None and self.now_ms() - lost < 3 * self.cfg.failover_timeout_ms:
            return "failover"
        return "offline"

    def status(self) -> dict[str, Any]:
        now = self.now_ms()
        with self.lock:
            role, master, epoch = self.core.role, self.core.master_id, self.core.epoch
            peers = self.core.peers(now)
        addresses = {lk.device_id: lk.address for lk in self.links.values() if lk.device_id}
        last_gseq, _ = self.node.ledger.position()
        wall_offset = int(time.time() * 1000) - now
        nodes = [{"device_id": self.device_id, "address": f"{self.cfg.host}:{self.cfg.port}",
                  "alive": True, "last_seen": now + wall_offset, "role": role, "epoch": epoch.to_list(),
                  "last_gseq": last_gseq, "self": True}]
        for p in peers:
            nodes.append({"device_id": p.device_id, "address": addresses.get(p.device_id),
                          "alive": p.alive, "last_seen": p.last_seen + wall_offset if p.last_seen else None,
                          "role": p.role, "epoch": p.epoch.to_list(), "last_gseq": p.last_gseq,
                          "lag": max(last_gseq - p.last_gseq, 0) if role == "master" else None})
        nodes.sort(key=lambda n: n["device_id"])
        return {"device_id": self.device_id, "role": role, "master_id": master,
                "epoch": epoch.to_list(), "state": self.state(), "nodes": nodes,
                "sync": self.sync_status()}

    def sync_status(self) -> dict[str, Any]:
        last_gseq, _ = self.node.ledger.position()
        with self.lock:
            role, epoch = self.core.role, self.core.epoch
            master = self.core.master_id
            master_gseq = next((p.last_gseq for p in self.core.peers(self.now_ms())
                                if p.device_id == master), last_gseq)
        return {"role": role, "epoch": epoch.to_list(), "last_gseq": last_gseq,
                "outbox_pending": self.node.ledger.outbox_pending(),
                "lag": max(master_gseq - last_gseq, 0), **self.stats}

    def _push_status_if_changed(self, force: bool = False) -> None:
        with self.lock:
            key = (self.core.role, self.core.master_id, self.core.epoch)
        state = self.state()
        full = (*key, state)
        if force or full != self._last_state:
            self._last_state = full
            self.emit_browsers("cluster_status", {
                "state": state, "role": key[0], "master_id": key[1], "epoch": key[2].to_list(),
                "outbox_pending": self.node.ledger.outbox_pending()})

    def _audit(self, action: str, details: dict) -> None:
        try:
            with self.node.db.write() as session:
                self.node.audit.record(session, action, None, details)
        except Exception:  # noqa: BLE001 - auditing must not stop the cluster loop
            log.exception("audit %s failed", action)


def _count(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[str(item)] = out.get(str(item), 0) + 1
    return out
