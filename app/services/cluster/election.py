"""Pure election core: who is master, at which epoch.

Built like etcd's raft core: a deterministic state machine with no clock, sockets,
threads, randomness, logging or database. The I/O shell (``cluster.py``) feeds it
heartbeats, connection-closed notices and ticks, each with ``now`` in integer
milliseconds from a monotonic clock, and executes the returned actions in order.
Everything here can therefore be tested with a fake clock.

The rules, in short (DESIGN.md "Election and failover" and invariant 3):

* An epoch is the pair ``(number, master_id)``; an epoch names its master, so a
  heartbeat that merely *mentions* an epoch tells us who claimed it. A node only
  ever follows the highest epoch it has seen; its epoch never decreases and is
  persisted (``PersistEpoch``) before anything that depends on it is executed.
* A peer is alive while its last heartbeat is younger than the failover timeout and
  the transport has not reported its connection closed since. Schema-incompatible
  peers are never counted.
* With no alive master, the alive eligible node with the lowest id claims
  ``Epoch(highest number seen + 1, self)``. An alive master that a node already
  follows is kept (no second disruption) unless ``reclaim == "auto"``.
* When masters meet (partition heal), the lower id wins at an epoch above both.
* Heartbeats go leader -> followers, as in Raft (``wants_heartbeat``): a master beats
  every peer and lists in its heartbeat the peers it counts alive (``members``); a
  follower beats nobody while its master is heard, it only answers. Its view of the
  other followers is the master's word (``vouched``), so when the master dies the
  lowest of them claims and the others wait for it. A follower whose master has been
  silent for ``probe_after_ms``, and a node without a master, beat the peers with a
  lower id (the probe), so their liveness is first-hand again before the failover
  timeout runs out; a higher id probes us and learns of us from our answer.
* A node whose inputs stop for longer than the failover timeout (SIGSTOP, a hung PC)
  is *returning* for one more failover timeout: it claims nothing, and if it was master and
  hears of a higher epoch it steps down and follows instead of taking the role back
  (DESIGN: a node that comes back joins as a client). A master that kept running
  still wins a partition heal as above.

Shell contract: execute actions in order; ``PersistEpoch`` must be durable before
the actions after it run, and ``heartbeat()`` must not be sent between receiving
actions and executing their ``PersistEpoch`` (take the same lock), otherwise a
crash could let a claim escape that the restarted node does not remember.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "REFUSE_DUPLICATE_ID",
    "REFUSE_MALFORMED_CLAIM",
    "REFUSE_SCHEMA",
    "REFUSE_STALE_EPOCH",
    "ROLE_CLIENT",
    "ROLE_MASTER",
    "Action",
    "BecomeMaster",
    "ElectionCore",
    "Epoch",
    "Follow",
    "Heartbeat",
    "MasterLost",
    "PeerView",
    "PersistEpoch",
    "Refused",
    "StepDown",
]

ROLE_MASTER = "master"
ROLE_CLIENT = "client"
_ROLES = (ROLE_MASTER, ROLE_CLIENT)
_RECLAIM_MODES = ("never", "auto")

# Stable reason codes carried by ``Refused`` (the shell writes them to the audit log).
REFUSE_SCHEMA = "schema_mismatch"
REFUSE_STALE_EPOCH = "stale_epoch"
REFUSE_MALFORMED_CLAIM = "malformed_claim"
REFUSE_DUPLICATE_ID = "duplicate_device_id"


def _require(ok: bool, message: str) -> None:
    """One exception type for every wire-format problem, so the shell catches one."""
    if not ok:
        raise ValueError(message)


def _is_int(v: object) -> bool:
    """JSON ints only: ``bool`` is an ``int`` subclass but never a valid number here."""
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True, order=True)
class Epoch:
    """A master's term, ordered as ``(number, master_id)``.

    Without a quorum two sides of a partition may pick the same number, but never
    the same pair, because the pair contains the claimant's (unique) device id.
    ``Epoch(0, 0)`` means "none yet".
    """

    number: int
    master_id: int

    def to_list(self) -> list[int]:
        return [self.number, self.master_id]

    @classmethod
    def from_list(cls, v: object) -> Epoch:
        """Parse ``[number, master_id]``; raise ``ValueError`` on anything else."""
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise ValueError(f"epoch must be [number, master_id], got {v!r}")
        number, master_id = v
        _require(
            _is_int(number) and _is_int(master_id) and number >= 0 and master_id >= 0,
            f"epoch parts must be non-negative integers, got {v!r}",
        )
        return cls(number, master_id)


NO_EPOCH = Epoch(0, 0)


@dataclass(frozen=True)
class Heartbeat:
    """What a node tells every peer each heartbeat interval."""

    device_id: int
    epoch: Epoch  # highest epoch the sender follows/holds
    role: str  # "master" | "client"
    master_id: int | None  # whom the sender follows (itself if master), None if none
    last_gseq: int  # sender's journal position
    last_epoch: Epoch  # epoch of the sender's last journal entry (log freshness)
    schema_version: int
    eligible: bool  # sender is caught up and may become master
    # A master's word on its followers: ``(device_id, eligible)`` of every peer it counts
    # alive. Empty from a client. Optional on the wire (older tills neither send nor
    # read it).
    members: tuple[tuple[int, bool], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "epoch": self.epoch.to_list(),
            "role": self.role,
            "master_id": self.master_id,
            "last_gseq": self.last_gseq,
            "last_epoch": self.last_epoch.to_list(),
            "schema_version": self.schema_version,
            "eligible": self.eligible,
            "members": [[i, e] for i, e in self.members],
        }

    @classmethod
    def from_dict(cls, d: object) -> Heartbeat:
        """Parse a wire dict; raise ``ValueError`` so the shell can refuse garbage."""
        if not isinstance(d, dict):
            raise ValueError("heartbeat must be an object")
        try:
            device_id = d["device_id"]
            role = d["role"]
            master_id = d["master_id"]
            last_gseq = d["last_gseq"]
            schema_version = d["schema_version"]
            eligible = d["eligible"]
            epoch = Epoch.from_list(d["epoch"])
            last_epoch = Epoch.from_list(d["last_epoch"])
        except KeyError as exc:
            raise ValueError(f"heartbeat lacks field {exc.args[0]!r}") from None
        _require(_is_int(device_id) and device_id > 0, "device_id must be a positive integer")
        _require(role in _ROLES, f"role must be one of {_ROLES}")
        _require(
            master_id is None or (_is_int(master_id) and master_id > 0),
            "master_id must be a positive integer or null",
        )
        _require(_is_int(last_gseq) and last_gseq >= 0, "last_gseq must be a non-negative integer")
        _require(_is_int(schema_version), "schema_version must be an integer")
        _require(isinstance(eligible, bool), "eligible must be a boolean")
        members = _parse_members(d.get("members", []))
        return cls(device_id, epoch, role, master_id, last_gseq, last_epoch, schema_version, eligible,
                   members)


def _parse_members(v: object) -> tuple[tuple[int, bool], ...]:
    if not isinstance(v, list) or len(v) > 1024:
        raise ValueError("members must be a list (of at most 1024)")
    out = []
    for m in v:
        _require(
            isinstance(m, list) and len(m) == 2 and _is_int(m[0]) and m[0] > 0 and isinstance(m[1], bool),
            f"a member must be [device_id, eligible], got {m!r}",
        )
        out.append((m[0], m[1]))
    return tuple(out)


# ---------------------------------------------------------------- actions


@dataclass(frozen=True)
class PersistEpoch:
    """Durably store ``epoch`` before executing any action after this one."""

    epoch: Epoch


@dataclass(frozen=True)
class BecomeMaster:
    """Start (or restart) sequencing under ``epoch``; a new term each time it appears."""

    epoch: Epoch


@dataclass(frozen=True)
class StepDown:
    """Stop sequencing at once: ``epoch`` held by ``master_id`` outranks us."""

    epoch: Epoch
    master_id: int | None


@dataclass(frozen=True)
class Follow:
    """Our master is now ``master_id`` at ``epoch`` (also sent when only the epoch moved)."""

    master_id: int
    epoch: Epoch


@dataclass(frozen=True)
class MasterLost:
    """The master we followed is gone or fenced; no master known (go offline)."""

    previous_master_id: int


@dataclass(frozen=True)
class Refused:
    """A heartbeat (or its master claim) was refused; the shell audits it once."""

    device_id: int
    reason: str


Action = PersistEpoch | BecomeMaster | StepDown | Follow | MasterLost | Refused


@dataclass(frozen=True)
class PeerView:
    """Read-only snapshot of one peer, for the shell, the status page and catch-up."""

    device_id: int
    alive: bool  # counted by the election: fresh, not reported down, schema-compatible
    last_seen: int  # ms (same clock as ``now``): its last heartbeat, or the master's word on it
    role: str
    epoch: Epoch
    master_id: int | None
    last_gseq: int
    last_epoch: Epoch
    schema_version: int
    eligible: bool
    compatible: bool  # same schema_version as ours


@dataclass
class _Peer:
    hb: Heartbeat
    last_seen: int  # its own heartbeat (first-hand)
    down: bool = False  # transport reported the connection closed after ``hb``
    down_at: int = 0
    # The master we follow listed it alive at ``vouched_at`` (second-hand). A peer
    # reported down is revived by its own heartbeat, or by the master's word given
    # ``probe_after_ms`` after the close (a word already in flight does not count).
    vouched_at: int | None = None
    vouched_eligible: bool = False

    def eligible(self) -> bool:
        if self.vouched_at is not None and self.vouched_at > self.last_seen:
            return self.vouched_eligible
        return self.hb.eligible


# ---------------------------------------------------------------- the core


class ElectionCore:
    """Election state machine for one node. Not thread-safe: the shell serializes calls."""

    def __init__(
        self,
        device_id: int,
        *,
        schema_version: int,
        failover_timeout_ms: int = 2000,
        reclaim: str = "never",
        reclaim_delay_ms: int = 30000,
        epoch: Epoch = NO_EPOCH,
        now: int = 0,
        startup_grace_ms: int | None = None,
        probe_after_ms: int | None = None,
    ) -> None:
        if not _is_int(device_id) or device_id <= 0:
            raise ValueError("device_id must be a positive integer (0 means 'none')")
        if reclaim not in _RECLAIM_MODES:
            raise ValueError(f"reclaim must be one of {_RECLAIM_MODES}")
        if failover_timeout_ms <= 0 or reclaim_delay_ms < 0:
            raise ValueError("failover_timeout_ms must be > 0 and reclaim_delay_ms >= 0")
        self.device_id = device_id
        self.schema_version = schema_version
        self.failover_timeout_ms = failover_timeout_ms
        self.reclaim = reclaim
        self.reclaim_delay_ms = reclaim_delay_ms
        # A fresh or returning node listens before claiming so it learns of an
        # existing master first instead of disrupting it.
        grace = failover_timeout_ms if startup_grace_ms is None else startup_grace_ms
        self._grace_ms = max(0, grace)
        self._claim_not_before = now + self._grace_ms
        # A follower whose master has been silent this long probes the lower ids.
        self.probe_after_ms = failover_timeout_ms // 2 if probe_after_ms is None else probe_after_ms
        # Inputs arrive at least every heartbeat interval (the shell's tick); a gap over
        # the failover timeout means this process stood still (SIGSTOP): returning.
        self._last_input: int | None = None
        self._returning_until: int | None = None
        self._now = now  # the latest ``now`` of any input (for ``heartbeat()``)

        # Always start as a client, even if the persisted epoch is our own claim:
        # the journal tail of that term may have lost in the meantime.
        self.role: str = ROLE_CLIENT
        self.master_id: int | None = None
        self.epoch: Epoch = epoch  # persisted; the fencing level; never decreases
        self._seen: Epoch = epoch  # highest epoch seen in any heartbeat (or held)
        self._max_number: int = epoch.number  # highest epoch number seen anywhere

        self._last_gseq = 0
        self._last_epoch = NO_EPOCH
        self._eligible = True
        # Since when we have been eligible while following a higher-id master.
        self._reclaim_since: int | None = None

        self._peers: dict[int, _Peer] = {}
        # Refusals are reported once; one remembered key per peer keeps memory bounded
        # (a peer's claims only ever grow, so it never returns to an old key).
        self._refused_schema: dict[int, int] = {}
        self._refused_stale: dict[int, Epoch] = {}
        self._refused_malformed: dict[int, Epoch] = {}
        self._refused_duplicate = False

    # ------------------------------------------------------------ inputs

    def set_local_state(self, *, last_gseq: int, last_epoch: Epoch, eligible: bool) -> None:
        """The shell reports our journal position and whether we are caught up.

        A returning node should report ``eligible=False`` until it has re-synced
        (DESIGN: "only then counts as eligible"); eligibility gates claiming and
        reclaiming, it never demotes a sitting master.
        """
        self._last_gseq = last_gseq
        self._last_epoch = last_epoch
        self._max_number = max(self._max_number, last_epoch.number)
        if not eligible:
            self._reclaim_since = None  # reclaim needs *continuous* eligibility
        self._eligible = eligible

    def on_heartbeat(self, hb: Heartbeat, now: int) -> list[Action]:
        """A peer's heartbeat arrived (sent to us, or its answer to ours)."""
        self._input(now)
        out: list[Action] = []
        if hb.device_id == self.device_id:
            # Two tills configured with the same id: never count it, say so once.
            if not self._refused_duplicate:
                self._refused_duplicate = True
                out.append(Refused(hb.device_id, REFUSE_DUPLICATE_ID))
            return out

        compatible = hb.schema_version == self.schema_version
        if not compatible:
            if self._refused_schema.get(hb.device_id) != hb.schema_version:
                self._refused_schema[hb.device_id] = hb.schema_version
                out.append(Refused(hb.device_id, REFUSE_SCHEMA))
            # Keep it for the status page; it is never counted. It may have been
            # compatible before (restarted on a new version), so re-evaluate.
            self._peers[hb.device_id] = _Peer(hb, now)
            out += self._reconcile(now)
            return out
        self._refused_schema.pop(hb.device_id, None)

        learn_epoch = True
        if hb.role == ROLE_MASTER:
            if hb.epoch.master_id != hb.device_id or hb.master_id != hb.device_id:
                # A master claim must name its sender; anything else is a bug or forgery.
                learn_epoch = False
                if self._refused_malformed.get(hb.device_id) != hb.epoch:
                    self._refused_malformed[hb.device_id] = hb.epoch
                    out.append(Refused(hb.device_id, REFUSE_MALFORMED_CLAIM))
            elif hb.epoch < self.epoch and self._refused_stale.get(hb.device_id) != hb.epoch:
                # Fenced: the sender still counts as alive (a returning node must be
                # seen), but its claim is ignored. It learns our epoch from our beats.
                self._refused_stale[hb.device_id] = hb.epoch
                out.append(Refused(hb.device_id, REFUSE_STALE_EPOCH))

        if learn_epoch:
            self._seen = max(self._seen, hb.epoch)
            self._max_number = max(self._max_number, hb.epoch.number)
        self._max_number = max(self._max_number, hb.last_epoch.number)
        self._peers[hb.device_id] = _Peer(hb, now)
        out += self._reconcile(now)
        if self.role == ROLE_CLIENT and hb.role == ROLE_MASTER and hb.device_id == self.master_id:
            self._take_members(hb, now)
        return out

    def _take_members(self, hb: Heartbeat, now: int) -> None:
        """The master we follow vouches for the peers it hears: they count as alive."""
        for device_id, eligible in hb.members:
            if device_id in (self.device_id, hb.device_id):
                continue
            p = self._peers.get(device_id)
            if p is None:
                # Never heard first-hand (it came up while we only listened to the
                # master): known by the master's word alone, claiming nothing.
                placeholder = Heartbeat(device_id, NO_EPOCH, ROLE_CLIENT, None, 0, NO_EPOCH,
                                        self.schema_version, eligible)
                p = self._peers[device_id] = _Peer(placeholder, now - self.failover_timeout_ms)
            if p.down:
                if now - p.down_at < self.probe_after_ms:
                    continue
                p.down = False
            p.vouched_at = now
            p.vouched_eligible = eligible

    def on_peer_down(self, device_id: int, now: int) -> list[Action]:
        """The transport saw the peer's connection close (kill -9 sends a FIN at once).

        Treat the peer as dead now instead of waiting for the failover timeout; its
        next heartbeat revives it.
        """
        self._input(now)
        peer = self._peers.get(device_id)
        if peer is not None:
            peer.down = True
            peer.down_at = now
            peer.vouched_at = None
        return self._reconcile(now)

    def tick(self, now: int) -> list[Action]:
        """Time passed: expire peers, end the startup grace, run elections."""
        self._input(now)
        return self._reconcile(now)

    def _input(self, now: int) -> None:
        """Notice a stall: no input for longer than the failover timeout.

        The others have had time to elect a new master; until one startup grace has
        passed we listen before claiming, and a master that hears of a higher epoch
        follows it instead of taking the role back.
        """
        if self._last_input is not None and now - self._last_input > self.failover_timeout_ms:
            window = max(self._grace_ms, self.failover_timeout_ms)
            self._returning_until = now + window
            self._claim_not_before = max(self._claim_not_before, now + window)
        self._last_input = max(now, self._last_input or now)
        self._now = max(self._now, now)

    def returning(self, now: int) -> bool:
        """Within one failover timeout (or startup grace) after a stall (``_input``)."""
        return self._returning_until is not None and now < self._returning_until

    # ------------------------------------------------------------ outputs

    def heartbeat(self, now: int | None = None) -> Heartbeat:
        """What this node sends (or answers) now; a master lists the peers it counts alive.

        ``now`` defaults to the latest input's time.
        """
        now = self._now if now is None else now
        members: tuple[tuple[int, bool], ...] = ()
        if self.role == ROLE_MASTER:
            members = tuple(
                (pid, self._peers[pid].eligible()) for pid in sorted(self._peers) if self._alive(pid, now)
            )
        return Heartbeat(
            device_id=self.device_id,
            epoch=self.epoch,
            role=self.role,
            master_id=self.device_id if self.role == ROLE_MASTER else self.master_id,
            last_gseq=self._last_gseq,
            last_epoch=self._last_epoch,
            schema_version=self.schema_version,
            eligible=self._eligible,
            members=members,
        )

    def wants_heartbeat(self, device_id: int | None, now: int) -> bool:
        """Should the shell send our heartbeat to this peer now? (Raft-style fan-out.)

        A master beats every peer; a follower beats nobody while its master is heard
        (it answers the master's beats). With no master, or a master silent for
        ``probe_after_ms``, it probes the peers with a lower id than its own: only
        they can be the successor it must not pre-empt, their answers make their
        liveness first-hand again before the failover timeout decides, and a higher id
        learns of us from its own probe. A peer of unknown id is always beaten (that is
        how we learn who it is).
        """
        if device_id is None or self.role == ROLE_MASTER:
            return True
        if self.master_id is not None:
            master = self._peers.get(self.master_id)
            if master is not None and not master.down and now - master.last_seen < self.probe_after_ms:
                return False
        return device_id < self.device_id

    def peers(self, now: int) -> list[PeerView]:
        """Every peer ever heard from (self excluded), sorted by device id."""
        views = []
        for pid in sorted(self._peers):
            p = self._peers[pid]
            hb = p.hb
            views.append(
                PeerView(
                    device_id=pid,
                    alive=self._alive(pid, now),
                    last_seen=max(p.last_seen, p.vouched_at or p.last_seen),
                    role=hb.role,
                    epoch=hb.epoch,
                    master_id=hb.master_id,
                    last_gseq=hb.last_gseq,
                    last_epoch=hb.last_epoch,
                    schema_version=hb.schema_version,
                    eligible=p.eligible(),
                    compatible=hb.schema_version == self.schema_version,
                )
            )
        return views

    def alive_ids(self, now: int) -> list[int]:
        """Sorted ids of the nodes the election counts as alive, self included."""
        return sorted([self.device_id, *(pid for pid in self._peers if self._alive(pid, now))])

    # ------------------------------------------------------------ internals

    def _alive(self, device_id: int, now: int) -> bool:
        if device_id == self.device_id:
            return True
        p = self._peers.get(device_id)
        if p is None or p.down or p.hb.schema_version != self.schema_version:
            return False
        if now - p.last_seen < self.failover_timeout_ms:
            return True
        return p.vouched_at is not None and now - p.vouched_at < self.failover_timeout_ms

    def _lowest_alive_eligible(self, now: int) -> int | None:
        ids = [pid for pid, p in self._peers.items() if p.eligible() and self._alive(pid, now)]
        if self._eligible:
            ids.append(self.device_id)
        return min(ids, default=None)

    def _claim_stands(self, master_id: int, epoch: Epoch, now: int) -> bool:
        """Is ``master_id`` (the claimant named by ``epoch``) alive and still master at it?

        The epoch itself proves the claim was made. Only the claimant's own heartbeat
        can refute it, and only when that heartbeat is at least as new: same epoch
        but role client means it restarted or stepped down. An older heartbeat (lower
        epoch) merely predates the claim, so a second-hand report is trusted; this
        avoids a needless MasterLost when a client's beat outruns the new master's.
        """
        if epoch.number <= 0 or master_id == self.device_id or not self._alive(master_id, now):
            return False
        hb = self._peers[master_id].hb
        if hb.epoch > epoch:
            return False
        return not (hb.epoch == epoch and hb.role != ROLE_MASTER)

    def _set_epoch(self, epoch: Epoch, out: list[Action]) -> None:
        if epoch > self.epoch:
            self.epoch = epoch
            out.append(PersistEpoch(epoch))
        self._seen = max(self._seen, self.epoch)

    def _claim(self, out: list[Action]) -> None:
        """Become master at a brand-new epoch above every number we have seen.

        Never re-uses a pair: the number strictly grows per node and the pair holds
        our id, so no other node can produce it.
        """
        new = Epoch(max(self._max_number, self.epoch.number) + 1, self.device_id)
        self._max_number = new.number
        self._set_epoch(new, out)
        self.role = ROLE_MASTER
        self.master_id = self.device_id
        self._reclaim_since = None
        out.append(BecomeMaster(new))

    def _reconcile(self, now: int) -> list[Action]:
        """Bring role/master/epoch in line with what we currently know."""
        out: list[Action] = []
        if self.role == ROLE_MASTER:
            self._reconcile_master(now, out)
        else:
            self._reconcile_client(now, out)
        return out

    def _reconcile_master(self, now: int, out: list[Action]) -> None:
        seen = self._seen
        if seen <= self.epoch:
            return  # nothing outranks us; a master is kept even if a lower id returns
        winner = seen.master_id
        if winner < self.device_id and self._claim_stands(winner, seen, now):
            # A lower-id master holds a higher epoch and is alive: it wins. Stop
            # sequencing first; persisting the epoch may wait for the disk.
            self.role = ROLE_CLIENT
            self.master_id = winner
            self._reclaim_since = None
            out.append(StepDown(seen, winner))
            self._set_epoch(seen, out)
            out.append(Follow(winner, seen))
        elif self.returning(now):
            # We stood still and the others moved on: a node that comes back joins as a
            # client (reclaim is a setting, not a side effect of a pause). Follow the
            # newer master if we can see it, else listen until the grace is over.
            stands = self._claim_stands(winner, seen, now)
            self.role = ROLE_CLIENT
            self.master_id = None
            self._reclaim_since = None
            out.append(StepDown(seen, winner if stands else None))
            self._reconcile_client(now, out)
        else:
            # Either a higher-id master (partition heal: the lower id wins at an
            # epoch above both) or an epoch we only heard of second-hand whose master
            # we cannot see. Either way our term is fenced: start a new, higher one.
            self._claim(out)

    def _reconcile_client(self, now: int, out: list[Action]) -> None:
        previous = self.master_id
        previous_epoch = self.epoch
        self._set_epoch(self._seen, out)  # a client always adopts the highest epoch seen
        target = self.epoch.master_id
        if self._claim_stands(target, self.epoch, now):
            if (target, self.epoch) != (previous, previous_epoch):
                out.append(Follow(target, self.epoch))
            if target != previous:
                self._reclaim_since = None
            self.master_id = target
            self._maybe_reclaim(target, now, out)
            return

        if previous is not None:
            out.append(MasterLost(previous))
            self.master_id = None
        self._reclaim_since = None
        # No extra wait: the failover timeout (or the FIN) already proved the loss.
        if (
            now >= self._claim_not_before
            and self._eligible
            and self._lowest_alive_eligible(now) == self.device_id
        ):
            self._claim(out)

    def _maybe_reclaim(self, master_id: int, now: int, out: list[Action]) -> None:
        """reclaim="auto": orderly handover to the lower id once it has proved stable.

        We claim a new epoch while the old master still runs; it steps down on our
        next heartbeat (higher epoch, lower id), so the overlap is one beat at most
        and every node fences the old term. Only the lowest alive eligible node
        reclaims, so two returning low ids do not both grab the role.
        """
        if not (self.reclaim == "auto" and self._eligible and self.device_id < master_id):
            self._reclaim_since = None
            return
        if self._reclaim_since is None:
            self._reclaim_since = now
            if self.reclaim_delay_ms > 0:
                return
        if (
            now - self._reclaim_since >= self.reclaim_delay_ms
            and self._lowest_alive_eligible(now) == self.device_id
        ):
            self._claim(out)
