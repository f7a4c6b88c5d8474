"""Request bodies, validated strictly: money and quantities must be JSON integers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

Quantity = Annotated[StrictInt, Field(gt=0, le=10_000)]
Cents = Annotated[StrictInt, Field(ge=0, le=100_000_000)]
Sku = Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$")]
Text = Annotated[StrictStr, Field(max_length=500)]
Name = Annotated[StrictStr, Field(min_length=1, max_length=200)]
Barcode = Annotated[StrictStr, Field(pattern=r"^[0-9]{8,14}$")]
TaxRate = Annotated[StrictInt, Field(ge=0, le=10_000)]
Pin = Annotated[StrictStr, Field(pattern=r"^[0-9]{4,8}$")]
Username = Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._\-]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LoginBody(Strict):
    username: Username
    pin: StrictStr = Field(max_length=64)


class Approver(Strict):
    username: Username
    pin: StrictStr = Field(max_length=64)


class SaleLineBody(Strict):
    sku: Sku
    quantity: Quantity
    discount_cents: Cents = 0


class PaymentBody(Strict):
    method: Literal["cash", "card"]
    amount_cents: Annotated[StrictInt, Field(gt=0, le=100_000_000)]


class SaleBody(Strict):
    lines: list[SaleLineBody] = Field(min_length=1, max_length=200)
    payments: list[PaymentBody] = Field(min_length=1, max_length=10)
    client_ref: Annotated[StrictStr, Field(min_length=8, max_length=64)] | None = None
    cart_discount_cents: Cents = 0
    approver: Approver | None = None


class RefundLineBody(Strict):
    sku: Sku
    quantity: Quantity


Tender = Literal["cash", "card"]


class RefundBody(Strict):
    lines: list[RefundLineBody] | None = Field(default=None, max_length=200)
    approver: Approver | None = None
    reason: Text | None = None
    # The manager's choice of tender for the money back; absent: the sale's own tenders.
    refund_to: Tender | None = None


class VoidBody(Strict):
    approver: Approver | None = None
    reason: Text | None = None
    refund_to: Tender | None = None


class ProductCreate(Strict):
    sku: Sku
    name: Name
    price_cents: Cents
    barcode: Barcode | None = None
    category: Annotated[StrictStr, Field(min_length=1, max_length=80)] | None = None
    tax_rate_bp: TaxRate = 0
    stock: Annotated[StrictInt, Field(ge=0, le=1_000_000)] = 0
    low_stock_threshold: Annotated[StrictInt, Field(ge=0, le=100_000)] = 5
    active: StrictBool = True


def unchanged() -> Any:
    """Default of an edit's field that must not be null: absent means "leave it as it is",
    an explicit ``null`` fails validation (defaults are not validated, given values are)."""
    return Field(default=None)


class ProductUpdate(Strict):
    base_version: Annotated[StrictInt, Field(ge=1)]
    name: Name = unchanged()
    price_cents: Cents = unchanged()
    barcode: Barcode | None = None  # null clears the barcode
    category: Annotated[StrictStr, Field(min_length=1, max_length=80)] | None = None  # null: none
    tax_rate_bp: TaxRate = unchanged()
    low_stock_threshold: Annotated[StrictInt, Field(ge=0, le=100_000)] = unchanged()
    active: StrictBool = unchanged()
    approver: Approver | None = None


class StockBody(Strict):
    sku: Sku
    quantity: Annotated[StrictInt, Field(ge=-100_000, le=100_000)]
    reason: Text | None = None
    approver: Approver | None = None


class UserCreate(Strict):
    username: Username
    display_name: Annotated[StrictStr, Field(min_length=1, max_length=120)] | None = None
    role: Literal["cashier", "manager", "admin"]
    pin: Pin


class UserUpdate(Strict):
    display_name: Annotated[StrictStr, Field(min_length=1, max_length=120)] = unchanged()
    role: Literal["cashier", "manager", "admin"] = unchanged()
    pin: Pin = unchanged()
    active: StrictBool = unchanged()


class ConflictResolve(Strict):
    resolution: Annotated[StrictStr, Field(min_length=1, max_length=500)]
    recount: Annotated[StrictInt, Field(ge=0, le=1_000_000)] | None = None
