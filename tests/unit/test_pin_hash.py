"""Peppered PIN hashes: scrypt for new PINs, a deterministic wrap for legacy pbkdf2 ones."""

import time

import pytest
from werkzeug.security import check_password_hash, generate_password_hash

from app.utils import pin_hash

PEPPER = bytes(range(32))
OTHER = bytes(range(1, 33))


def test_scrypt_hash_needs_the_pepper():
    stored = pin_hash.hash_pin(PEPPER, "4242")
    assert stored.startswith("scrypt-pep1$16384$8$1$")
    assert pin_hash.verify_pin(PEPPER, stored, "4242")
    assert not pin_hash.verify_pin(PEPPER, stored, "4243")
    assert not pin_hash.verify_pin(OTHER, stored, "4242")
    assert pin_hash.is_peppered(stored) and not pin_hash.needs_upgrade(stored)
    assert pin_hash.hash_pin(PEPPER, "4242") != stored  # salted


def test_no_pepper_no_hash():
    with pytest.raises(ValueError):
        pin_hash.hash_pin(b"", "4242")


def test_legacy_hash_wrap_is_deterministic_and_checks_the_same_pin():
    legacy = generate_password_hash("1234", method="pbkdf2:sha256:60000")
    assert pin_hash.verify_pin(PEPPER, legacy, "1234")  # still accepted until wrapped
    wrapped = pin_hash.wrap_legacy(PEPPER, legacy)
    assert wrapped == pin_hash.wrap_legacy(PEPPER, legacy)  # same bytes on every till
    assert wrapped.startswith("wrap-pep1$pbkdf2:sha256:60000$" + legacy.split("$")[1] + "$")
    assert legacy.split("$")[2] not in wrapped
    assert pin_hash.verify_pin(PEPPER, wrapped, "1234")
    assert not pin_hash.verify_pin(PEPPER, wrapped, "1235")
    assert not pin_hash.verify_pin(OTHER, wrapped, "1234")
    assert pin_hash.is_peppered(wrapped) and pin_hash.needs_upgrade(wrapped)
    assert pin_hash.wrap_legacy(PEPPER, wrapped) == wrapped  # idempotent
    with pytest.raises(ValueError):
        check_password_hash(wrapped, "1234")


@pytest.mark.parametrize("stored", [
    "", "scrypt-pep1$x$8$1$AA==$AA==", "scrypt-pep1$1099511627776$8$1$AA==$AA==",
    "scrypt-pep1$16384$8$1$not base64!$AA==", "wrap-pep1$pbkdf2:nohash:1$s$00",
    "wrap-pep1$md5$s$00", "plain", "pbkdf2:sha256$x",
])
def test_malformed_hashes_never_verify_and_never_raise(stored):
    assert pin_hash.verify_pin(PEPPER, stored, "1234") is False


def test_a_check_costs_tens_of_milliseconds():
    stored = pin_hash.hash_pin(PEPPER, "4242")
    start = time.perf_counter()
    pin_hash.verify_pin(PEPPER, stored, "4242")
    elapsed = time.perf_counter() - start
    assert 0.005 < elapsed < 2.0, elapsed
