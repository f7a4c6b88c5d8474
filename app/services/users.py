"""Users, PIN login, sessions and lockout.

PINs are hashed with werkzeug's KDF. Five wrong PINs lock a user out for five minutes
(on the node where they were typed). Sessions are node-local: a browser talks to its
own till; only the token's sha256 is stored, so a copied database holds no live token.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import weakref
from collections import deque
from typing import Any

from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from app.models import AuthSession, LoginFailure, User
from app.services.node import Node
from app.utils.errors import (
    ApiError,
    Conflict,
    Forbidden,
    Locked,
    NotFound,
    Unauthorized,
    ValidationError,
)

ROLES = ("cashier", "manager", "admin")
ROLE_RANK = {role: i for i, role in enumerate(ROLES, start=1)}
# A 4-6 digit PIN has little entropy anyway; the lockout is what protects it.
PIN_HASH_METHOD = "pbkdf2:sha256:60000"


def hash_pin(pin: str) -> str:
    return generate_password_hash(pin, method=PIN_HASH_METHOD)


def check_pin_format(pin: str) -> None:
    if not (isinstance(pin, str) and pin.isdigit() and 4 <= len(pin) <= 8):
        raise ValidationError("a PIN is 4 to 8 digits", {"field": "pin"})


def user_dict(user: User) -> dict[str, Any]:
    return {"username": user.username, "display_name": user.display_name, "role": user.role,
            "active": user.active}


def list_users(node: Node, include_inactive: bool = False) -> list[dict[str, Any]]:
    with node.db.read() as session:
        query = select(User).order_by(User.display_name)
        if not include_inactive:
            query = query.where(User.active.is_(True))
        return [user_dict(u) for u in session.scalars(query)]


def _check_pin(node: Node, username: str, pin: str, purpose: str) -> dict[str, Any]:
    """Verify a PIN with lockout; audit failures. Returns the user dict."""
    now = node.clock()
    cfg = node.config
    # Decide inside the transaction, raise after it: failures must be committed.
    with node.db.write() as session:
        failure = session.get(LoginFailure, username)
        if failure is not None and failure.locked_until_ms > now:
            node.audit.record(session, "login.locked", username, {"purpose": purpose})
            error: Exception = Locked((failure.locked_until_ms - now) / 1000)
        else:
            user = session.get(User, username)
            if user is not None and user.active and check_password_hash(user.pin_hash, pin):
                if failure is not None:
                    session.delete(failure)
                return user_dict(user)
            if failure is None:
                failure = LoginFailure(username=username, count=0, locked_until_ms=0)
                session.add(failure)
            if failure.locked_until_ms and failure.locked_until_ms <= now:
                failure.count = 0
                failure.locked_until_ms = 0
            failure.count += 1
            attempts_left = max(cfg.lockout_attempts - failure.count, 0)
            if attempts_left == 0:
                failure.locked_until_ms = now + cfg.lockout_seconds * 1000
                error = Locked(cfg.lockout_seconds)
            else:
                error = Unauthorized("wrong username or PIN", {"attempts_left": attempts_left})
            node.audit.record(session, "login.failed", username, {
                "purpose": purpose, "attempts": failure.count, "locked": attempts_left == 0})
    raise error


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


def login(node: Node, username: str, pin: str, client: str | None = None) -> dict[str, Any]:
    if client is not None:
        wait_ms = _client_retry_after_ms(node, client, node.clock())
        if wait_ms > 0:
            seconds = -(-wait_ms // 1000)
            raise ApiError("TOO_MANY_REQUESTS", f"too many failed logins from this device, try "
                                                f"again in {seconds} s", 429,
                           {"retry_after_s": seconds})
    try:
        user = _check_pin(node, username, pin, "login")
    except (Unauthorized, Locked):
        if client is not None:
            _note_client_failure(node, client, node.clock())
        raise
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(24)
    now = node.clock()
    expires = now + node.config.session_ttl * 1000
    with node.db.write() as session:
        session.add(AuthSession(token_hash=_digest(token), username=username, csrf_token=csrf,
                                created_ms=now, expires_ms=expires, revoked=False))
        node.audit.record(session, "login.success", username, {"role": user["role"]})
    return {"token": token, "csrf_token": csrf, "expires_at": expires, "user": user}


def approve(node: Node, username: str, pin: str, min_role: str = "manager") -> dict[str, Any]:
    """A manager's PIN typed at a till to approve one action (discount, refund, void)."""
    user = _check_pin(node, username, pin, "approval")
    if ROLE_RANK[user["role"]] < ROLE_RANK[min_role]:
        raise Forbidden(f"{username} is not a {min_role}", {"required_role": min_role})
    return user


def logout(node: Node, token: str) -> None:
    with node.db.write() as session:
        row = session.get(AuthSession, _digest(token))
        if row is not None and not row.revoked:
            row.revoked = True
            node.audit.record(session, "logout", row.username, {})


def authenticate(node: Node, token: str) -> tuple[dict[str, Any], str]:
    """Token -> (user, csrf_token). Expired, revoked, forged or unknown -> 401."""
    with node.db.read() as session:
        # Every API call comes here: one query, plain columns (no ORM objects to build).
        row = session.execute(
            select(AuthSession.revoked, AuthSession.expires_ms, AuthSession.csrf_token,
                   User.username, User.display_name, User.role, User.active)
            .outerjoin(User, User.username == AuthSession.username)
            .where(AuthSession.token_hash == _digest(token))).first()
        if row is None or row.revoked:
            raise Unauthorized("not logged in (unknown or revoked token)")
        if row.expires_ms <= node.clock():
            raise Unauthorized("session expired, please log in again", {"expired": True})
        if row.username is None or not row.active:
            raise Unauthorized("user is no longer active")
        return {"username": row.username, "display_name": row.display_name, "role": row.role,
                "active": bool(row.active)}, row.csrf_token


def create_user(node: Node, actor: str, data: dict[str, Any]) -> dict[str, Any]:
    check_pin_format(data["pin"])
    with node.db.read() as session:
        if session.get(User, data["username"]) is not None:
            raise Conflict(f"user {data['username']} already exists",
                           {"username": data["username"]}, code="DUPLICATE_USER")
    payload = {"username": data["username"], "display_name": data.get("display_name")
               or data["username"], "role": data["role"], "pin_hash": hash_pin(data["pin"])}
    ev = node.ledger.new_event("user.create", payload, actor)
    ev.extra["audit"] = ("user.created", {"username": data["username"], "role": data["role"]})
    node.ledger.execute(ev, offline_ok=False)
    return get_user(node, data["username"])


def update_user(node: Node, actor: str, username: str, changes: dict[str, Any]) -> dict[str, Any]:
    get_user(node, username)
    payload_changes: dict[str, Any] = {}
    for key in ("display_name", "role", "active"):
        if key in changes:
            payload_changes[key] = changes[key]
    if "pin" in changes:
        check_pin_format(changes["pin"])
        payload_changes["pin_hash"] = hash_pin(changes["pin"])
    if not payload_changes:
        raise ValidationError("nothing to change", {"fields": list(changes)})
    ev = node.ledger.new_event("user.update", {"username": username, "changes": payload_changes},
                               actor)
    audit = {k: v for k, v in payload_changes.items() if k != "pin_hash"}
    if "pin_hash" in payload_changes:
        audit["pin_reset"] = True
    ev.extra["audit"] = ("user.updated", {"username": username, **audit})
    node.ledger.execute(ev, offline_ok=False)
    if payload_changes.get("active") is False or "pin_hash" in payload_changes:
        _revoke_sessions(node, username)
    return get_user(node, username)


def _revoke_sessions(node: Node, username: str) -> None:
    with node.db.write() as session:
        for row in session.scalars(select(AuthSession).where(AuthSession.username == username,
                                                             AuthSession.revoked.is_(False))):
            row.revoked = True


def get_user(node: Node, username: str) -> dict[str, Any]:
    with node.db.read() as session:
        user = session.get(User, username)
        if user is None:
            raise NotFound(f"unknown user {username}", {"username": username})
        return user_dict(user)


def ensure_admin(node: Node, pin: str) -> bool:
    """--admin-pin: create 'admin' once; running again changes nothing."""
    check_pin_format(pin)
    with node.db.read() as session:
        if session.get(User, "admin") is not None:
            return False
    ev = node.ledger.new_event("user.create", {
        "username": "admin", "display_name": "Administrator", "role": "admin",
        "pin_hash": hash_pin(pin)}, "system")
    ev.extra["audit"] = ("user.created", {"username": "admin", "role": "admin", "via": "--admin-pin"})
    node.ledger.execute(ev, offline_ok=False)
    return True


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
