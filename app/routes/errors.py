"""One error handler: every failure is JSON `{"success": false, "error": {...}}`, never a trace."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from app.services.journal.state_machine import Refused
from app.utils.errors import ApiError, status_of_code

log = logging.getLogger(__name__)

HTTP_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
              413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE", 429: "TOO_MANY_REQUESTS"}


def error_response(exc: ApiError):
    return jsonify(exc.to_dict()), exc.status


def init_app(app: Flask) -> None:
    @app.after_request
    def _no_sniffing(response):
        # User text (product names, reasons) is returned inside JSON: never let a browser
        # sniff such a response into HTML.
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc)

    @app.errorhandler(Refused)
    def _refused(exc: Refused):
        # The rules refused an event (here, or at the master that answered the submit): the
        # refusal travelled as a plain value; its HTTP status is decided here, from its code.
        return (jsonify({"success": False, "error": exc.refusal.to_wire()}),
                status_of_code(exc.refusal.code))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        code = HTTP_CODES.get(status, "HTTP_ERROR")
        message = exc.description or exc.name
        if status == 413:
            message = "the request body is too large"
        if not request.path.startswith(("/api", "/health")) and status == 404:
            return f"<h1>Not found</h1><p>{exc.name}</p>", 404
        return jsonify({"success": False, "error": {"code": code, "message": message}}), status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"success": False, "error": {
            "code": "INTERNAL_ERROR", "message": "something went wrong on this till; "
                                                 "it was logged"}}), 500
