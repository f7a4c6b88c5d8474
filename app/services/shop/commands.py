"""Typed commands: the one definition of every event type's payload.

A use case builds one of these; `journal_command` turns it into a journal event with the
audit entry given as an argument, and `parse_payload` reads a journaled payload back as
its command (strictly: an unknown or missing field is an error, so a payload and its
definition cannot drift apart unseen). The journal itself never sees these classes: it
stores `type` and `payload()` and hands them back to the shop's state machine.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, TypedDict


class SaleLine(TypedDict):
    sku: str
    name: str
    quantity: int
    unit_price_cents: int
    discount_cents: int
    tax_rate_bp: int
    total_cents: int


class RefundLine(TypedDict):
    sku: str
    quantity: int
    amount_cents: int


class Tender(TypedDict, total=False):
    method: str
    amount_cents: int
    tendered_cents: int


class PayloadError(ValueError):
    """A payload that does not match its command's definition."""


@dataclass(frozen=True, kw_only=True)
class Command:
    """One change the shop asks the journal to make (base class: subclasses set TYPE)."""

    TYPE: ClassVar[str] = ""
    # Stamped by the journal when the event is made (`Journal.new_event`), when missing.
    created_ms: int | None = None

    def payload(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if data.get("created_ms") is None:
            data.pop("created_ms", None)
        return data

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "Command":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(payload) - names
        if unknown:
            raise PayloadError(f"{cls.TYPE}: unknown fields {sorted(unknown)}")
        try:
            return cls(**payload)
        except TypeError as exc:  # a required field is missing
            raise PayloadError(f"{cls.TYPE}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class CategoryCreate(Command):
    TYPE: ClassVar[str] = "category.create"
    name: str


@dataclass(frozen=True, kw_only=True)
class ProductCreate(Command):
    TYPE: ClassVar[str] = "product.create"
    sku: str
    name: str
    price_cents: int
    barcode: str | None = None
    category: str | None = None
    tax_rate_bp: int = 0
    stock: int = 0
    low_stock_threshold: int = 5
    active: bool = True


@dataclass(frozen=True, kw_only=True)
class ProductUpdate(Command):
    """An edit at `base_version` (carried on the event, not in the payload)."""

    TYPE: ClassVar[str] = "product.update"
    sku: str
    changes: dict[str, Any]
    approver: str | None = None


@dataclass(frozen=True, kw_only=True)
class StockChange(Command):
    """A change of one product's stock; the two kinds share one payload."""

    sku: str
    quantity: int
    reason: str | None = None
    approver: str | None = None


@dataclass(frozen=True, kw_only=True)
class StockReceive(StockChange):
    TYPE: ClassVar[str] = "stock.receive"


@dataclass(frozen=True, kw_only=True)
class StockAdjust(StockChange):
    TYPE: ClassVar[str] = "stock.adjust"


@dataclass(frozen=True, kw_only=True)
class SaleCreate(Command):
    TYPE: ClassVar[str] = "sale.create"
    sale_id: str
    receipt_no: str
    receipt_seq: int
    device_id: int
    client_ref: str | None
    cashier: str
    approver: str | None
    lines: list[SaleLine]
    subtotal_cents: int
    discount_cents: int
    total_cents: int
    tax_cents: int
    tax_by_rate: dict[str, int]
    payments: list[Tender]
    paid_cents: int
    change_cents: int


@dataclass(frozen=True, kw_only=True)
class SaleRefund(Command):
    TYPE: ClassVar[str] = "sale.refund"
    refund_id: str
    sale_id: str
    lines: list[RefundLine]
    amount_cents: int
    tax_cents: int = 0
    method: str = "cash"
    tenders: list[Tender] | None = None
    refund_to: str | None = None
    approver: str | None = None
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class SaleVoid(SaleRefund):
    TYPE: ClassVar[str] = "sale.void"


@dataclass(frozen=True, kw_only=True)
class UserCreate(Command):
    TYPE: ClassVar[str] = "user.create"
    username: str
    display_name: str
    role: str
    pin_hash: str
    active: bool = True


@dataclass(frozen=True, kw_only=True)
class UserUpdate(Command):
    """`rehash`: the same PIN under the current KDF (ends no session)."""

    TYPE: ClassVar[str] = "user.update"
    username: str
    changes: dict[str, Any]
    rehash: bool = False

    def payload(self) -> dict[str, Any]:
        data = super().payload()
        if not self.rehash:
            data.pop("rehash")
        return data


@dataclass(frozen=True, kw_only=True)
class UserLoginFailed(Command):
    TYPE: ClassVar[str] = "user.login_failed"
    username: str
    purpose: str
    device_id: int


@dataclass(frozen=True, kw_only=True)
class UserUnlock(Command):
    TYPE: ClassVar[str] = "user.unlock"
    username: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class ConflictRecord(Command):
    """A decision the master derives itself (an oversell, a rejected edit, a refiled receipt)."""

    TYPE: ClassVar[str] = "conflict.record"
    conflict_id: str
    kind: str
    decision: str
    sku: str | None = None
    event_id: str | None = None
    origin_device: int | None = None
    user: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ConflictResolve(Command):
    TYPE: ClassVar[str] = "conflict.resolve"
    conflict_id: str
    resolution: str
    recount: int | None = None


COMMANDS: dict[str, type[Command]] = {cls.TYPE: cls for cls in (
    CategoryCreate, ProductCreate, ProductUpdate, StockReceive, StockAdjust, SaleCreate,
    SaleRefund, SaleVoid, UserCreate, UserUpdate, UserLoginFailed, UserUnlock,
    ConflictRecord, ConflictResolve)}


def parse_payload(type_: str, payload: dict[str, Any]) -> Command:
    """A journaled payload read back as its command; PayloadError if it does not fit."""
    cls = COMMANDS.get(type_)
    if cls is None:
        raise PayloadError(f"unknown event type {type_!r}")
    return cls.from_payload(payload)
