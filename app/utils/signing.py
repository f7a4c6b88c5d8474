"""HMAC-SHA256 signatures for node-to-node traffic with the cluster secret.

Only tills that were given the cluster secret can talk to the cluster; a
request without a valid signature is refused (and audited by the caller).
Socket.IO messages carry their body as JSON text and are signed over that text
(``seal`` / ``open_sealed``); raw HTTP requests are signed over method, path+query,
timestamp, device id and the SHA-256 of the raw body bytes, so none of them can be
altered or swapped.
Comparisons use ``hmac.compare_digest`` (constant time).

The secret must be high-entropy (e.g. ``secrets.token_hex(32)`` from
``init``/``demo``): :func:`cluster_id` is advertised over zeroconf, and a weak
secret could be guessed offline from it.
"""

from __future__ import annotations

import hashlib
import hmac
import json

REQUEST_SCHEME = "lanpos-req-v1"
MESSAGE_SCHEME = b"lanpos-msg-v1\n"  # a message's HMAC can never pass for a request's
DEFAULT_MAX_SKEW_MS = 10 * 60 * 1000  # tills' clocks may be minutes apart


def _key(secret: str) -> bytes:
    if not isinstance(secret, str) or not secret:
        raise ValueError("the cluster secret must be a non-empty string")
    return secret.encode("utf-8")


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def _safe_equal(expected: str, sig: object) -> bool:
    if not isinstance(sig, str) or not sig.isascii():  # a hex digest; a lone surrogate
        return False  # could not even be encoded (UnicodeEncodeError in the socket thread)
    return hmac.compare_digest(expected.encode("ascii"), sig.encode("ascii"))


def seal(secret: str, body: dict) -> dict:
    """A node-to-node message: ``{"body": <body as JSON text>, "sig": <HMAC of that text>}``.

    The text itself is signed, so the receiver checks the bytes it got before it parses
    them and neither side rebuilds a canonical form (that Python walk over every value
    of a journal page was 12-15 % of a node's CPU while pages streamed). Raises
    ValueError for NaN/infinity.
    """
    text = json.dumps(body, separators=(",", ":"), allow_nan=False)
    return {"body": text, "sig": _hmac_hex(secret, _message(text))}


def open_sealed(secret: str, envelope: object) -> dict | None:
    """The body of a ``seal``-ed envelope, or None if it is not one made with ``secret``
    (or does not hold a JSON object). Never raises on bad input."""
    if not isinstance(envelope, dict):
        return None
    text = envelope.get("body")
    if not isinstance(text, str):
        return None
    try:
        expected = _hmac_hex(secret, _message(text))
    except ValueError:  # no secret, or text that is not valid UTF-8
        return None
    if not _safe_equal(expected, envelope.get("sig")):
        return None
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _message(text: str) -> bytes:
    return MESSAGE_SCHEME + text.encode("utf-8")


def _request_message(
    method: str, path_with_query: str, body_bytes: bytes, ts_ms: int, device_id: int
) -> bytes:
    if not isinstance(method, str) or not isinstance(path_with_query, str):
        raise TypeError("method and path_with_query must be strings")
    if any(ch in s for s in (method, path_with_query) for ch in "\r\n"):
        raise ValueError("method and path must not contain line breaks")
    for name, value in (("ts_ms", ts_ms), ("device_id", device_id)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int")
    if not isinstance(body_bytes, (bytes, bytearray, memoryview)):
        raise TypeError("body_bytes must be bytes")
    return "\n".join(
        [
            REQUEST_SCHEME,
            method.upper(),
            path_with_query,
            str(ts_ms),
            str(device_id),
            hashlib.sha256(bytes(body_bytes)).hexdigest(),
        ]
    ).encode("utf-8")


def sign_request(
    secret: str,
    method: str,
    path_with_query: str,
    body_bytes: bytes,
    ts_ms: int,
    device_id: int,
) -> str:
    """Hex HMAC-SHA256 over method, path+query, ts, device id and sha256(body)."""
    return _hmac_hex(secret, _request_message(method, path_with_query, body_bytes, ts_ms, device_id))


def verify_request(
    secret: str,
    method: str,
    path_with_query: str,
    body_bytes: bytes,
    ts_ms: int,
    device_id: int,
    sig: str,
    *,
    now_ms: int | None = None,
    max_skew_ms: int = DEFAULT_MAX_SKEW_MS,
) -> bool:
    """True iff ``sig`` matches. Never raises on bad input.

    If ``now_ms`` is given, also refuses a timestamp more than ``max_skew_ms``
    away from it (limits replay of captured requests). The default window is
    wide because tills' wall clocks can be minutes apart; event idempotency
    (``event_id``) is what makes a replayed write harmless.
    """
    try:
        expected = sign_request(secret, method, path_with_query, body_bytes, ts_ms, device_id)
    except (TypeError, ValueError):
        return False
    if not _safe_equal(expected, sig):
        return False
    return now_ms is None or abs(now_ms - ts_ms) <= max_skew_ms


def cluster_id(secret: str) -> str:
    """First 12 hex of sha256("lanpos-cluster:" + secret): safe to advertise.

    Lets a node tell its own cluster's zeroconf adverts from a neighbouring
    shop's without revealing the secret.
    """
    _key(secret)
    return hashlib.sha256(("lanpos-cluster:" + secret).encode("utf-8")).hexdigest()[:12]
