import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.utils.signing import cluster_id, open_sealed, seal, sign_request, verify_request

SECRET = "s3cr3t-cluster-key-0123456789abcdef"
BODY = {"device_id": 2, "epoch": [3, 1], "role": "client", "last_gseq": 42}
REQ = ("POST", "/api/sync/submit?x=1", b'{"event_id":"abc"}', 1_700_000_000_000, 2)


# --------------------------------------------------------------- sealed messages


def test_a_sealed_body_is_its_json_text_and_the_hmac_of_that_text():
    envelope = seal(SECRET, BODY)
    assert json.loads(envelope["body"]) == BODY
    expected = hmac.new(SECRET.encode(), b"lanpos-msg-v1\n" + envelope["body"].encode(),
                        hashlib.sha256).hexdigest()
    assert envelope["sig"] == expected
    assert open_sealed(SECRET, envelope) == BODY


def test_a_message_signature_never_passes_for_a_request_signature():
    envelope = seal(SECRET, BODY)
    assert not verify_request(SECRET, "GET", envelope["body"], b"", 1, 2, envelope["sig"])


def tampered(envelope: dict) -> list[object]:
    body, sig = envelope["body"], envelope["sig"]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    return [
        {"body": body.replace("42", "43"), "sig": sig},        # altered text
        {"body": body.replace(",", ", "), "sig": sig},         # same JSON, other text
        {"body": body, "sig": flipped},
        {"body": body, "sig": sig.upper()},
        {"body": json.loads(body), "sig": sig},                # a parsed body
        {"body": body},
        {"sig": sig},
        [body, sig],
        None,
    ]


def test_a_tampered_or_malformed_envelope_opens_to_nothing():
    envelope = seal(SECRET, BODY)
    for bad in tampered(envelope):
        assert open_sealed(SECRET, bad) is None, bad
    assert open_sealed("other-secret", envelope) is None
    assert open_sealed("", envelope) is None


@pytest.mark.parametrize("bad_sig", ["", None, 123, b"abc", "ä" * 64, "0" * 64])
def test_bad_signatures_open_to_nothing_and_do_not_raise(bad_sig):
    assert open_sealed(SECRET, {"body": seal(SECRET, BODY)["body"], "sig": bad_sig}) is None


def test_only_a_signed_json_object_opens():
    for text in ("[1, 2]", "42", "not json", "\ud800"):
        envelope = {"body": text, "sig": hmac.new(SECRET.encode(), b"lanpos-msg-v1\n"
                                                  + text.encode("utf-8", "surrogatepass"),
                                                  hashlib.sha256).hexdigest()}
        assert open_sealed(SECRET, envelope) is None, text


def test_unsendable_bodies_and_an_empty_secret_are_refused():
    with pytest.raises(ValueError):
        seal(SECRET, {"amount": float("nan")})
    with pytest.raises(ValueError):
        seal("", BODY)


@given(
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=6),
    st.text(min_size=1, max_size=20),
)
def test_seal_open_roundtrip(body, secret):
    envelope = seal(secret, body)
    assert open_sealed(secret, envelope) == body
    assert open_sealed(secret + "x", envelope) is None


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
