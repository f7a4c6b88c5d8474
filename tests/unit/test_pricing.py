from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.services.shop.pricing import (
    CartTotals,
    PricedLine,
    PriceLine,
    allocate_proportionally,
    price_cart,
    settle_payments,
    split_refund,
)
from app.utils.errors import ApiError, ValidationError


def line(sku="A", qty=1, unit=100, rate=1900, discount=0, name=None):
    return PriceLine(
        sku=sku,
        name=name or f"Product {sku}",
        quantity=qty,
        unit_price_cents=unit,
        tax_rate_bp=rate,
        discount_cents=discount,
    )


# ------------------------------------------------------------------ price_cart


def test_single_line_no_discount():
    t = price_cart([line(qty=2, unit=500, rate=1900)])
    assert isinstance(t, CartTotals)
    assert t.subtotal_cents == 1000
    assert t.discount_cents == 0
    assert t.total_cents == 1000
    # 1000 * 1900 / 11900 = 159.66 -> 160
    assert t.tax_cents == 160
    assert t.tax_by_rate == {1900: {"gross_cents": 1000, "tax_cents": 160, "net_cents": 840}}
    assert t.lines == [
        PricedLine(
            sku="A",
            name="Product A",
            quantity=2,
            unit_price_cents=500,
            tax_rate_bp=1900,
            discount_cents=0,
            total_cents=1000,
        )
    ]


def test_two_rates_and_line_discount():
    t = price_cart(
        [
            line("BREAD", qty=3, unit=35, rate=700),  # 105
            line("SOAP", qty=1, unit=249, rate=1900, discount=49),  # 200
        ]
    )
    assert t.subtotal_cents == 105 + 249
    assert t.discount_cents == 49
    assert t.total_cents == 305
    assert t.tax_by_rate[700] == {"gross_cents": 105, "tax_cents": 7, "net_cents": 98}
    # 200*1900/11900 = 31.93 -> 32
    assert t.tax_by_rate[1900] == {
        "gross_cents": 200,
        "tax_cents": 32,
        "net_cents": 168,
    }
    assert t.tax_cents == 39
    assert list(t.tax_by_rate) == [700, 1900]


def test_tax_is_computed_once_per_rate_not_per_line():
    # 4 lines of 3 cents at 19 %: per line 3*1900/11900 = 0.48 -> 0 (sum 0),
    # but on the summed 12 cents 1.92 -> 2.
    t = price_cart([line(str(i), unit=3) for i in range(4)])
    assert t.total_cents == 12
    assert t.tax_cents == 2
    assert t.tax_by_rate[1900]["tax_cents"] == 2


def test_cart_discount_allocated_proportionally():
    t = price_cart([line("A", unit=300), line("B", unit=100)], cart_discount_cents=100)
    assert [pl.discount_cents for pl in t.lines] == [75, 25]
    assert [pl.total_cents for pl in t.lines] == [225, 75]
    assert t.discount_cents == 100
    assert t.total_cents == 300


def test_cart_discount_tie_goes_to_earlier_line():
    t = price_cart([line("A", unit=100), line("B", unit=100), line("C", unit=100)], 1)
    assert [pl.discount_cents for pl in t.lines] == [1, 0, 0]
    t = price_cart([line("A", unit=100), line("B", unit=100), line("C", unit=100)], 2)
    assert [pl.discount_cents for pl in t.lines] == [1, 1, 0]


def test_cart_discount_largest_remainder_wins_over_position():
    # quotas 10*100/700=1.43, 10*200/700=2.86, 10*400/700=5.71 -> floors 1,2,5 (8);
    # the 2 cents left go to the largest remainders (.86 then .71): B and C
    t = price_cart([line("A", unit=100), line("B", unit=200), line("C", unit=400)], 10)
    assert [pl.discount_cents for pl in t.lines] == [1, 3, 6]
    assert allocate_proportionally(10, [1, 2, 4]) == [1, 3, 6]


def test_line_discount_and_cart_discount_combine():
    t = price_cart([line("A", unit=1000, discount=200), line("B", unit=200)], 100)
    # after line discounts: 800 and 200 -> cart discount 80 / 20
    assert [pl.discount_cents for pl in t.lines] == [280, 20]
    assert [pl.total_cents for pl in t.lines] == [720, 180]
    assert t.subtotal_cents == 1200
    assert t.discount_cents == 300
    assert t.total_cents == 900


def test_full_discount_gives_zero_total_and_zero_tax():
    t = price_cart([line("A", unit=500, rate=700), line("B", unit=300)], 800)
    assert t.total_cents == 0
    assert t.tax_cents == 0
    assert t.tax_by_rate == {
        700: {"gross_cents": 0, "tax_cents": 0, "net_cents": 0},
        1900: {"gross_cents": 0, "tax_cents": 0, "net_cents": 0},
    }


def test_empty_cart():
    t = price_cart([])
    assert t.total_cents == t.tax_cents == t.subtotal_cents == t.discount_cents == 0
    assert t.lines == [] and t.tax_by_rate == {}
    with pytest.raises(ValidationError):
        price_cart([], 1)


def test_zero_rate_and_free_item():
    t = price_cart([line("A", unit=0, rate=0), line("B", unit=100, rate=0)])
    assert t.tax_by_rate == {0: {"gross_cents": 100, "tax_cents": 0, "net_cents": 100}}


def test_to_dict_is_plain():
    d = price_cart([line()]).to_dict()
    assert d["total_cents"] == 100
    assert d["lines"][0]["sku"] == "A"
    assert isinstance(d["lines"][0], dict)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"qty": 0}, "lines[0].quantity"),
        ({"qty": -1}, "lines[0].quantity"),
        ({"qty": 1.0}, "lines[0].quantity"),
        ({"qty": True}, "lines[0].quantity"),
        ({"qty": 100_001}, "lines[0].quantity"),
        ({"unit": -1}, "lines[0].unit_price_cents"),
        ({"unit": 1.5}, "lines[0].unit_price_cents"),
        ({"unit": "100"}, "lines[0].unit_price_cents"),
        ({"rate": -1}, "lines[0].tax_rate_bp"),
        ({"rate": 10_001}, "lines[0].tax_rate_bp"),
        ({"rate": 19.0}, "lines[0].tax_rate_bp"),
        ({"discount": -1}, "lines[0].discount_cents"),
        ({"discount": 101}, "lines[0].discount_cents"),
        ({"discount": 0.5}, "lines[0].discount_cents"),
        ({"sku": ""}, "lines[0].sku"),
    ],
)
def test_invalid_lines(kwargs, field):
    with pytest.raises(ValidationError) as ei:
        price_cart([line(**kwargs)])
    assert ei.value.details["field"] == field


def test_line_discount_may_equal_line_amount():
    t = price_cart([line(qty=2, unit=50, discount=100)])
    assert t.total_cents == 0


def test_invalid_cart_discount():
    lines = [line(unit=100, discount=10)]
    with pytest.raises(ValidationError) as ei:
        price_cart(lines, 91)  # only 90 left after the line discount
    assert ei.value.details == {"field": "cart_discount_cents", "max_cents": 90}
    for bad in (-1, 1.0, "5", None, True):
        with pytest.raises(ValidationError):
            price_cart(lines, bad)
    assert price_cart(lines, 90).total_cents == 0


def test_not_a_price_line():
    with pytest.raises(ValidationError):
        price_cart([{"sku": "A"}])


# ------------------------------------------------------------------ properties

price_lines = st.builds(
    PriceLine,
    sku=st.text(min_size=1, max_size=5),
    name=st.text(max_size=10),
    quantity=st.integers(min_value=1, max_value=50),
    unit_price_cents=st.integers(min_value=0, max_value=50_000),
    tax_rate_bp=st.sampled_from([0, 500, 700, 1000, 1900, 2100]),
    discount_cents=st.just(0),
)


@st.composite
def carts(draw):
    raw = draw(st.lists(price_lines, min_size=1, max_size=12))
    lines = []
    for pl in raw:
        gross = pl.quantity * pl.unit_price_cents
        d = draw(st.integers(min_value=0, max_value=gross))
        lines.append(PriceLine(pl.sku, pl.name, pl.quantity, pl.unit_price_cents, pl.tax_rate_bp, d))
    remaining = sum(pl.quantity * pl.unit_price_cents - pl.discount_cents for pl in lines)
    cart_discount = draw(st.integers(min_value=0, max_value=remaining))
    return lines, cart_discount


@given(carts())
def test_totals_add_up(cart):
    lines, cart_discount = cart
    t = price_cart(lines, cart_discount)
    assert len(t.lines) == len(lines)
    assert t.subtotal_cents == sum(pl.quantity * pl.unit_price_cents for pl in lines)
    assert t.discount_cents == sum(pl.discount_cents for pl in lines) + cart_discount
    assert t.total_cents == t.subtotal_cents - t.discount_cents
    assert t.total_cents == sum(p.total_cents for p in t.lines)
    assert t.discount_cents == sum(p.discount_cents for p in t.lines)
    for req, p in zip(lines, t.lines, strict=True):
        assert p.total_cents == p.quantity * p.unit_price_cents - p.discount_cents
        assert (p.sku, p.name, p.quantity, p.unit_price_cents, p.tax_rate_bp) == (
            req.sku,
            req.name,
            req.quantity,
            req.unit_price_cents,
            req.tax_rate_bp,
        )
    assert t.tax_cents == sum(v["tax_cents"] for v in t.tax_by_rate.values())
    assert sum(v["gross_cents"] for v in t.tax_by_rate.values()) == t.total_cents
    assert set(t.tax_by_rate) == {pl.tax_rate_bp for pl in lines}
    for v in t.tax_by_rate.values():
        assert v["net_cents"] + v["tax_cents"] == v["gross_cents"]
    for v in t.tax_by_rate.values():
        assert isinstance(v["tax_cents"], int)


@given(carts())
def test_allocation_exact_and_never_negative(cart):
    lines, cart_discount = cart
    t = price_cart(lines, cart_discount)
    shares = [p.discount_cents - req.discount_cents for req, p in zip(lines, t.lines, strict=True)]
    assert sum(shares) == cart_discount
    for req, p, share in zip(lines, t.lines, shares, strict=True):
        assert share >= 0
        assert p.total_cents >= 0
        # each share is within one cent of the exact proportional quota
        remaining = sum(x.quantity * x.unit_price_cents - x.discount_cents for x in lines)
        if remaining:
            own = req.quantity * req.unit_price_cents - req.discount_cents
            quota = Fraction(cart_discount * own, remaining)
            assert abs(share - quota) < 1


@given(carts())
def test_tax_never_exceeds_gross_and_is_rounded_exactly(cart):
    lines, cart_discount = cart
    t = price_cart(lines, cart_discount)
    assert 0 <= t.tax_cents <= t.total_cents
    for rate, v in t.tax_by_rate.items():
        assert 0 <= v["tax_cents"] <= v["gross_cents"]
        exact = Fraction(v["gross_cents"] * rate, 10_000 + rate)
        assert abs(v["tax_cents"] - exact) <= Fraction(1, 2)


@given(
    st.integers(min_value=0, max_value=10**7),
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=20),
)
def test_allocate_proportionally_properties(amount, weights):
    assume(amount <= sum(weights))
    shares = allocate_proportionally(amount, weights)
    assert sum(shares) == amount
    assert all(0 <= s <= w for s, w in zip(shares, weights, strict=True))
    total = sum(weights)
    if total:
        for s, w in zip(shares, weights, strict=True):
            assert abs(s - Fraction(amount * w, total)) < 1


@given(st.integers(min_value=1, max_value=100), st.integers(min_value=2, max_value=10))
def test_allocate_ties_favour_earlier(amount, n):
    shares = allocate_proportionally(amount, [1000] * n)
    assert sorted(shares, reverse=True) == shares  # non-increasing
    assert max(shares) - min(shares) <= 1


def test_allocate_zero_weights():
    assert allocate_proportionally(0, [0, 0]) == [0, 0]
    with pytest.raises(ValueError):
        allocate_proportionally(1, [0, 0])


# ------------------------------------------------------------- settle_payments


def test_exact_card():
    payments, change = settle_payments(1230, [{"method": "card", "amount_cents": 1230}])
    assert change == 0
    assert payments == [{"method": "card", "amount_cents": 1230}]


def test_cash_with_change():
    payments, change = settle_payments(1230, [{"method": "cash", "amount_cents": 2000}])
    assert change == 770
    assert payments == [
        {
            "method": "cash",
            "amount_cents": 1230,
            "tendered_cents": 2000,
            "change_cents": 770,
        }
    ]


def test_split_card_then_cash():
    payments, change = settle_payments(
        1000,
        [
            {"method": "card", "amount_cents": 600},
            {"method": "cash", "amount_cents": 500},
        ],
    )
    assert change == 100
    assert payments == [
        {"method": "card", "amount_cents": 600},
        {
            "method": "cash",
            "amount_cents": 400,
            "tendered_cents": 500,
            "change_cents": 100,
        },
    ]


def test_two_cash_change_from_last_first():
    payments, change = settle_payments(
        1800,
        [
            {"method": "cash", "amount_cents": 2000},
            {"method": "cash", "amount_cents": 500},
        ],
    )
    assert change == 700
    assert [p["change_cents"] for p in payments] == [200, 500]
    assert [p["amount_cents"] for p in payments] == [1800, 0]


def test_payment_short():
    with pytest.raises(ApiError) as ei:
        settle_payments(
            1000,
            [
                {"method": "cash", "amount_cents": 500},
                {"method": "card", "amount_cents": 400},
            ],
        )
    err = ei.value
    assert (err.code, err.status) == ("PAYMENT_SHORT", 400)
    assert err.details == {"total_cents": 1000, "paid_cents": 900}


def test_card_overpay_refused():
    with pytest.raises(ValidationError) as ei:
        settle_payments(1000, [{"method": "card", "amount_cents": 1001}])
    assert ei.value.details["remaining_cents"] == 1000
    with pytest.raises(ValidationError) as ei:
        settle_payments(
            1000,
            [
                {"method": "card", "amount_cents": 700},
                {"method": "card", "amount_cents": 301},
            ],
        )
    assert ei.value.details["remaining_cents"] == 300
    assert ei.value.details["field"] == "payments[1].amount_cents"


def test_card_after_cash_may_cover_the_rest():
    # cash does not reduce what a card may pay: card alone must stay <= total
    payments, change = settle_payments(
        1000,
        [
            {"method": "cash", "amount_cents": 500},
            {"method": "card", "amount_cents": 1000},
        ],
    )
    assert change == 500
    assert payments[0] == {
        "method": "cash",
        "amount_cents": 0,
        "tendered_cents": 500,
        "change_cents": 500,
    }


@pytest.mark.parametrize(
    "payments",
    [
        [],
        [{"method": "cash", "amount_cents": 100}] * 11,
        None,
        "cash",
        [{"method": "cheque", "amount_cents": 1000}],
        [{"method": "CASH", "amount_cents": 1000}],
        [{"amount_cents": 1000}],
        [{"method": "cash", "amount_cents": 0}],
        [{"method": "cash", "amount_cents": -100}],
        [{"method": "cash", "amount_cents": 10.0}],
        [{"method": "cash", "amount_cents": "1000"}],
        [{"method": "cash"}],
        ["cash"],
    ],
)
def test_invalid_payments(payments):
    with pytest.raises(ValidationError):
        settle_payments(1000, payments)


def test_invalid_total():
    with pytest.raises(ValidationError):
        settle_payments(-1, [{"method": "cash", "amount_cents": 100}])
    with pytest.raises(ValidationError):
        settle_payments(1.0, [{"method": "cash", "amount_cents": 100}])


def test_ten_payments_allowed():
    payments, change = settle_payments(1000, [{"method": "cash", "amount_cents": 100}] * 10)
    assert change == 0 and len(payments) == 10


def test_input_not_mutated():
    inp = [{"method": "cash", "amount_cents": 2000}]
    settle_payments(1230, inp)
    assert inp == [{"method": "cash", "amount_cents": 2000}]


payment_st = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["cash", "card"]),
        "amount_cents": st.integers(min_value=1, max_value=20_000),
    }
)


@given(
    st.integers(min_value=0, max_value=50_000),
    st.lists(payment_st, min_size=1, max_size=10),
)
def test_settle_properties(total, payments):
    card_total = sum(p["amount_cents"] for p in payments if p["method"] == "card")
    paid = sum(p["amount_cents"] for p in payments)
    cash = paid - card_total
    try:
        normalized, change = settle_payments(total, payments)
    except ApiError as e:
        # refused only for the documented reasons
        assert paid < total or card_total > total, e
        if e.code == "PAYMENT_SHORT":
            assert paid < total
        return
    assert paid >= total and card_total <= total
    assert change == paid - total
    assert 0 <= change <= cash
    assert sum(p["amount_cents"] for p in normalized) == total
    assert sum(p.get("change_cents", 0) for p in normalized) == change
    for req, out in zip(payments, normalized, strict=True):
        assert out["method"] == req["method"]
        if out["method"] == "cash":
            assert out["tendered_cents"] == req["amount_cents"]
            assert 0 <= out["change_cents"] <= out["tendered_cents"]
            assert out["amount_cents"] == out["tendered_cents"] - out["change_cents"]
        else:
            assert out == req


# ------------------------------------------------------------------ split_refund


def test_refund_of_a_card_sale_goes_back_to_the_card():
    assert split_refund(349, [349], [0]) == [349]
    assert split_refund(100, [349], [0]) == [100]


def test_refund_is_split_in_proportion_to_the_payments():
    # 300 card + 123 cash (net of change); refunding 141 = a third of the sale.
    assert split_refund(141, [300, 123], [0, 0]) == [100, 41]
    # Everything back: each tender gets exactly what it paid.
    assert split_refund(423, [300, 123], [0, 0]) == [300, 123]


def test_refund_remainder_cent_goes_to_the_largest_remainder_then_the_earlier_tender():
    # 1 cent over 1:1 -> exact tie: the earlier tender.
    assert split_refund(1, [50, 50], [0, 0]) == [1, 0]
    # 10 over 200:100 -> 6.67 / 3.33: the larger remainder (the first) gets the extra cent.
    assert split_refund(10, [200, 100], [0, 0]) == [7, 3]
    # 10 over 100:200 -> 3.33 / 6.67: the second has the larger remainder.
    assert split_refund(10, [100, 200], [0, 0]) == [3, 7]


def test_partial_refunds_after_earlier_ones_never_exceed_a_tender():
    paid = [300, 123]
    done = [0, 0]
    for amount in (1, 1, 1, 100, 7, 200):
        parts = split_refund(amount, paid, done)
        done = [d + p for d, p in zip(done, parts, strict=True)]
        assert all(d <= p for d, p in zip(done, paid, strict=True))
    rest = sum(paid) - sum(done)
    assert [d + p for d, p in zip(done, split_refund(rest, paid, done), strict=True)] == paid


def test_refund_after_a_manager_chose_another_tender_uses_what_is_left():
    # 500 card + 500 cash; a manager sent 800 back in cash: cash has no room left.
    assert split_refund(200, [500, 500], [0, 800]) == [200, 0]


@pytest.mark.parametrize("args", [
    (424, [300, 123], [0, 0]),     # more than was paid
    (100, [300, 123], [300, 50]),  # 73 left
    (-1, [100], [0]),
    (1, [100], [0, 0]),
    (1.0, [100], [0]),
    (True, [100], [0]),
])
def test_refund_split_refuses_impossible_input(args):
    with pytest.raises(ValueError):
        split_refund(*args)


@st.composite
def refund_histories(draw):
    """The payments of a sale, then a series of refunds that together stay within it."""
    paid = draw(st.lists(st.integers(min_value=0, max_value=100_000), min_size=1, max_size=10))
    total = sum(paid)
    amounts = []
    left = total
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        amount = draw(st.integers(min_value=0, max_value=left))
        amounts.append(amount)
        left -= amount
    return paid, amounts


@given(refund_histories())
def test_refund_split_is_exact_and_never_exceeds_a_tender(history):
    paid, amounts = history
    done = [0] * len(paid)
    for amount in amounts:
        parts = split_refund(amount, paid, done)
        assert sum(parts) == amount
        assert all(isinstance(p, int) and 0 <= p for p in parts)
        done = [d + p for d, p in zip(done, parts, strict=True)]
        assert all(d <= p for d, p in zip(done, paid, strict=True))
    # What is left refunds every tender up to exactly what it paid.
    final = split_refund(sum(paid) - sum(done), paid, done)
    assert [d + p for d, p in zip(done, final, strict=True)] == paid


@given(st.lists(st.integers(min_value=0, max_value=100_000), min_size=1, max_size=10),
       st.data())
def test_first_refund_is_within_a_cent_of_the_exact_proportion(paid, data):
    assume(sum(paid) > 0)
    amount = data.draw(st.integers(min_value=0, max_value=sum(paid)))
    parts = split_refund(amount, paid, [0] * len(paid))
    for part, p in zip(parts, paid, strict=True):
        assert abs(part - Fraction(amount * p, sum(paid))) < 1
