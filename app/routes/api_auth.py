"""Login, logout, who am I."""

from flask import Blueprint, jsonify, make_response, request

from app.routes.guards import SESSION_COOKIE, current_user, node, parse
from app.routes.schemas import LoginBody
from app.services import users as users_service

bp = Blueprint("api_auth", __name__, url_prefix="/api/auth")


@bp.post("/login")
def login():
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
        users_service.logout(node(), token)
    response = make_response(jsonify({"success": True}))
    response.delete_cookie(SESSION_COOKIE)
    return response


@bp.get("/me")
def me():
    return jsonify({"success": True, "user": current_user()})
