"""Where a till's secrets live: 0600 files beside the database, never in it, never on a command line.

- ``<data_dir>/cluster_secret``: signs node-to-node traffic. Read from ``POS_CLUSTER_SECRET``
  (environment, not visible in ``ps``), or from ``--cluster-secret-file PATH``, or from the
  data dir, where the first start makes one. Every till of a shop holds the same one.
- The PIN pepper is derived from the cluster secret (HKDF-SHA256 under its own label), so
  every till that holds the shop's secret file can check every user's PIN, while a copy of
  the database alone (which holds neither) gives no hash worth attacking (DESIGN invariant 9).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat

CLUSTER_SECRET_FILE = "cluster_secret"
PEPPER_LABEL = b"lanpos-pin-pepper-v1"
MIN_SECRET_CHARS = 16


class SecretFileError(ValueError):
    """A secret file that is missing, empty, too weak or readable by other users."""


def read_secret_file(path: str) -> str:
    """The stripped text of a secret file that only its owner can read (mode 0600 or 0400)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SecretFileError(f"secret file {path} does not exist") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SecretFileError(f"secret file {path} is readable by other users "
                              f"(mode {stat.S_IMODE(info.st_mode):o}); run: chmod 600 {path}")
    with open(path, encoding="utf-8") as fh:
        value = fh.read().strip()
    if not value:
        raise SecretFileError(f"secret file {path} is empty")
    return value


def write_secret_file(path: str, value: str) -> None:
    """Create a new 0600 file holding `value` (never overwrites one that exists)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")


def check_strength(secret: str) -> str:
    if len(secret) < MIN_SECRET_CHARS:
        raise SecretFileError(f"the cluster secret must be at least {MIN_SECRET_CHARS} characters "
                              f"(make one with: python -c \"import secrets; "
                              f"print(secrets.token_hex(24))\")")
    return secret


def ensure_cluster_secret(data_dir: str, given: str | None = None,
                          secret_file: str | None = None) -> str:
    """The cluster secret: given (from the environment), a named file, or the data dir's file.

    The data dir's file is made on first start when nothing else names a secret.
    """
    if given:
        return check_strength(given)
    if secret_file:
        return check_strength(read_secret_file(secret_file))
    path = os.path.join(data_dir, CLUSTER_SECRET_FILE)
    if os.path.exists(path):
        return check_strength(read_secret_file(path))
    secret = secrets.token_hex(24)
    write_secret_file(path, secret)
    return secret


def pin_pepper(cluster_secret: str) -> bytes:
    """32 bytes that key every PIN hash (HKDF-SHA256 extract-and-expand, one block)."""
    prk = hmac.new(b"lanpos-shop-secret", cluster_secret.encode("utf-8"), hashlib.sha256).digest()
    return hmac.new(prk, PEPPER_LABEL + b"\x01", hashlib.sha256).digest()


def restrict_data_dir(data_dir: str, db_path: str) -> None:
    """Only the till's own user may read its data: the dir 0700, the database files 0600.

    The database holds the whole shop (every till's journal); SQLite gives its -wal and
    -shm files the main file's mode, so the main file is made 0600 before it is opened.
    """
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    os.chmod(data_dir, 0o700)
    os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY, 0o600))
    for path in (db_path, db_path + "-wal", db_path + "-shm"):
        if os.path.exists(path):
            os.chmod(path, 0o600)
