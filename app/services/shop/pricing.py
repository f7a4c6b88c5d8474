"""Cart pricing in exact integer cents (pure: no Flask, no DB).

Prices are **gross** (tax included, as on the shelf label). The rules, in order:

1. Line gross = ``quantity * unit_price_cents - line discount``. A line discount
   must be within ``0 .. quantity * unit_price_cents``.
2. A cart discount must be within ``0 .. sum of line grosses``. It is allocated
   to the lines in proportion to their gross by the largest-remainder method:
   every line gets ``floor(D * gross_i / G)``, and the cents still missing go one
   each to the lines with the largest remainders (ties: the earlier line). The
   allocations therefore add up to the discount exactly, and no line ever gets
   more than its own gross (so no line goes negative). A line's
   ``discount_cents`` is its own discount plus its share of the cart discount.
3. Cart total = sum of the lines' gross after discounts.
4. Tax is computed **once per rate on the summed gross of that rate**:
   ``tax = round_half_up_div(gross * rate_bp, 10000 + rate_bp)`` and
   ``net = gross - tax``. Per-line tax is deliberately not computed and summed,
   because per-line rounding makes the receipt's tax lines disagree with the
   total by a cent now and then. The cart tax is the sum of the per-rate taxes.

``settle_payments`` applies the tender rules: change comes only from cash, a
card is never charged more than what is still due.

``split_refund`` says which tenders a refund pays back: the sale's own, in proportion
to what each still has to give back, never more to one than it paid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from app.utils.errors import ApiError, ValidationError
from app.utils.money import require_cents, round_half_up_div

MAX_QUANTITY = 100_000
MAX_TAX_RATE_BP = 10_000  # 100 %
MAX_PAYMENTS = 10
PAYMENT_METHODS = ("cash", "card")


@dataclass(frozen=True)
class PriceLine:
    """One cart line as requested (unit price is gross, in cents)."""

    sku: str
    name: str
    quantity: int
    unit_price_cents: int
    tax_rate_bp: int
    discount_cents: int = 0


@dataclass(frozen=True)
class PricedLine:
    """A priced line. ``discount_cents`` = own discount + share of the cart discount."""

    sku: str
    name: str
    quantity: int
    unit_price_cents: int
    tax_rate_bp: int
    discount_cents: int
    total_cents: int  # gross after all discounts


@dataclass(frozen=True)
class CartTotals:
    """The priced cart. ``tax_by_rate`` maps rate_bp -> gross/tax/net cents."""

    lines: list[PricedLine]
    subtotal_cents: int  # sum of quantity * unit price, before any discount
    discount_cents: int  # all line discounts + the cart discount
    total_cents: int
    tax_cents: int
    tax_by_rate: dict[int, dict]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (rate keys stay ints; json turns them into strings)."""
        return asdict(self)


def _require_int_range(value: Any, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer", {"field": field})
    if not lo <= value <= hi:
        raise ValidationError(f"{field} must be between {lo} and {hi}", {"field": field})
    return value


def allocate_proportionally(amount: int, weights: list[int]) -> list[int]:
    """Split ``amount`` over ``weights`` by the largest-remainder method.

    Exact: the shares sum to ``amount``. Each share is ``floor`` or ``ceil`` of
    ``amount * w / sum(weights)``; leftover cents go to the largest remainders,
    ties to the earlier index. Requires ``0 <= amount <= sum(weights)`` when used
    for discounts, which guarantees ``share_i <= weights[i]``.
    """
    total = sum(weights)
    if total == 0:
        if amount != 0:
            raise ValueError("cannot allocate a non-zero amount over zero weights")
        return [0] * len(weights)
    shares = []
    remainders = []
    for w in weights:
        q, r = divmod(amount * w, total)
        shares.append(q)
        remainders.append(r)
    leftover = amount - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for i in order[:leftover]:
        shares[i] += 1
    return shares


def split_refund(amount_cents: int, paid_cents: list[int], refunded_cents: list[int]) -> list[int]:
    """Split a refund over the sale's tenders: how much goes back to each.

    ``paid_cents[i]``: what tender ``i`` contributed to the sale (cash net of change);
    ``refunded_cents[i]``: what earlier refunds already gave back to it. Each tender's
    *room* is ``max(0, paid - refunded)``; the refund is split over the rooms by
    :func:`allocate_proportionally` (largest remainder; leftover cents to the largest
    remainders, ties to the earlier tender). So the parts add up to the refund exactly,
    no tender ever gets back more than it paid in total over all refunds, the first
    refund is in proportion to the payments, and refunding everything that is left
    gives every tender exactly its room. Raises ValueError if the refund exceeds the
    total room or the inputs are not non-negative integers of equal length.
    """
    if len(paid_cents) != len(refunded_cents):
        raise ValueError("paid_cents and refunded_cents differ in length")
    for value in (amount_cents, *paid_cents, *refunded_cents):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("amounts must be non-negative integer cents")
    room = [max(0, paid - done) for paid, done in zip(paid_cents, refunded_cents, strict=True)]
    if amount_cents > sum(room):
        raise ValueError(f"a refund of {amount_cents} exceeds the {sum(room)} left to give back")
    return allocate_proportionally(amount_cents, room)


def _validate_line(line: PriceLine, idx: int) -> int:
    """Validate one line and return its gross before discounts."""
    if not isinstance(line, PriceLine):
        raise ValidationError(f"lines[{idx}] must be a PriceLine", {"field": f"lines[{idx}]"})
    if not isinstance(line.sku, str) or not line.sku:
        raise ValidationError(
            f"lines[{idx}].sku must be a non-empty string",
            {"field": f"lines[{idx}].sku"},
        )
    if not isinstance(line.name, str):
        raise ValidationError(f"lines[{idx}].name must be a string", {"field": f"lines[{idx}].name"})
    qty = _require_int_range(line.quantity, f"lines[{idx}].quantity", 1, MAX_QUANTITY)
    unit = require_cents(line.unit_price_cents, f"lines[{idx}].unit_price_cents")
    _require_int_range(line.tax_rate_bp, f"lines[{idx}].tax_rate_bp", 0, MAX_TAX_RATE_BP)
    gross = qty * unit
    field = f"lines[{idx}].discount_cents"
    discount = require_cents(line.discount_cents, field)
    if discount > gross:
        raise ValidationError(
            f"{field} exceeds the line amount",
            {"field": field, "max_cents": gross},
        )
    return gross


def price_cart(lines: list[PriceLine], cart_discount_cents: int = 0) -> CartTotals:
    """Price a cart; see the module docstring for the exact rules.

    An empty cart prices to all zeros (callers that sell must refuse it).
    Raises ValidationError for out-of-range quantities, prices or discounts.
    """
    lines = list(lines)
    line_gross = [_validate_line(line, i) for i, line in enumerate(lines)]
    after_line = [g - line.discount_cents for g, line in zip(line_gross, lines, strict=True)]
    cart_discount = require_cents(cart_discount_cents, "cart_discount_cents")
    if cart_discount > sum(after_line):
        raise ValidationError(
            "cart_discount_cents exceeds the cart amount",
            {"field": "cart_discount_cents", "max_cents": sum(after_line)},
        )
    shares = allocate_proportionally(cart_discount, after_line)

    priced: list[PricedLine] = []
    gross_by_rate: dict[int, int] = {}
    for line, gross, share in zip(lines, line_gross, shares, strict=True):
        discount = line.discount_cents + share
        total = gross - discount
        priced.append(
            PricedLine(
                sku=line.sku,
                name=line.name,
                quantity=line.quantity,
                unit_price_cents=line.unit_price_cents,
                tax_rate_bp=line.tax_rate_bp,
                discount_cents=discount,
                total_cents=total,
            )
        )
        gross_by_rate[line.tax_rate_bp] = gross_by_rate.get(line.tax_rate_bp, 0) + total

    tax_by_rate: dict[int, dict] = {}
    for rate in sorted(gross_by_rate):
        gross = gross_by_rate[rate]
        tax = round_half_up_div(gross * rate, 10_000 + rate)
        tax_by_rate[rate] = {
            "gross_cents": gross,
            "tax_cents": tax,
            "net_cents": gross - tax,
        }

    subtotal = sum(line_gross)
    total = sum(p.total_cents for p in priced)
    return CartTotals(
        lines=priced,
        subtotal_cents=subtotal,
        discount_cents=subtotal - total,
        total_cents=total,
        tax_cents=sum(v["tax_cents"] for v in tax_by_rate.values()),
        tax_by_rate=tax_by_rate,
    )


def settle_payments(total_cents: int, payments: list[dict]) -> tuple[list[dict], int]:
    """Check the tender against the total and work out the change.

    ``payments``: 1..10 entries ``{"method": "cash"|"card", "amount_cents": int}``
    in the order taken; for cash the amount is what the customer handed over.
    Rules: each card payment is at most what remains due after the earlier card
    payments (a card is never overcharged, so there is no change from a card);
    the sum must cover the total, else ``PAYMENT_SHORT``; change comes from cash
    only.

    Returns ``(normalized, change_cents)``. In ``normalized`` every entry has
    ``method`` and ``amount_cents`` = what it contributes to the sale, so the
    amounts always add up to ``total_cents`` exactly; cash entries also carry
    ``tendered_cents`` and ``change_cents`` (``amount = tendered - change``).
    Change is taken from the last cash entries first.
    """
    total = require_cents(total_cents, "total_cents")
    if not isinstance(payments, (list, tuple)) or not 1 <= len(payments) <= MAX_PAYMENTS:
        raise ValidationError(
            f"payments must be a list of 1 to {MAX_PAYMENTS} entries",
            {"field": "payments"},
        )

    parsed: list[tuple[str, int]] = []
    card_paid = 0
    for i, p in enumerate(payments):
        if not isinstance(p, dict):
            raise ValidationError(f"payments[{i}] must be an object", {"field": f"payments[{i}]"})
        method = p.get("method")
        if method not in PAYMENT_METHODS:
            raise ValidationError(
                f"payments[{i}].method must be one of {', '.join(PAYMENT_METHODS)}",
                {"field": f"payments[{i}].method"},
            )
        amount = require_cents(p.get("amount_cents"), f"payments[{i}].amount_cents", allow_zero=False)
        if method != "cash":
            remaining = total - card_paid
            if amount > remaining:
                raise ValidationError(
                    f"payments[{i}]: a {method} payment cannot exceed the amount "
                    "still due (no change is given on cards)",
                    {
                        "field": f"payments[{i}].amount_cents",
                        "remaining_cents": remaining,
                        "amount_cents": amount,
                    },
                )
            card_paid += amount
        parsed.append((method, amount))

    paid = sum(a for _, a in parsed)
    if paid < total:
        raise ApiError(
            "PAYMENT_SHORT",
            f"payments cover {paid} of {total} cents",
            400,
            {"total_cents": total, "paid_cents": paid},
        )
    change = paid - total
    cash_tendered = sum(a for m, a in parsed if m == "cash")
    # Guaranteed by the card rule (card_paid <= total); kept as a guard.
    if change > cash_tendered:  # pragma: no cover
        raise ValidationError("change exceeds the cash tendered")

    change_left = change
    change_for: dict[int, int] = {}
    for i in reversed(range(len(parsed))):
        method, amount = parsed[i]
        if method == "cash":
            take = min(amount, change_left)
            change_for[i] = take
            change_left -= take

    normalized: list[dict] = []
    for i, (method, amount) in enumerate(parsed):
        if method == "cash":
            c = change_for[i]
            normalized.append(
                {
                    "method": method,
                    "amount_cents": amount - c,
                    "tendered_cents": amount,
                    "change_cents": c,
                }
            )
        else:
            normalized.append({"method": method, "amount_cents": amount})
    return normalized, change
