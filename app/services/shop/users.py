"""Users, PIN login, sessions and the wrong-PIN back-off.

PINs are hashed with scrypt keyed by the shop's pepper (`app/utils/pin_hash.py`): the
database alone holds nothing a PIN can be checked against. A PIN is checked with no
database lock held (a check costs ~45 ms of CPU). Wrong PINs are journaled
(`user.login_failed`), so every till counts every till's failures; the back-off is
exponential and capped (`lockout.py`), and an admin can unlock a user.

Sessions are node-local: a browser talks to its own till; only the token's sha256 is
stored, so a copied database holds no live token. A PIN reset, deactivation or demotion
ends the user's sessions on every till (the journal applier, `apply._user_update`).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import weakref
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from app.models import AuthSession, JournalEntry, LoginFailure, OutboxEvent, User
from app.models.db import driver
from app.services.journal.state_machine import Refused
from app.services.node import Node
from app.services.shop import lockout
from app.services.shop.commands import UserCreate, UserLoginFailed, UserUnlock, UserUpdate
from app.services.shop.submit import AuditNote, submit
from app.utils import pin_hash
from app.utils.errors import (
    ApiError,
    Conflict,
    Forbidden,
    Locked,
    NotFound,
    Unauthorized,
    ValidationError,
)

log = logging.getLogger(__name__)

ROLES = ("cashier", "manager", "admin")
ROLE_RANK = {role: i for i, role in enumerate(ROLES, start=1)}
# Shortest PIN per role when Config.strong_pins_for_managers is on (the default).
STRONG_PIN_DIGITS = 6


def hash_pin(pepper: bytes, pin: str) -> str:
    """A new scrypt hash of `pin`, keyed with the shop's pepper (`node.pepper`)."""
    return pin_hash.hash_pin(pepper, pin)


def min_pin_digits(role: str | None, strong_for_managers: bool = True) -> int:
    if strong_for_managers and role in ("manager", "admin"):
        return STRONG_PIN_DIGITS
    return 4


def check_pin_format(pin: str, role: str | None = None, strong_for_managers: bool = True) -> None:
    if not (isinstance(pin, str) and pin.isdigit() and 4 <= len(pin) <= 8):
        raise ValidationError("a PIN is 4 to 8 digits", {"field": "pin"})
    need = min_pin_digits(role, strong_for_managers)
    if len(pin) < need:
        raise ValidationError(f"{'an' if role == 'admin' else 'a'} {role}'s PIN has at least "
                              f"{need} digits",
                              {"field": "pin", "min_digits": need, "role": role},
                              code="PIN_TOO_SHORT")


def user_dict(user: User) -> dict[str, Any]:
    return {"username": user.username, "display_name": user.display_name, "role": user.role,
            "active": user.active}


def list_users(node: Node, include_inactive: bool = False) -> list[dict[str, Any]]:
    with node.db.read() as session:
        query = select(User).order_by(User.display_name)
        if not include_inactive:
            query = query.where(User.active.is_(True))
        return [user_dict(u) for u in session.scalars(query)]


def list_users_for_admin(node: Node) -> list[dict[str, Any]]:
    """Every user, inactive ones too, with their wrong-PIN state (the Users page):
    `failures` counted now and `retry_after_ms` (0: a PIN is checked at once)."""
    now = node.clock()
    with node.db.read() as session:
        users = [user_dict(u) for u in session.scalars(select(User).order_by(User.display_name))]
        rows = session.execute(select(LoginFailure.username, LoginFailure.kind, LoginFailure.at_ms)
                               .where(LoginFailure.at_ms > now - lockout.WINDOW_MS)).all()
    failed: dict[str, list[int]] = {}
    cleared: dict[str, int] = {}
    for username, kind, at in rows:
        if kind == "cleared":
            cleared[username] = max(cleared.get(username, 0), at)
        else:
            failed.setdefault(username, []).append(at)
    for user in users:
        times, clear = failed.get(user["username"], []), cleared.get(user["username"], 0)
        user["failures"] = len(lockout.counted(times, now, clear))
        user["retry_after_ms"] = lockout.retry_after_ms(times, now, clear)
    return users


@dataclass
class _Verified:
    """A PIN that matched: the user as read, and what the check saw."""

    user: dict[str, Any]
    pin_hash: str
    version: int
    failures: int  # counted failures before this success


def failure_state(session: Session, username: str, now: int) -> tuple[list[int], int]:
    """(times of this user's journaled wrong PINs, time of the last clear) in the window."""
    rows = session.execute(select(LoginFailure.kind, LoginFailure.at_ms).where(
        LoginFailure.username == username,
        LoginFailure.at_ms > now - lockout.WINDOW_MS)).all()
    cleared = max((at for kind, at in rows if kind == "cleared"), default=0)
    return [at for kind, at in rows if kind == "failed"], cleared


def _journal(node: Node, command: UserLoginFailed | UserUnlock | UserUpdate, user: str | None,
             audit: AuditNote | None = None, *, offline_ok: bool = True,
             base_version: int | None = None) -> bool:
    """Journal one login event; a login never fails because the journal could not take it
    (an unreachable master, a till of an older release): the audit entry is kept here."""
    try:
        submit(node, command, user, audit=audit, offline_ok=offline_ok,
               base_version=base_version)
        return True
    except (ApiError, Refused) as exc:
        log.warning("%s for %s not journaled: %s", command.TYPE, command.username, exc.message)
        if audit is not None:
            with node.db.write() as session:
                node.audit.record(session, audit.action, user, {**audit.details, "journaled": False})
        return False


def _check_pin(node: Node, username: str, pin: str, purpose: str) -> _Verified:
    """Verify a PIN under the back-off; journal and audit failures.

    The user and their failures are read, the hash is checked with no lock held, then
    the outcome is written (a failure is a journaled `user.login_failed`).
    """
    now = node.clock()
    with node.db.read() as session:
        row = session.get(User, username)
        user = user_dict(row) if row is not None else None
        stored, version = (row.pin_hash, row.version) if row is not None else ("", 0)
        times, cleared = failure_state(session, username, now)
    failures = len(lockout.counted(times, now, cleared))
    wait_ms = lockout.retry_after_ms(times, now, cleared)
    if wait_ms > 0:
        # Not checked, not counted: waiting out the back-off is the only way on.
        with node.db.write() as session:
            node.audit.record(session, "login.locked", username, {
                "purpose": purpose, "failures": failures, "retry_after_ms": wait_ms})
        raise Locked(wait_ms / 1000)
    if user is not None and user["active"] and pin_hash.verify_pin(node.pepper, stored, pin):
        return _Verified(user, stored, version, failures)
    failures += 1
    details = {"purpose": purpose, "attempts": failures, "device_id": node.device_id,
               "locked": lockout.delay_ms(failures) > 0}
    if user is not None:
        _journal(node, UserLoginFailed(username=username, purpose=purpose,
                                       device_id=node.device_id, created_ms=now),
                 username, AuditNote("login.failed", details))
    else:  # no such user: nobody to lock out, nothing to journal
        with node.db.write() as session:
            node.audit.record(session, "login.failed", username, details)
    wait_ms = lockout.delay_ms(failures)
    if wait_ms > 0:
        raise Locked(wait_ms / 1000, f"wrong username or PIN; too many failed attempts, "
                                     f"try again in {-(-wait_ms // 1000)} s")
    raise Unauthorized("wrong username or PIN",
                       {"attempts_left": lockout.attempts_left(failures)})


def _after_success(node: Node, username: str, pin: str, verified: _Verified,
                   purpose: str) -> None:
    """Clear the user's failures on every till, and move an old hash to the current KDF."""
    if verified.failures:
        _journal(node, UserUnlock(username=username, reason=purpose, created_ms=node.clock()),
                 username)
    if pin_hash.needs_upgrade(verified.pin_hash):
        # Only if nothing changed the user since the check (the applier compares versions):
        # never puts back an old PIN over a reset made meanwhile.
        _journal(node, UserUpdate(username=username, rehash=True,
                                  changes={"pin_hash": hash_pin(node.pepper, pin)}),
                 username, AuditNote("user.pin_rehashed", {"username": username}),
                 offline_ok=False, base_version=verified.version)


# One PIN check per user at a time on a till: parallel requests cannot all be checked
# against the same back-off state and so multiply the guesses it allows.
_in_flight: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Database -> set[str]


@contextmanager
def _one_check_per_user(node: Node, username: str) -> Iterator[None]:
    with _client_lock:
        busy = _in_flight.setdefault(node.db, set())
        if username in busy:
            raise ApiError("TOO_MANY_REQUESTS", "a PIN for this user is being checked; try "
                                                "again in a moment", 429, {"retry_after_s": 1})
        busy.add(username)
    try:
        yield
    finally:
        with _client_lock:
            busy.discard(username)


# Beyond the per-user lockout: failed logins per client address (a till's browser, a
# script) within a window. Guessing PINs across many usernames, or flooding unknown
# ones (each leaves a login_failures row), is answered 429 before any PIN is checked.
CLIENT_WINDOW_MS = 60_000
CLIENT_MAX_FAILURES = 20
_client_failures: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Database -> dict
_client_lock = threading.Lock()


def _client_retry_after_ms(node: Node, client: str, now: int) -> int:
    with _client_lock:
        seen = _client_failures.setdefault(node.db, {}).get(client)
        if not seen:
            return 0
        while seen and seen[0] <= now - CLIENT_WINDOW_MS:
            seen.popleft()
        if len(seen) < CLIENT_MAX_FAILURES:
            return 0
        return seen[len(seen) - CLIENT_MAX_FAILURES] + CLIENT_WINDOW_MS - now


def _note_client_failure(node: Node, client: str, now: int) -> None:
    with _client_lock:
        clients = _client_failures.setdefault(node.db, {})
        if len(clients) > 10_000:  # forget the oldest clients rather than grow without bound
            for key in list(clients)[:5_000]:
                del clients[key]
        clients.setdefault(client, deque()).append(now)


def _refuse_busy_client(node: Node, client: str | None) -> None:
    if client is None:
        return
    wait_ms = _client_retry_after_ms(node, client, node.clock())
    if wait_ms > 0:
        seconds = -(-wait_ms // 1000)
        raise ApiError("TOO_MANY_REQUESTS", f"too many failed PINs from this device, try "
                                            f"again in {seconds} s", 429,
                       {"retry_after_s": seconds})


def _checked(node: Node, username: str, pin: str, purpose: str, client: str | None
             ) -> _Verified:
    _refuse_busy_client(node, client)
    try:
        return _check_pin(node, username, pin, purpose)
    except (Unauthorized, Locked):
        if client is not None:
            _note_client_failure(node, client, node.clock())
        raise


def login(node: Node, username: str, pin: str, client: str | None = None) -> dict[str, Any]:
    with _one_check_per_user(node, username):
        verified = _checked(node, username, pin, "login", client)
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        now = node.clock()
        expires = now + node.config.session_ttl * 1000
        with node.db.write() as session:
            current = session.get(User, username)
            if current is None or not current.active or current.pin_hash != verified.pin_hash:
                # Reset or deactivated while the PIN was being checked: that PIN is gone.
                raise Unauthorized("wrong username or PIN", {"attempts_left": 0})
            session.add(AuthSession(token_hash=_digest(token), username=username, csrf_token=csrf,
                                    created_ms=now, expires_ms=expires, revoked=False,
                                    user_version=current.version))
            node.audit.record(session, "login.success", username, {"role": verified.user["role"]})
        _after_success(node, username, pin, verified, "login")
    return {"token": token, "csrf_token": csrf, "expires_at": expires, "user": verified.user}


def approve(node: Node, username: str, pin: str, min_role: str = "manager",
            client: str | None = None) -> dict[str, Any]:
    """A manager's PIN typed at a till to approve one action (discount, refund, void).

    The same back-off and per-device limit as a login: an approval box is no way around them.
    """
    with _one_check_per_user(node, username):
        verified = _checked(node, username, pin, "approval", client)
        _after_success(node, username, pin, verified, "approval")
    if ROLE_RANK[verified.user["role"]] < ROLE_RANK[min_role]:
        raise Forbidden(f"{username} is not a {min_role}", {"required_role": min_role})
    return verified.user


def unlock_user(node: Node, actor: str, username: str) -> dict[str, Any]:
    """An admin clears a user's wrong-PIN back-off on every till (journaled, audited)."""
    get_user(node, username)
    now = node.clock()
    with node.db.read() as session:
        times, cleared = failure_state(session, username, now)
    failures = len(lockout.counted(times, now, cleared))
    submit(node, UserUnlock(username=username, reason="admin", created_ms=now), actor,
           audit=AuditNote("user.unlocked", {"username": username, "failures": failures}))
    return {**get_user(node, username), "failures_cleared": failures}


def logout(node: Node, token: str) -> str | None:
    """End one session; returns its token digest (for the sockets it had), None if unknown."""
    digest = _digest(token)
    with node.db.write() as session:
        row = session.get(AuthSession, digest)
        if row is None:
            return None
        if not row.revoked:
            row.revoked = True
            node.audit.record(session, "logout", row.username, {})
    return digest


def token_digest(token: str) -> str:
    """What a session is stored (and its sockets are tracked) under."""
    return _digest(token)


def ended_sessions(node: Node, digests: list[str]) -> set[str]:
    """Of these token digests, those whose session ended: revoked, expired, user gone or
    inactive, or unknown (one query; the socket watch asks every few seconds)."""
    if not digests:
        return set()
    now = node.clock()
    with node.db.read() as session:
        live = set(session.scalars(
            select(AuthSession.token_hash)
            .join(User, User.username == AuthSession.username)
            .where(AuthSession.token_hash.in_(digests), AuthSession.revoked.is_(False),
                   AuthSession.expires_ms > now, User.active.is_(True))))
    return set(digests) - live


def housekeeping(node: Node) -> dict[str, int]:
    """Purge ended sessions and failure rows that can no longer count (run by a
    periodic job, `app.wiring.start_housekeeping`). Failure rows are derived from the
    journal: only rows the back-off can never count again are dropped, so every till
    still decides the same way."""
    now = node.clock()
    with node.db.write() as session:
        sessions = session.execute(delete(AuthSession).where(
            (AuthSession.expires_ms <= now) | AuthSession.revoked.is_(True))).rowcount
        old = session.execute(delete(LoginFailure).where(
            LoginFailure.at_ms <= now - lockout.WINDOW_MS)).rowcount
        superseded = 0
        latest = dict(session.execute(
            select(LoginFailure.username, LoginFailure.at_ms).where(LoginFailure.kind == "cleared")
            .order_by(LoginFailure.at_ms)).all())  # last per user wins
        for username, cleared in latest.items():
            superseded += session.execute(delete(LoginFailure).where(
                LoginFailure.username == username, LoginFailure.at_ms < cleared)).rowcount
    return {"sessions": sessions, "failures": old + superseded}


def authenticate(node: Node, token: str) -> tuple[dict[str, Any], str]:
    """Token -> (user, csrf_token). Expired, revoked, forged or unknown -> 401."""
    with node.db.read() as session:
        # Every API call comes here: one query in plain SQL (no statement compiling, no
        # ORM objects to build).
        row = driver(session).execute(_AUTH_SQL, (_digest(token),)).fetchone()
    if row is None:
        raise Unauthorized("not logged in (unknown or revoked token)")
    revoked, expires_ms, csrf_token, username, display_name, role, active = row
    if revoked:
        raise Unauthorized("not logged in (unknown or revoked token)")
    if expires_ms <= node.clock():
        raise Unauthorized("session expired, please log in again", {"expired": True})
    if username is None or not active:
        raise Unauthorized("user is no longer active")
    return {"username": username, "display_name": display_name, "role": role,
            "active": bool(active)}, csrf_token


_AUTH_SQL = ("SELECT s.revoked, s.expires_ms, s.csrf_token, u.username, u.display_name, u.role, "
             "u.active FROM auth_sessions AS s LEFT OUTER JOIN users AS u "
             "ON u.username = s.username WHERE s.token_hash = ?")


def create_user(node: Node, actor: str, data: dict[str, Any]) -> dict[str, Any]:
    check_pin_format(data["pin"], data["role"], node.config.strong_pins_for_managers)
    with node.db.read() as session:
        if session.get(User, data["username"]) is not None:
            raise Conflict(f"user {data['username']} already exists",
                           {"username": data["username"]}, code="DUPLICATE_USER")
    command = UserCreate(username=data["username"], role=data["role"],
                         display_name=data.get("display_name") or data["username"],
                         pin_hash=hash_pin(node.pepper, data["pin"]))
    submit(node, command, actor, offline_ok=False,
           audit=AuditNote("user.created", {"username": data["username"], "role": data["role"]}))
    return get_user(node, data["username"])


def update_user(node: Node, actor: str, username: str, changes: dict[str, Any]) -> dict[str, Any]:
    current = get_user(node, username)
    payload_changes: dict[str, Any] = {}
    for key in ("display_name", "role", "active"):
        if key in changes:
            payload_changes[key] = changes[key]
    strong = node.config.strong_pins_for_managers
    role = changes.get("role") or current["role"]
    if "pin" in changes:
        check_pin_format(changes["pin"], role, strong)
        payload_changes["pin_hash"] = hash_pin(node.pepper, changes["pin"])
    elif min_pin_digits(role, strong) > min_pin_digits(current["role"], strong):
        # Only the new PIN's length can be checked (hashes do not tell): a promotion to
        # manager or admin comes with one.
        need = min_pin_digits(role, strong)
        raise ValidationError(f"{'an' if role == 'admin' else 'a'} {role} needs a PIN of at "
                              f"least {need} digits: send a new "
                              f"pin with the role change", {"field": "pin", "min_digits": need,
                                                            "role": role},
                              code="PIN_TOO_SHORT")
    if not payload_changes:
        raise ValidationError("nothing to change", {"fields": list(changes)})
    audit = {k: v for k, v in payload_changes.items() if k != "pin_hash"}
    if "pin_hash" in payload_changes:
        audit["pin_reset"] = True
    # Its applier ends the user's sessions (PIN reset, deactivation, demotion) on every
    # till, this one included (`apply._user_update`).
    submit(node, UserUpdate(username=username, changes=payload_changes), actor,
           audit=AuditNote("user.updated", {"username": username, **audit}), offline_ok=False)
    return get_user(node, username)


def get_user(node: Node, username: str) -> dict[str, Any]:
    with node.db.read() as session:
        user = session.get(User, username)
        if user is None:
            raise NotFound(f"unknown user {username}", {"username": username})
        return user_dict(user)


def ensure_admin(node: Node, pin: str) -> bool:
    """--admin-pin: create 'admin' once; running again changes nothing."""
    check_pin_format(pin, "admin", node.config.strong_pins_for_managers)
    with node.db.read() as session:
        if session.get(User, "admin") is not None:
            return False
    submit(node, UserCreate(username="admin", display_name="Administrator", role="admin",
                            pin_hash=hash_pin(node.pepper, pin)), "system", offline_ok=False,
           audit=AuditNote("user.created", {"username": "admin", "role": "admin", "via": "--admin-pin"}))
    return True


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ------------------------------------------------------------ legacy hashes at start
def pepper_stored_hashes(node: Node) -> int:
    """Replace every legacy (unpeppered pbkdf2) PIN hash this till holds, in the users
    table and in journal and outbox payloads, by its peppered wrap (`pin_hash.wrap_legacy`).

    Runs at every start (create_app): migrations run without the pepper. The wrap is
    deterministic, so every till rewrites its copy of a journal entry to the same bytes
    (journals stay identical; nodes compare entries by gseq, event id and epoch). A hash
    that arrives later from a till of an earlier release is wrapped at the next start and
    replaced by a scrypt hash at the user's next login. Returns how many it rewrote.
    """
    pepper = node.pepper
    changed = 0
    with node.db.write() as session:
        for table in (JournalEntry, OutboxEvent):
            key = table.gseq if table is JournalEntry else table.event_id
            rows = session.execute(select(key, table.payload).where(
                table.type.in_(("user.create", "user.update")),
                text(f"{table.__tablename__}.payload LIKE '%pbkdf2:%'"))).all()
            for row_key, payload in rows:
                fixed = _wrapped_payload(pepper, payload)
                if fixed is not None:
                    session.execute(update(table).where(key == row_key).values(payload=fixed))
                    changed += 1
        for user in session.scalars(select(User).where(User.pin_hash.like("pbkdf2:%"))):
            user.pin_hash = pin_hash.wrap_legacy(pepper, user.pin_hash)
            changed += 1
    return changed


def _wrapped_payload(pepper: bytes, payload: Any) -> dict[str, Any] | None:
    """The payload with its legacy pin_hash wrapped, or None when it holds none."""
    if not isinstance(payload, dict):
        return None
    if pin_hash.is_legacy(payload.get("pin_hash")):
        return {**payload, "pin_hash": pin_hash.wrap_legacy(pepper, payload["pin_hash"])}
    changes = payload.get("changes")
    if isinstance(changes, dict) and pin_hash.is_legacy(changes.get("pin_hash")):
        return {**payload, "changes": {**changes,
                                       "pin_hash": pin_hash.wrap_legacy(pepper, changes["pin_hash"])}}
    return None
