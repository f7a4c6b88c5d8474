"""Money helpers and the API error types they raise."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.utils.errors import (
    ApiError,
    Conflict,
    Forbidden,
    Locked,
    NotFound,
    OutOfStock,
    ServiceUnavailable,
    Unauthorized,
    ValidationError,
)
from app.utils.money import format_cents, require_cents, round_half_up_div

# ---------------------------------------------------------------- format_cents


@pytest.mark.parametrize(
    ("cents", "expected"),
    [
        (1230, "€12.30"),
        (-5, "-€0.05"),
        (0, "€0.00"),
        (1, "€0.01"),
        (100, "€1.00"),
        (-100, "-€1.00"),
        (123456789, "€1234567.89"),
    ],
)
def test_format_cents(cents, expected):
    assert format_cents(cents) == expected


def test_format_cents_other_currency():
    assert format_cents(199, "$") == "$1.99"
    assert format_cents(-199, "CHF ") == "-CHF 1.99"


@pytest.mark.parametrize("bad", [1.5, "12", None, True, Decimal(1)])
def test_format_cents_refuses_non_int(bad):
    with pytest.raises(TypeError):
        format_cents(bad)


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_format_cents_roundtrips(cents):
    s = format_cents(cents)
    negative = s.startswith("-")
    body = s.removeprefix("-").removeprefix("€")
    major, minor = body.split(".")
    assert len(minor) == 2
    value = int(major) * 100 + int(minor)
    assert (-value if negative else value) == cents


# ----------------------------------------------------------- round_half_up_div


@pytest.mark.parametrize(
    ("n", "d", "expected"),
    [
        (5, 10, 1),
        (4, 10, 0),
        (15, 10, 2),
        (14, 10, 1),
        (-5, 10, -1),
        (-4, 10, 0),
        (-15, 10, -2),
        (5, -10, -1),
        (-5, -10, 1),
        (0, 7, 0),
        (10, 5, 2),
        # tax on €10.00 at 19 %: 1000*1900/11900 = 159.66.. -> 160
        (1000 * 1900, 11900, 160),
        # tax on €1.07 at 7 %: exactly 7.0
        (107 * 700, 10700, 7),
    ],
)
def test_round_half_up_div_examples(n, d, expected):
    assert round_half_up_div(n, d) == expected


def _reference(n: int, d: int) -> int:
    q = Fraction(n, d)
    mag = abs(q)
    r = int(mag + Fraction(1, 2))  # floor(|q| + 1/2)
    return r if q >= 0 else -r


@given(
    st.integers(min_value=-(10**15), max_value=10**15),
    st.integers(min_value=-(10**6), max_value=10**6).filter(lambda d: d != 0),
)
def test_round_half_up_div_matches_exact_reference(n, d):
    result = round_half_up_div(n, d)
    assert result == _reference(n, d)
    # within half a unit of the exact quotient
    assert abs(Fraction(result) - Fraction(n, d)) <= Fraction(1, 2)


@given(
    st.integers(min_value=-(10**12), max_value=10**12),
    st.integers(min_value=1, max_value=10**6),
)
def test_round_half_up_div_is_symmetric(n, d):
    assert round_half_up_div(-n, d) == -round_half_up_div(n, d)
    assert round_half_up_div(n, -d) == -round_half_up_div(n, d)


def test_round_half_up_div_errors():
    with pytest.raises(ZeroDivisionError):
        round_half_up_div(1, 0)
    with pytest.raises(TypeError):
        round_half_up_div(1.0, 2)
    with pytest.raises(TypeError):
        round_half_up_div(1, True)


# --------------------------------------------------------------- require_cents


def test_require_cents_accepts_ints():
    assert require_cents(0, "x") == 0
    assert require_cents(1230, "x") == 1230
    assert require_cents(10**10, "x") == 10**10
    assert require_cents(-50, "x", allow_negative=True) == -50


@pytest.mark.parametrize("bad", [True, False, 12.3, 12.0, "1230", None, [1], {"a": 1}, Decimal(1)])
def test_require_cents_refuses_non_integers(bad):
    with pytest.raises(ValidationError) as ei:
        require_cents(bad, "price_cents")
    err = ei.value
    assert err.code == "VALIDATION_ERROR"
    assert err.status == 400
    assert err.details == {"field": "price_cents"}
    assert "price_cents" in err.message


def test_require_cents_ranges():
    with pytest.raises(ValidationError):
        require_cents(-1, "x")
    with pytest.raises(ValidationError):
        require_cents(0, "x", allow_zero=False)
    assert require_cents(1, "x", allow_zero=False) == 1
    with pytest.raises(ValidationError):
        require_cents(10**10 + 1, "x")
    with pytest.raises(ValidationError):
        require_cents(101, "x", maximum=100)
    assert require_cents(100, "x", maximum=100) == 100
    with pytest.raises(ValidationError):
        require_cents(-101, "x", allow_negative=True, maximum=100)


@given(st.integers(min_value=-(10**11), max_value=10**11))
def test_require_cents_property(value):
    ok = 0 <= value <= 10**10
    if ok:
        assert require_cents(value, "v") == value
    else:
        with pytest.raises(ValidationError):
            require_cents(value, "v")


# ---------------------------------------------------------------------- errors


def test_api_error_to_dict_without_details():
    err = ApiError("SOMETHING", "went wrong", 418)
    assert err.code == "SOMETHING"
    assert err.message == "went wrong"
    assert err.status == 418
    assert err.details is None
    assert err.to_dict() == {
        "success": False,
        "error": {"code": "SOMETHING", "message": "went wrong"},
    }
    assert str(err) == "went wrong"
    assert isinstance(err, Exception)


def test_api_error_defaults_and_details():
    err = ApiError("X", "m", details={"a": 1})
    assert err.status == 400
    assert err.to_dict() == {
        "success": False,
        "error": {"code": "X", "message": "m", "details": {"a": 1}},
    }
    # given-but-empty details are still reported
    assert ApiError("X", "m", details={}).to_dict()["error"]["details"] == {}


@pytest.mark.parametrize(
    ("cls", "code", "status"),
    [
        (NotFound, "NOT_FOUND", 404),
        (Unauthorized, "UNAUTHORIZED", 401),
        (Forbidden, "FORBIDDEN", 403),
        (Conflict, "CONFLICT", 409),
        (ServiceUnavailable, "MASTER_UNAVAILABLE", 503),
    ],
)
def test_preset_errors(cls, code, status):
    err = cls()
    assert isinstance(err, ApiError)
    assert (err.code, err.status) == (code, status)
    assert err.message
    assert "details" not in err.to_dict()["error"]
    err = cls("custom", {"k": "v"})
    assert err.message == "custom"
    assert err.to_dict()["error"] == {
        "code": code,
        "message": "custom",
        "details": {"k": "v"},
    }


def test_validation_error():
    err = ValidationError("bad qty", {"field": "quantity"})
    assert (err.code, err.status, err.message) == ("VALIDATION_ERROR", 400, "bad qty")
    assert err.details == {"field": "quantity"}
    assert ValidationError("m").details is None


def test_out_of_stock():
    err = OutOfStock("BAK-001", 1, 3)
    assert (err.code, err.status) == ("OUT_OF_STOCK", 409)
    assert err.details == {"sku": "BAK-001", "available": 1, "requested": 3}
    assert err.to_dict()["error"]["details"] == {
        "sku": "BAK-001",
        "available": 1,
        "requested": 3,
    }
    assert "BAK-001" in err.message


@pytest.mark.parametrize(("left", "expected"), [(30, 30), (29.2, 30), (0, 0), (-3, 0)])
def test_locked(left, expected):
    err = Locked(left)
    assert (err.code, err.status) == ("LOCKED", 423)
    assert err.details == {"retry_after_s": expected}
    assert isinstance(err.details["retry_after_s"], int)


def test_errors_are_catchable_as_api_error():
    with pytest.raises(ApiError):
        raise NotFound("no such product")
