import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.utils.barcode import ean13_check_digit, is_valid_barcode, make_ean13

# Published real-world codes
KNOWN_EAN13 = ["4006381333931", "5901234123457", "4000417025005", "9780306406157"]
KNOWN_UPCA = ["036000291452", "012345678905"]
KNOWN_EAN8 = ["96385074", "40170725", "73513537"]

digits = st.text(alphabet="0123456789", min_size=12, max_size=12)


def test_check_digit_known():
    assert ean13_check_digit("400638133393") == 1
    assert ean13_check_digit("590123412345") == 7
    assert ean13_check_digit("978030640615") == 7
    assert ean13_check_digit("000000000000") == 0


@pytest.mark.parametrize("code", KNOWN_EAN13 + KNOWN_UPCA + KNOWN_EAN8)
def test_known_codes_valid(code):
    assert is_valid_barcode(code)


@pytest.mark.parametrize("code", KNOWN_EAN13 + KNOWN_UPCA + KNOWN_EAN8)
def test_single_digit_error_detected(code):
    last = int(code[-1])
    for wrong in range(10):
        if wrong != last:
            assert not is_valid_barcode(code[:-1] + str(wrong))


@pytest.mark.parametrize(
    "code",
    [
        "",
        "123",
        "4006381333931 ",
        " 4006381333931",
        "400638133393X",
        "40063813339310",  # 14 digits
        "1234567",  # 7 digits
        "4006-381333931",
        "４００６３８１３３３９３１",  # full-width digits
        "٤٠٠٦٣٨١٣٣٣٩٣١",  # Arabic-Indic digits
    ],
)
def test_invalid_shapes(code):
    assert not is_valid_barcode(code)


@pytest.mark.parametrize("bad", [None, 4006381333931, b"4006381333931", ["4"]])
def test_non_strings_are_invalid_not_errors(bad):
    assert is_valid_barcode(bad) is False


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "12345678901",
        "1234567890123",
        "12345678901a",
        "１２３４５６７８９０１２",
        None,
    ],
)
def test_check_digit_input_validation(bad):
    with pytest.raises(ValueError):
        ean13_check_digit(bad)


def test_upca_is_ean13_with_leading_zero():
    for upc in KNOWN_UPCA:
        assert is_valid_barcode("0" + upc)
        assert make_ean13("0" + upc[:-1]) == "0" + upc


@given(digits)
def test_make_ean13_always_valid(prefix):
    code = make_ean13(prefix)
    assert len(code) == 13
    assert code.startswith(prefix)
    assert is_valid_barcode(code)
    assert int(code[-1]) == ean13_check_digit(prefix)


@given(
    digits,
    st.integers(min_value=0, max_value=11),
    st.integers(min_value=1, max_value=9),
)
def test_any_single_digit_change_is_detected(prefix, pos, delta):
    code = make_ean13(prefix)
    changed = code[:pos] + str((int(code[pos]) + delta) % 10) + code[pos + 1 :]
    assert not is_valid_barcode(changed)


@given(digits, st.integers(min_value=0, max_value=11))
def test_adjacent_transposition_mostly_detected(prefix, pos):
    code = make_ean13(prefix)
    a, b = code[pos], code[pos + 1]
    swapped = code[:pos] + b + a + code[pos + 2 :]
    # GS1 mod-10 misses a transposition only when the digits differ by 5
    if a != b and abs(int(a) - int(b)) != 5:
        assert not is_valid_barcode(swapped)
