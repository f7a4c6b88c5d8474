"""API errors with stable machine-readable codes.

Every error a client can see is an :class:`ApiError`: a stable ``code`` (what
tests and the browser branch on), a human ``message``, the HTTP ``status`` and
optional structured ``details``. Routes let these propagate; one error handler
turns them into ``to_dict()`` JSON, so no stack trace ever reaches a client
(invariant 7: bad input gets a clear JSON error with a stable code).

The convenience subclasses fix the (code, status) pairs so they are spelled the
same everywhere; ``except NotFound`` etc. also works in services and tests.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar


class ApiError(Exception):
    """An error meant to be shown to an API client as JSON."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        details: dict | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON body: ``{"success": False, "error": {code, message[, details]}}``.

        ``details`` appears only when it was given (even if empty), so clients
        can rely on its absence meaning "nothing more to say".
        """
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = dict(self.details)
        return {"success": False, "error": error}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, "
            f"status={self.status!r}, details={self.details!r})"
        )


class _PresetError(ApiError):
    """An ApiError whose code and status are fixed by the subclass."""

    default_code: ClassVar[str] = "ERROR"
    default_status: ClassVar[int] = 400
    default_message: ClassVar[str] = "error"

    def __init__(
        self,
        message: str | None = None,
        details: dict | None = None,
        *,
        code: str | None = None,
    ) -> None:
        super().__init__(
            code or self.default_code,
            message if message is not None else self.default_message,
            self.default_status,
            details,
        )


class ValidationError(_PresetError):
    """400 VALIDATION_ERROR: the request is malformed or a value is out of range."""

    default_code = "VALIDATION_ERROR"
    default_status = 400
    default_message = "invalid input"

    def __init__(self, message: str, details: dict | None = None, *, code: str | None = None) -> None:
        super().__init__(message, details, code=code)


class Unauthorized(_PresetError):
    """401 UNAUTHORIZED: not logged in, session expired, or wrong PIN."""

    default_code = "UNAUTHORIZED"
    default_status = 401
    default_message = "authentication required"


class Forbidden(_PresetError):
    """403 FORBIDDEN: logged in, but the role is too low (e.g. refund needs a manager)."""

    default_code = "FORBIDDEN"
    default_status = 403
    default_message = "not allowed"


class NotFound(_PresetError):
    """404 NOT_FOUND."""

    default_code = "NOT_FOUND"
    default_status = 404
    default_message = "not found"


class Conflict(_PresetError):
    """409 CONFLICT: e.g. an edit based on a stale version, a duplicate sku."""

    default_code = "CONFLICT"
    default_status = 409
    default_message = "conflict"


class OutOfStock(ApiError):
    """409 OUT_OF_STOCK: the master refused a sale in arrival order (invariant 4)."""

    def __init__(self, sku: str, available: int, requested: int, message: str | None = None) -> None:
        super().__init__(
            "OUT_OF_STOCK",
            message or f"only {available} of {sku} in stock, {requested} requested",
            409,
            {"sku": sku, "available": available, "requested": requested},
        )
        self.sku = sku
        self.available = available
        self.requested = requested


class Locked(ApiError):
    """423 LOCKED: too many wrong PINs; ``retry_after_s`` is whole seconds, rounded up.

    Rounded up so a client that waits exactly that long is never refused again.
    """

    def __init__(self, seconds_left: float, message: str | None = None) -> None:
        retry_after_s = max(0, math.ceil(seconds_left))
        super().__init__(
            "LOCKED",
            message or f"too many failed attempts, try again in {retry_after_s} s",
            423,
            {"retry_after_s": retry_after_s},
        )
        self.retry_after_s = retry_after_s


class ServiceUnavailable(_PresetError):
    """503 MASTER_UNAVAILABLE: an operation needs the master and none is reachable."""

    default_code = "MASTER_UNAVAILABLE"
    default_status = 503
    default_message = "the master node is not reachable"


# The status of each code a preset error fixes (OUT_OF_STOCK and LOCKED included).
_STATUS_OF_CODE = {cls.default_code: cls.default_status for cls in (
    ValidationError, Unauthorized, Forbidden, NotFound, Conflict, ServiceUnavailable)}
_STATUS_OF_CODE.update({"OUT_OF_STOCK": 409, "LOCKED": 423})


def status_of_code(code: str) -> int:
    """The HTTP status of an error known only by its code (a refusal the journal carried
    as a plain value): the status of the preset error with that code; 409 for any other
    code (what the rules refuse conflicts with the shop's state: DUPLICATE_SKU, ...)."""
    return _STATUS_OF_CODE.get(code, 409)

