import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.utils.signing import cluster_id, sign, sign_request, verify, verify_request

SECRET = "s3cr3t-cluster-key-0123456789abcdef"
BODY = {"device_id": 2, "epoch": [3, 1], "role": "client", "last_gseq": 42}
REQ = ("POST", "/api/sync/submit?x=1", b'{"event_id":"abc"}', 1_700_000_000_000, 2)


# ------------------------------------------------------------------ body sign


def test_sign_is_hmac_over_canonical_json():
    expected = hmac.new(
        SECRET.encode(),
        b'{"device_id":2,"epoch":[3,1],"last_gseq":42,"role":"client"}',
        hashlib.sha256,
    ).hexdigest()
    assert sign(SECRET, BODY) == expected
    assert len(expected) == 64


def test_sign_ignores_key_order():
    reordered = dict(reversed(list(BODY.items())))
    assert sign(SECRET, reordered) == sign(SECRET, BODY)


def test_verify_ok_and_tampering():
    sig = sign(SECRET, BODY)
    assert verify(SECRET, BODY, sig)
    assert not verify("other-secret", BODY, sig)
    assert not verify(SECRET, {**BODY, "last_gseq": 43}, sig)
    assert not verify(SECRET, {**BODY, "extra": None}, sig)
    assert not verify(SECRET, BODY, sig[:-1] + ("0" if sig[-1] != "0" else "1"))
    assert not verify(SECRET, BODY, sig.upper())


@pytest.mark.parametrize("bad_sig", ["", None, 123, b"abc", "ä" * 64, "0" * 64])
def test_verify_bad_signatures_false_not_raise(bad_sig):
    assert verify(SECRET, BODY, bad_sig) is False


def test_verify_unsignable_body_is_false():
    assert verify(SECRET, {"amount": 1.5}, "0" * 64) is False
    with pytest.raises(ValueError):
        sign(SECRET, {"amount": 1.5})


def test_empty_secret_refused():
    with pytest.raises(ValueError):
        sign("", BODY)
    assert verify("", BODY, sign(SECRET, BODY)) is False


@given(
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=6),
    st.text(min_size=1, max_size=20),
)
def test_sign_verify_roundtrip(body, secret):
    sig = sign(secret, body)
    assert verify(secret, body, sig)
    assert not verify(secret + "x", body, sig)


# --------------------------------------------------------------- request sign


def test_request_roundtrip():
    sig = sign_request(SECRET, *REQ)
    assert len(sig) == 64
    assert verify_request(SECRET, *REQ, sig)


def test_request_method_case_insensitive():
    m, *rest = REQ
    assert sign_request(SECRET, "post", *rest) == sign_request(SECRET, m, *rest)


@pytest.mark.parametrize(
    "index,value",
    [
        (0, "PUT"),
        (1, "/api/sync/submit?x=2"),
        (1, "/api/sync/submit"),
        (2, b'{"event_id":"abd"}'),
        (2, b""),
        (3, 1_700_000_000_001),
        (4, 3),
    ],
)
def test_request_any_part_changed_fails(index, value):
    sig = sign_request(SECRET, *REQ)
    changed = list(REQ)
    changed[index] = value
    assert verify_request(SECRET, *changed, sig) is False


def test_request_wrong_secret_fails():
    assert not verify_request("nope", *REQ, sign_request(SECRET, *REQ))


def test_request_fields_cannot_be_shifted():
    # a newline in the path could otherwise forge another field layout
    with pytest.raises(ValueError):
        sign_request(SECRET, "GET", "/a\n1", b"", 1, 2)
    assert verify_request(SECRET, "GET", "/a\n1", b"", 1, 2, "0" * 64) is False


def test_request_skew_window():
    sig = sign_request(SECRET, *REQ)
    ts = REQ[3]
    assert verify_request(SECRET, *REQ, sig, now_ms=ts + 299_000)
    assert verify_request(SECRET, *REQ, sig, now_ms=ts - 299_000)
    assert not verify_request(SECRET, *REQ, sig, now_ms=ts + 11 * 60_000)
    assert not verify_request(SECRET, *REQ, sig, now_ms=ts + 5_001, max_skew_ms=5_000)
    assert verify_request(SECRET, *REQ, sig, now_ms=ts + 5_000, max_skew_ms=5_000)


@pytest.mark.parametrize(
    "args",
    [
        ("GET", "/x", "not bytes", 1, 2),
        ("GET", "/x", b"", 1.0, 2),
        ("GET", "/x", b"", 1, True),
        (None, "/x", b"", 1, 2),
    ],
)
def test_request_bad_types(args):
    with pytest.raises((TypeError, ValueError)):
        sign_request(SECRET, *args)
    assert verify_request(SECRET, *args, "0" * 64) is False


def test_request_accepts_bytearray_and_memoryview():
    sig = sign_request(SECRET, *REQ)
    m, p, body, ts, dev = REQ
    assert verify_request(SECRET, m, p, bytearray(body), ts, dev, sig)
    assert verify_request(SECRET, m, p, memoryview(body), ts, dev, sig)


# ---------------------------------------------------------------- cluster id


def test_cluster_id():
    cid = cluster_id(SECRET)
    assert cid == hashlib.sha256(("lanpos-cluster:" + SECRET).encode()).hexdigest()[:12]
    assert len(cid) == 12 and all(c in "0123456789abcdef" for c in cid)
    assert cluster_id(SECRET) == cid
    assert cluster_id(SECRET + "x") != cid
    assert SECRET not in cid
    with pytest.raises(ValueError):
        cluster_id("")
