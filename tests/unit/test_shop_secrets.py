"""Where secrets live: 0600 files beside the database, made once, refused when others can read them."""

import os
import stat

import pytest

from app.utils.shop_secrets import (
    CLUSTER_SECRET_FILE,
    SecretFileError,
    ensure_cluster_secret,
    pin_pepper,
    read_secret_file,
    restrict_data_dir,
)


def test_the_first_start_makes_a_0600_secret_and_later_starts_read_the_same_one(tmp_path):
    first = ensure_cluster_secret(str(tmp_path))
    path = tmp_path / CLUSTER_SECRET_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert len(first) >= 32
    assert ensure_cluster_secret(str(tmp_path)) == first


def test_a_secret_from_the_environment_wins_and_is_not_written(tmp_path):
    assert ensure_cluster_secret(str(tmp_path), given="x" * 20) == "x" * 20
    assert not (tmp_path / CLUSTER_SECRET_FILE).exists()


def test_a_named_secret_file_is_read(tmp_path):
    named = tmp_path / "shop.secret"
    named.write_text("a-long-enough-shop-secret\n")
    named.chmod(0o600)
    assert ensure_cluster_secret(str(tmp_path / "data"), secret_file=str(named)) == \
        "a-long-enough-shop-secret"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_secret_file_others_can_read_is_refused(tmp_path, mode):
    named = tmp_path / "shop.secret"
    named.write_text("a-long-enough-shop-secret\n")
    named.chmod(mode)
    with pytest.raises(SecretFileError, match="readable by other users"):
        read_secret_file(str(named))


def test_an_empty_missing_or_short_secret_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(SecretFileError, match="empty"):
        read_secret_file(str(empty))
    with pytest.raises(SecretFileError, match="does not exist"):
        read_secret_file(str(tmp_path / "nope"))
    with pytest.raises(SecretFileError, match="at least"):
        ensure_cluster_secret(str(tmp_path), given="short")


def test_the_pepper_is_32_bytes_fixed_per_secret_and_differs_between_secrets():
    a = pin_pepper("shop-a-secret-0123456789")
    assert len(a) == 32
    assert a == pin_pepper("shop-a-secret-0123456789")
    assert a != pin_pepper("shop-b-secret-0123456789")
    # Not the secret itself, nor a plain hash of it that a copy of the secret's digest would give.
    assert b"shop-a-secret" not in a


def test_the_data_dir_and_database_files_are_the_tills_own(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    db = data / "lanpos.db"
    for name in ("lanpos.db", "lanpos.db-wal"):
        (data / name).write_bytes(b"")
        (data / name).chmod(0o644)  # as an earlier release left them
    restrict_data_dir(str(data), str(db))
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data / "lanpos.db-wal").st_mode) == 0o600
    fresh = tmp_path / "fresh"
    restrict_data_dir(str(fresh), str(fresh / "lanpos.db"))
    assert stat.S_IMODE(os.stat(fresh / "lanpos.db").st_mode) == 0o600
