"""Login, logout, who am I."""

from flask import Blueprint, jsonify, make_response, request

from app.routes.guards import SESSION_COOKIE, current_user, node, parse
from app.routes.schemas import LoginBody
from app.routes.sockets import end_session_sockets
from app.services.shop import users as users_service
from app.utils.errors import ApiError

bp = Blueprint("api_auth", __name__, url_prefix="/api/auth")


@bp.post("/login")
def login():
    if not node().ready.is_set():
        # The till's own users (--admin-pin, demo) are still being journaled: a PIN
        # checked now could be refused for a user that exists a moment later. Not a failure.
        raise ApiError("STARTING", "this till is starting; try again in a moment", 503,
                       {"retry_after_s": 1})
    body = parse(LoginBody)
    result = users_service.login(node(), body.username, body.pin,
                                 client=request.remote_addr or "?")
    response = make_response(jsonify({"success": True, **result}))
    response.set_cookie(SESSION_COOKIE, result["token"], httponly=True, samesite="Strict",
                        max_age=node().config.session_ttl)
    return response


@bp.post("/logout")
def logout():
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.startswith("Bearer ") else request.cookies.get(SESSION_COOKIE)
    if token:
        digest = users_service.logout(node(), token)
        if digest is not None:
            end_session_sockets(digest)  # the browser's live socket ends with its session
    response = make_response(jsonify({"success": True}))
    response.delete_cookie(SESSION_COOKIE)
    return response


@bp.get("/me")
def me():
    return jsonify({"success": True, "user": current_user()})
