"""Request plumbing shared by the blueprints: auth, roles, CSRF, JSON parsing."""

from __future__ import annotations

from functools import wraps
from typing import Any, Callable, TypeVar

from flask import current_app, g, request
from pydantic import BaseModel
from pydantic import ValidationError as PydanticError

from app.services.node import Node
from app.services.shop import users as users_service
from app.utils.errors import ApiError, Forbidden, Unauthorized, ValidationError

M = TypeVar("M", bound=BaseModel)
SESSION_COOKIE = "lanpos_session"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def node() -> Node:
    return current_app.extensions["lanpos_node"]


def current_user() -> dict[str, Any]:
    """The logged-in user: Bearer token, or the session cookie (+ CSRF header for writes)."""
    if "user" in g:
        return g.user
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        user, _ = users_service.authenticate(node(), header[7:].strip())
    elif request.cookies.get(SESSION_COOKIE):
        user, csrf = users_service.authenticate(node(), request.cookies[SESSION_COOKIE])
        if request.method in UNSAFE and request.headers.get("X-CSRF-Token") != csrf:
            raise Forbidden("missing or wrong X-CSRF-Token header", code="CSRF_FAILED")
    else:
        raise Unauthorized("log in first (Authorization: Bearer <token>)")
    g.user = user
    return user


def require_role(role: str) -> Callable:
    """Route decorator: the caller must be logged in with at least `role`."""

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if users_service.ROLE_RANK[user["role"]] < users_service.ROLE_RANK[role]:
                raise Forbidden(f"this needs the {role} role", {"required_role": role})
            return view(*args, **kwargs)

        return wrapped

    return decorator


def acting_manager(approver: Any) -> tuple[str, str | None]:
    """For manager actions done at a till: the logged-in manager, or a manager's PIN.

    Returns (user to record, approver username or None).
    """
    user = current_user()
    if users_service.ROLE_RANK[user["role"]] >= users_service.ROLE_RANK["manager"]:
        return user["username"], None
    if approver is None:
        raise Forbidden("this needs a manager: log in as one or send approver {username, pin}",
                        {"required_role": "manager"})
    approved = users_service.approve(node(), approver.username, approver.pin,
                                     client=request.remote_addr or "?")
    return user["username"], approved["username"]


def parse(model: type[M]) -> M:
    """Parse the JSON body into a strict pydantic model, or raise VALIDATION_ERROR."""
    if not request.is_json:
        raise ApiError("UNSUPPORTED_MEDIA_TYPE",
                       "send a JSON body with Content-Type: application/json", 415)
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # absurdly deep nesting: the decoder gives up, the body is bad
        data = None
    if data is None:
        raise ValidationError("the body is not valid JSON", code="MALFORMED_JSON")
    return validate(model, data)


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except PydanticError as exc:
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
                    for e in exc.errors()[:20]]
        first = problems[0] if problems else {"field": "", "problem": "invalid"}
        raise ValidationError(f"{first['field']}: {first['problem']}",
                              {"errors": problems}) from None


def query_int(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationError(f"{name} must be an integer", {"field": name}) from None
    if not lo <= value <= hi:
        raise ValidationError(f"{name} must be between {lo} and {hi}", {"field": name})
    return value


def optional_user() -> dict[str, Any] | None:
    """The logged-in user, or None for a caller without a (valid) session.

    A Bearer token that is sent but wrong (expired, revoked) answers 401: the page that
    sent it learns its session is gone. A stale session cookie is ambient (the browser
    sends it to the login screen too), so it only makes the caller anonymous.
    """
    if request.headers.get("Authorization"):
        return current_user()
    if request.cookies.get(SESSION_COOKIE):
        try:
            return current_user()
        except Unauthorized:
            return None
    return None


def has_role(user: dict[str, Any] | None, role: str) -> bool:
    return user is not None and users_service.ROLE_RANK[user["role"]] >= users_service.ROLE_RANK[role]
