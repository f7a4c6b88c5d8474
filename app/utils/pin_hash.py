"""PIN hashes keyed with the shop's pepper (DESIGN invariant 9). Pure: no database, no Flask.

A PIN has 4 to 8 digits: whatever the KDF, a hash that can be checked without a secret
falls to a brute force in minutes. So every stored hash is keyed with the pepper (32
bytes derived from the cluster secret, kept in a 0600 file beside the database, never
in it): a copy of the database alone holds nothing a PIN can be checked against.

Formats (all `$`-separated, ASCII):

* ``scrypt-pep1$<n>$<r>$<p>$<salt b64>$<hash b64>``:
  scrypt(HMAC-SHA256(pepper, pin), salt, n, r, p), 32 bytes. What every new PIN gets.
* ``wrap-pep1$<legacy method>$<legacy salt>$<HMAC-SHA256(pepper, legacy hex) hex>``:
  a werkzeug ``pbkdf2:sha256:<iterations>$salt$hex`` hash of an earlier release, its
  hex wrapped with the pepper. Deterministic (every till turns the same journal payload
  into the same bytes); checked by computing the legacy pbkdf2 of the typed PIN and
  wrapping it; replaced by a scrypt-pep1 hash at the next successful login.
* ``pbkdf2:sha256:<iterations>$salt$hex``: the legacy hash itself. Still verified (a
  till of an earlier release may journal one), but `wrap_legacy` rewrites it at start.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

SCRYPT_PREFIX = "scrypt-pep1"
WRAP_PREFIX = "wrap-pep1"
LEGACY_PREFIX = "pbkdf2:"
# n = 2**14, r = 8: 16 MiB and about 45 ms per check on the shop's till hardware
# (measured on a 2-core test machine under load); see README.md, "Security".
SCRYPT_N = 2 ** 14
SCRYPT_R = 8
SCRYPT_P = 1
_MAXMEM = 64 * 1024 * 1024
_DKLEN = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _keyed(pepper: bytes, pin: str) -> bytes:
    if not pepper:
        raise ValueError("no PIN pepper: the node was built without its shop secret")
    return hmac.new(pepper, pin.encode("utf-8"), hashlib.sha256).digest()


def _scrypt(pepper: bytes, pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(_keyed(pepper, pin), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM,
                          dklen=_DKLEN)


def hash_pin(pepper: bytes, pin: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R,
             p: int = SCRYPT_P, salt: bytes | None = None) -> str:
    """A new scrypt-pep1 hash of `pin` (random 16-byte salt unless given)."""
    salt = os.urandom(16) if salt is None else salt
    return f"{SCRYPT_PREFIX}${n}${r}${p}${_b64(salt)}${_b64(_scrypt(pepper, pin, salt, n, r, p))}"


def _legacy_hex(method: str, salt: str, pin: str) -> str | None:
    """werkzeug's pbkdf2 hex for `method` ("pbkdf2:sha256:60000"), None if not one."""
    parts = method.split(":")
    if len(parts) != 3 or parts[0] != "pbkdf2" or not parts[2].isdigit():
        return None
    try:
        return hashlib.pbkdf2_hmac(parts[1], pin.encode("utf-8"), salt.encode("utf-8"),
                                   int(parts[2])).hex()
    except ValueError:  # an unknown digest name
        return None


def _wrap_hex(pepper: bytes, legacy_hex: str) -> str:
    if not pepper:
        raise ValueError("no PIN pepper: the node was built without its shop secret")
    return hmac.new(pepper, legacy_hex.encode("ascii"), hashlib.sha256).hexdigest()


def is_legacy(stored: str) -> bool:
    return isinstance(stored, str) and stored.startswith(LEGACY_PREFIX)


def wrap_legacy(pepper: bytes, stored: str) -> str:
    """A legacy pbkdf2 hash -> its peppered wrap (same bytes on every till); others as given."""
    if not is_legacy(stored):
        return stored
    method, _, rest = stored.partition("$")
    salt, _, legacy_hex = rest.partition("$")
    return f"{WRAP_PREFIX}${method}${salt}${_wrap_hex(pepper, legacy_hex)}"


def needs_upgrade(stored: str) -> bool:
    """Not the current KDF with the current cost: rehash at the next successful login."""
    if not isinstance(stored, str) or not stored.startswith(SCRYPT_PREFIX + "$"):
        return True
    parts = stored.split("$")
    return parts[1:4] != [str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P)]


def verify_pin(pepper: bytes, stored: str, pin: str) -> bool:
    """Constant-time check of `pin` against any of the formats above; False if malformed."""
    if not isinstance(stored, str) or not isinstance(pin, str):
        return False
    parts = stored.split("$")
    try:
        if parts[0] == SCRYPT_PREFIX and len(parts) == 6:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            if not (2 <= n <= 2 ** 20 and 1 <= r <= 32 and 1 <= p <= 16):
                return False
            expected = base64.b64decode(parts[5], validate=True)
            got = _scrypt(pepper, pin, base64.b64decode(parts[4], validate=True), n, r, p)
            return hmac.compare_digest(got, expected)
        if parts[0] == WRAP_PREFIX and len(parts) == 4:
            legacy = _legacy_hex(parts[1], parts[2], pin)
            return legacy is not None and hmac.compare_digest(_wrap_hex(pepper, legacy), parts[3])
        if is_legacy(stored) and len(parts) == 3:
            legacy = _legacy_hex(parts[0], parts[1], pin)
            return legacy is not None and hmac.compare_digest(legacy, parts[2])
    except (ValueError, TypeError):  # bad base64, an absurd cost, a bad digest name
        return False
    return False


def is_peppered(stored: str) -> bool:
    """A hash that cannot be checked without the pepper."""
    return isinstance(stored, str) and (stored.startswith(SCRYPT_PREFIX + "$")
                                        or stored.startswith(WRAP_PREFIX + "$"))
