"""Typed models of the billing API's usage-billing resources.

Request models (:class:`EventInput`, :class:`MeterAggregation`, :class:`MeterFilter`,
:class:`FilterCondition`) check the API's documented limits when they are built and raise
:class:`~dodo_ingest.EventValidationError` (events) or :class:`ValueError` (meters), so that a
bad value fails in the caller rather than in a later request. Response models are built with
``from_dict`` and ignore fields they do not know, so a newer API does not break older clients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import islice
from typing import Any, Literal

from ._errors import EventValidationError

__all__ = [
    "MAX_BATCH_SIZE",
    "MAX_METADATA_KEYS",
    "MAX_METADATA_KEY_LENGTH",
    "MAX_METADATA_VALUE_LENGTH",
    "AggregationType",
    "CreditBalance",
    "CreditEntitlement",
    "CreditGrant",
    "CreditLedgerEntry",
    "Event",
    "EventInput",
    "FilterCondition",
    "FilterOperator",
    "GrantStatus",
    "IngestResult",
    "LedgerTransactionType",
    "Metadata",
    "MetadataValue",
    "Meter",
    "MeterAggregation",
    "MeterFilter",
    "MeterUsage",
    "OverageBehavior",
    "TimeInterval",
    "UsagePeriod",
    "WebhookEndpoint",
    "format_timestamp",
    "parse_timestamp",
    "validate_metadata",
]

MetadataValue = str | int | float | bool
Metadata = Mapping[str, MetadataValue]
AggregationType = Literal["count", "sum", "max", "last"]
FilterOperator = Literal[
    "equals",
    "not_equals",
    "greater_than",
    "greater_than_or_equals",
    "less_than",
    "less_than_or_equals",
    "contains",
    "does_not_contain",
]
GrantStatus = Literal["active", "expired", "depleted"]
OverageBehavior = Literal[
    "forgive_at_reset", "invoice_at_billing", "carry_deficit", "carry_deficit_auto_repay"
]
TimeInterval = Literal["Day", "Week", "Month", "Year"]
LedgerTransactionType = Literal[
    "credit_added",
    "credit_deducted",
    "credit_expired",
    "credit_rolled_over",
    "rollover_forfeited",
    "overage_charged",
    "overage_reset",
    "auto_top_up",
    "manual_adjustment",
    "refund",
]

MAX_BATCH_SIZE = 1000
"""Most events one ``POST /events/ingest`` request may carry."""
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 100
MAX_METADATA_VALUE_LENGTH = 500
MAX_FILTER_CLAUSES = 10
MAX_FILTER_DEPTH = 3
"""Nested filter levels allowed below the top filter (the deepest holds conditions only)."""

_AGGREGATIONS = frozenset(("count", "sum", "max", "last"))
_OPERATORS = frozenset(FilterOperator.__args__)  # type: ignore[attr-defined]


def _encodable(value: str) -> bool:
    """True when ``value`` can be sent as UTF-8 (no lone surrogates)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_NOT_UTF8 = "must be valid Unicode text (it holds a lone surrogate, which UTF-8 cannot encode)"


def validate_metadata(
    metadata: Mapping[str, object], *, field_name: str = "metadata"
) -> dict[str, MetadataValue]:
    """Check ``metadata`` against the API's limits and return a plain ``dict`` copy of it.

    Limits: at most 50 keys; keys are non-empty strings of at most 100 characters; values are
    ``str`` (at most 500 characters), ``int`` within int64, finite ``float`` or ``bool``, never
    ``None``, objects or arrays. Raises :class:`EventValidationError` naming the key and the
    limit.

    ``metadata`` is read once, into the copy that is checked and returned: subclasses of
    ``str``, ``int`` and ``float`` (``StrEnum``, ``IntEnum`` members...) become the plain type,
    so what is returned is exactly what was checked and ``json`` always encodes it, whatever the
    mapping does when read again.
    """
    snapshot = metadata.copy() if type(metadata) is dict else _snapshot(metadata, field_name)
    if len(snapshot) > MAX_METADATA_KEYS:
        raise EventValidationError(
            field_name, f"at most {MAX_METADATA_KEYS} keys allowed, got {len(snapshot)}"
        )
    for key, value in snapshot.items():
        # Plain values that obviously pass; everything else goes to _checked_value.
        if type(key) is str and 0 < len(key) <= MAX_METADATA_KEY_LENGTH and key.isascii():
            kind = type(value)
            if kind is str:
                if len(value) <= MAX_METADATA_VALUE_LENGTH and value.isascii():
                    continue
            elif kind is int:
                if _INT64_MIN <= value <= _INT64_MAX:
                    continue
            elif kind is float:
                if _isfinite(value):
                    continue
            elif kind is bool:
                continue
        snapshot[key] = _checked_value(field_name, key, value)  # same key: no resize
    return snapshot


_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_isfinite = math.isfinite


def _snapshot(metadata: object, field_name: str) -> dict[Any, Any]:
    """``metadata.items()`` read once into a ``dict``, or ``EventValidationError``."""
    if not isinstance(metadata, Mapping):
        raise EventValidationError(field_name, f"must be a mapping, got {type(metadata).__name__}")
    try:
        items = list(islice(metadata.items(), MAX_METADATA_KEYS + 1))
        snapshot = dict(items)
    except Exception as exc:
        raise EventValidationError(field_name, f"could not be read ({_reason(exc)})") from exc
    if len(items) > MAX_METADATA_KEYS:
        raise EventValidationError(
            field_name, f"at most {MAX_METADATA_KEYS} keys allowed, got more than that"
        )
    return snapshot


def _checked_value(field_name: str, key: object, value: object) -> MetadataValue:
    """``value`` as a plain ``str``/``int``/``float``/``bool`` within the limits, or
    ``EventValidationError`` naming ``key`` and the limit."""
    if type(key) is not str:
        raise EventValidationError(field_name, f"keys must be strings, got {type(key).__name__}")
    if not key or len(key) > MAX_METADATA_KEY_LENGTH:
        raise EventValidationError(
            f"{field_name}.{key[:40]}",
            f"keys must be 1 to {MAX_METADATA_KEY_LENGTH} characters, got {len(key)}",
        )
    if not _encodable(key):
        raise EventValidationError(field_name, f"keys {_NOT_UTF8}")
    where = f"{field_name}.{key}"
    kind = type(value)  # the real class: isinstance() would believe a lying __class__
    plain: MetadataValue
    if kind is bool:
        return value  # type: ignore[return-value]
    if issubclass(kind, str):
        plain = str.__str__(value)
        if len(plain) > MAX_METADATA_VALUE_LENGTH:
            raise EventValidationError(
                where,
                f"string values must be at most {MAX_METADATA_VALUE_LENGTH} characters, "
                f"got {len(plain)}",
            )
        if not _encodable(plain):
            raise EventValidationError(where, _NOT_UTF8)
    elif issubclass(kind, int):
        plain = int.__int__(value)  # type: ignore[arg-type]
        if not _INT64_MIN <= plain <= _INT64_MAX:
            raise EventValidationError(
                where, "integers must fit in int64 (-2**63 to 2**63 - 1); the API refuses others"
            )
    elif issubclass(kind, float):
        plain = float.__float__(value)  # type: ignore[arg-type]
        if not _isfinite(plain):
            raise EventValidationError(where, "numbers must be finite")
    else:
        raise EventValidationError(
            where,
            "values must be str, int, float or bool (no None, objects or arrays), "
            f"got {kind.__name__}",
        )
    return plain


def _reason(exc: BaseException) -> str:
    """``"KeyError: 'x'"``: the class and (the start of) the message of ``exc``."""
    try:
        text = str(exc)[:200]
    except Exception:
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_combine = datetime.combine
_date_of = datetime.date
_time_of = datetime.time
_NAIVE = "must be a timezone-aware datetime (e.g. tzinfo=timezone.utc)"


def _to_utc(value: object) -> datetime:
    """``value`` as a plain ``datetime`` in UTC (``tzinfo=UTC``), its UTC offset read once.

    Raises :class:`EventValidationError` (field ``timestamp``) for anything else: not a
    datetime, naive, a ``tzinfo`` whose ``utcoffset`` raises or returns something other than a
    ``timedelta`` of less than a day, or a time that leaves the datetime range once in UTC.
    """
    if type(value) is datetime and value.tzinfo is UTC:
        return value
    if not isinstance(value, datetime):
        raise EventValidationError("timestamp", _NAIVE)
    try:
        # datetime's own method, as timestamp() and astimezone() use: it checks the type and
        # the range of what the tzinfo gives, and a subclass cannot override it here.
        offset = datetime.utcoffset(value)
    except Exception as exc:
        raise EventValidationError(
            "timestamp", f"its tzinfo gave no valid UTC offset ({_reason(exc)})"
        ) from exc
    if offset is None:
        raise EventValidationError("timestamp", _NAIVE)
    try:
        # Fields read by datetime's own methods (not a subclass's), shifted to UTC: a plain
        # datetime, which is what is stored.
        return _combine(_date_of(value), _time_of(value), UTC) - offset
    except OverflowError:
        raise EventValidationError(
            "timestamp", "out of the datetime range once converted to UTC"
        ) from None


def format_timestamp(value: datetime) -> str:
    """Format a timezone-aware datetime as RFC 3339 in UTC with millisecond precision
    (truncated, like ``isoformat(timespec="milliseconds")``).

    Raises :class:`EventValidationError` for a naive datetime or an unusable ``tzinfo``.
    """
    return _to_utc(value).isoformat(timespec="milliseconds")[:-6] + "Z"


def parse_timestamp(value: str) -> datetime:
    """Parse an RFC 3339 timestamp as the API writes it (``Z`` or an offset)."""
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _require_text(name: str, value: object) -> str:
    if type(value) is not str or not value:
        raise EventValidationError(name, f"must be a non-empty string, got {value!r}")
    if not _encodable(value):
        raise EventValidationError(name, _NOT_UTF8)
    return value


class EventInput:
    """One usage event to ingest, checked against the API's limits when built.

    ``event_id``, ``customer_id`` and ``event_name`` are non-empty strings; ``timestamp`` is a
    timezone-aware datetime (the API fills in "now" when it is ``None``); ``metadata`` holds at
    most 50 scalar values (see :func:`validate_metadata`). Bad input raises
    :class:`EventValidationError` naming the field and the limit.

    What is stored is a checked copy: ``timestamp`` converted to UTC (the same instant) and
    ``metadata`` as the plain ``dict`` :func:`validate_metadata` returns, so a stored event
    always encodes as JSON, whatever the objects it was built from do later.

    The time window (at most 1 hour old, 5 minutes ahead) depends on when the event is sent,
    so it is checked by the sender, not here.
    """

    __slots__ = ("customer_id", "event_id", "event_name", "metadata", "timestamp")

    def __init__(
        self,
        event_id: str,
        customer_id: str,
        event_name: str,
        timestamp: datetime | None = None,
        metadata: Mapping[str, MetadataValue] | None = None,
    ) -> None:
        self.event_id = _require_text("event_id", event_id)
        self.customer_id = _require_text("customer_id", customer_id)
        self.event_name = _require_text("event_name", event_name)
        self.timestamp = None if timestamp is None else _to_utc(timestamp)
        self.metadata: dict[str, MetadataValue] | None = (
            None if metadata is None else validate_metadata(metadata)
        )

    def to_dict(self) -> dict[str, Any]:
        """The event as the JSON object ``POST /events/ingest`` expects."""
        data: dict[str, Any] = {
            "event_id": self.event_id,
            "customer_id": self.customer_id,
            "event_name": self.event_name,
        }
        if self.timestamp is not None:
            data["timestamp"] = format_timestamp(self.timestamp)
        if self.metadata is not None:
            data["metadata"] = self.metadata
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventInput:
        """Build (and validate) an event from its JSON form; ``timestamp`` may be a string."""
        timestamp = data.get("timestamp")
        if isinstance(timestamp, str):
            try:
                timestamp = parse_timestamp(timestamp)
            except ValueError:
                raise EventValidationError(
                    "timestamp", f"must be an RFC 3339 date-time, got {timestamp!r}"
                ) from None
        return cls(
            event_id=data.get("event_id"),  # type: ignore[arg-type]
            customer_id=data.get("customer_id"),  # type: ignore[arg-type]
            event_name=data.get("event_name"),  # type: ignore[arg-type]
            timestamp=timestamp,
            metadata=data.get("metadata"),
        )

    @classmethod
    def _restore(cls, data: Mapping[str, Any]) -> EventInput:
        """Rebuild a stored event as it was stored, checked or not (a dead letter the API
        refused may break the limits; it must still be listed and reported)."""
        try:
            return cls.from_dict(data)
        except (EventValidationError, TypeError, ValueError):
            pass
        event = object.__new__(cls)
        event.event_id = str(data.get("event_id"))
        event.customer_id = str(data.get("customer_id"))
        event.event_name = str(data.get("event_name"))
        timestamp = data.get("timestamp")
        try:
            event.timestamp = parse_timestamp(timestamp) if isinstance(timestamp, str) else None
        except ValueError:
            event.timestamp = None
        metadata = data.get("metadata")
        event.metadata = dict(metadata) if isinstance(metadata, Mapping) else None
        return event

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EventInput):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"EventInput(event_id={self.event_id!r}, customer_id={self.customer_id!r}, "
            f"event_name={self.event_name!r}, timestamp={self.timestamp!r}, "
            f"metadata={self.metadata!r})"
        )


@dataclass(frozen=True)
class IngestResult:
    """Answer of ``POST /events/ingest``: how many events the API newly stored.

    Events whose ``event_id`` was already ingested are accepted but not counted.
    """

    ingested_count: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IngestResult:
        """Build from the API's JSON; a success answer that does not say counts as 0."""
        return cls(ingested_count=int(data.get("ingested_count") or 0))


@dataclass(frozen=True)
class Event:
    """A stored usage event, as ``GET /events`` returns it."""

    event_id: str
    business_id: str
    customer_id: str
    event_name: str
    timestamp: datetime
    metadata: dict[str, MetadataValue] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Build from the API's JSON."""
        return cls(
            event_id=data["event_id"],
            business_id=data["business_id"],
            customer_id=data["customer_id"],
            event_name=data["event_name"],
            timestamp=parse_timestamp(data["timestamp"]),
            metadata=data.get("metadata"),
        )


@dataclass(frozen=True)
class MeterAggregation:
    """How a meter aggregates its events: ``count`` them, or ``sum``/``max``/``last`` of ``key``."""

    type: AggregationType
    key: str | None = None

    def __post_init__(self) -> None:
        if self.type not in _AGGREGATIONS:
            raise ValueError(
                f"aggregation.type: must be one of count, sum, max, last; got {self.type!r}"
            )
        if self.type != "count" and not self.key:
            raise ValueError(f"aggregation.key: required for {self.type!r} aggregation")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"type": self.type, "key": self.key}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeterAggregation:
        """Build from the API's JSON (without re-checking the key rule)."""
        agg = object.__new__(cls)
        object.__setattr__(agg, "type", data["type"])
        object.__setattr__(agg, "key", data.get("key"))
        return agg


@dataclass(frozen=True)
class FilterCondition:
    """One condition of a meter filter: ``metadata[key] <operator> value``."""

    key: str
    operator: FilterOperator
    value: str | int | float | bool

    def __post_init__(self) -> None:
        if not self.key or len(self.key) > MAX_METADATA_KEY_LENGTH:
            raise ValueError(f"filter key: must be 1 to {MAX_METADATA_KEY_LENGTH} characters")
        if self.operator not in _OPERATORS:
            raise ValueError(
                f"filter operator: must be one of {', '.join(sorted(_OPERATORS))}; "
                f"got {self.operator!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"key": self.key, "operator": self.operator, "value": self.value}


@dataclass(frozen=True)
class MeterFilter:
    """A meter filter: ``conjunction`` (``and``/``or``) over 1 to 10 clauses.

    The clauses are either all :class:`FilterCondition` or all nested :class:`MeterFilter`
    (the API does not allow mixing them in one list); nesting goes at most 3 levels below the
    top filter. Any sequence is accepted and kept as a tuple.
    """

    conjunction: Literal["and", "or"]
    clauses: Sequence[FilterCondition] | Sequence[MeterFilter] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "clauses", tuple(self.clauses))
        if self.conjunction not in ("and", "or"):
            raise ValueError(f"filter conjunction: must be 'and' or 'or'; got {self.conjunction!r}")
        if not 1 <= len(self.clauses) <= MAX_FILTER_CLAUSES:
            raise ValueError(
                f"filter clauses: must hold 1 to {MAX_FILTER_CLAUSES} items, got {len(self.clauses)}"
            )
        kinds = {type(c) for c in self.clauses}
        if len(kinds) > 1:
            raise ValueError(
                "filter clauses: conditions and nested filters cannot be mixed in one list; "
                "wrap the conditions in a nested filter"
            )
        if self.depth() > MAX_FILTER_DEPTH:
            raise ValueError(
                f"filter: at most {MAX_FILTER_DEPTH} nested levels below the top filter"
            )

    def depth(self) -> int:
        """Nested levels below this filter (0 when it holds only conditions)."""
        nested = [c.depth() for c in self.clauses if isinstance(c, MeterFilter)]
        return 1 + max(nested) if nested else 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"conjunction": self.conjunction, "clauses": [c.to_dict() for c in self.clauses]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeterFilter:
        """Build from the API's JSON."""
        clauses: list[Any] = []
        for clause in data.get("clauses") or ():
            if "conjunction" in clause:
                clauses.append(cls.from_dict(clause))
            else:
                clauses.append(FilterCondition(clause["key"], clause["operator"], clause["value"]))
        return cls(conjunction=data["conjunction"], clauses=tuple(clauses))


@dataclass(frozen=True)
class Meter:
    """A meter: which events it counts (``event_name`` and ``filter``) and how it aggregates."""

    id: str
    business_id: str
    name: str
    event_name: str
    measurement_unit: str
    aggregation: MeterAggregation
    created_at: datetime
    updated_at: datetime
    description: str | None = None
    filter: MeterFilter | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Meter:
        """Build from the API's JSON."""
        raw_filter = data.get("filter")
        return cls(
            id=data["id"],
            business_id=data["business_id"],
            name=data["name"],
            event_name=data["event_name"],
            measurement_unit=data["measurement_unit"],
            aggregation=MeterAggregation.from_dict(data["aggregation"]),
            created_at=parse_timestamp(data["created_at"]),
            updated_at=parse_timestamp(data["updated_at"]),
            description=data.get("description"),
            filter=MeterFilter.from_dict(raw_filter) if raw_filter else None,
        )


def _optional_time(value: Any) -> datetime | None:
    return parse_timestamp(value) if value else None


def _lenient_time(value: Any) -> datetime | None:
    """``value`` as a time, or ``None`` when it is not an RFC 3339 date-time string."""
    try:
        return parse_timestamp(value) if isinstance(value, str) and value else None
    except ValueError:
        return None


def _lenient_decimal(value: Any) -> Decimal | None:
    """``value`` as an exact finite decimal, or ``None`` when it is not a number."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return None
    return number if number.is_finite() else None


def _optional_decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


@dataclass(frozen=True)
class CreditEntitlement:
    """A credit entitlement: a unit of credits (fiat or custom) customers hold balances of."""

    id: str
    name: str
    unit: str
    precision: int
    overage_enabled: bool
    rollover_enabled: bool
    business_id: str | None = None
    currency: str | None = None
    description: str | None = None
    price_per_unit: Decimal | None = None
    overage_limit: Decimal | None = None
    overage_behavior: str | None = None
    expires_after_days: int | None = None
    rollover_percentage: int | None = None
    max_rollover_count: int | None = None
    rollover_timeframe_count: int | None = None
    rollover_timeframe_interval: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CreditEntitlement:
        """Build from the API's JSON."""
        return cls(
            id=data["id"],
            name=data["name"],
            unit=data["unit"],
            precision=int(data["precision"]),
            overage_enabled=bool(data.get("overage_enabled", False)),
            rollover_enabled=bool(data.get("rollover_enabled", False)),
            business_id=data.get("business_id"),
            currency=data.get("currency"),
            description=data.get("description"),
            price_per_unit=_optional_decimal(data.get("price_per_unit")),
            overage_limit=_optional_decimal(data.get("overage_limit")),
            overage_behavior=data.get("overage_behavior"),
            expires_after_days=data.get("expires_after_days"),
            rollover_percentage=data.get("rollover_percentage"),
            max_rollover_count=data.get("max_rollover_count"),
            rollover_timeframe_count=data.get("rollover_timeframe_count"),
            rollover_timeframe_interval=data.get("rollover_timeframe_interval"),
        )


@dataclass(frozen=True)
class CreditBalance:
    """A customer's balance of one credit entitlement.

    ``balance`` is what is left, ``overage`` what was used beyond it; both are exact
    :class:`~decimal.Decimal` values parsed from the API's decimal strings.
    """

    customer_id: str
    credit_entitlement_id: str
    balance: Decimal
    overage: Decimal
    id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_transaction_at: datetime | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CreditBalance:
        """Build from the API's JSON."""
        return cls(
            customer_id=data["customer_id"],
            credit_entitlement_id=data["credit_entitlement_id"],
            balance=Decimal(str(data["balance"])),
            overage=Decimal(str(data.get("overage") or "0")),
            id=data.get("id"),
            created_at=_optional_time(data.get("created_at")),
            updated_at=_optional_time(data.get("updated_at")),
            last_transaction_at=_optional_time(data.get("last_transaction_at")),
        )


@dataclass(frozen=True)
class CreditLedgerEntry:
    """One entry of a customer's credit ledger: a credit or debit made with
    ``client.credits.create_ledger_entry()``, or an entry of ``GET .../ledger``
    (``client.credits.ledger()``).

    ``entry_type`` is ``credit`` or ``debit`` (from ``is_credit`` when the API gives only
    that); ``transaction_type`` says why the balance changed (``credit_added``,
    ``credit_deducted``, ``credit_expired``, ``credit_rolled_over``, ...), ``None`` in the
    answer to a new ledger entry, which does not carry it.
    """

    id: str
    customer_id: str
    credit_entitlement_id: str
    entry_type: Literal["credit", "debit"]
    amount: Decimal
    balance_before: Decimal | None = None
    balance_after: Decimal | None = None
    overage_before: Decimal | None = None
    overage_after: Decimal | None = None
    reason: str | None = None
    created_at: datetime | None = None
    transaction_type: str | None = None
    grant_id: str | None = None
    description: str | None = None
    reference_type: str | None = None
    reference_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CreditLedgerEntry:
        """Build from the API's JSON."""
        entry_type: Literal["credit", "debit"] = data.get("entry_type") or (
            "credit" if data.get("is_credit") else "debit"
        )
        return cls(
            id=data["id"],
            customer_id=data["customer_id"],
            credit_entitlement_id=data["credit_entitlement_id"],
            entry_type=entry_type,
            amount=Decimal(str(data["amount"])),
            balance_before=_optional_decimal(data.get("balance_before")),
            balance_after=_optional_decimal(data.get("balance_after")),
            overage_before=_optional_decimal(data.get("overage_before")),
            overage_after=_optional_decimal(data.get("overage_after")),
            reason=data.get("reason"),
            created_at=_optional_time(data.get("created_at")),
            transaction_type=data.get("transaction_type"),
            grant_id=data.get("grant_id"),
            description=data.get("description"),
            reference_type=data.get("reference_type"),
            reference_id=data.get("reference_id"),
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass(frozen=True)
class CreditGrant:
    """One grant of credits on a customer's balance, as ``GET .../grants`` returns it.

    Usage and debits draw on the oldest grants first. ``remaining_amount`` is what is left
    (what expired, once ``is_expired``); ``expires_at`` is ``None`` for a grant that never
    expires. ``source_type`` says where it came from: ``subscription``, ``one_time``,
    ``addon``, ``api`` (a ledger entry) or ``rollover`` (``parent_grant_id`` the grant it
    rolled over from).
    """

    id: str
    customer_id: str
    credit_entitlement_id: str
    initial_amount: Decimal
    remaining_amount: Decimal
    is_expired: bool
    source_type: str
    is_rolled_over: bool = False
    rollover_count: int = 0
    expires_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    source_id: str | None = None
    parent_grant_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> GrantStatus:
        """``expired``, ``depleted`` (nothing left) or ``active``, as the ``status``
        filter of ``GET .../grants`` reads it."""
        if self.is_expired:
            return "expired"
        return "depleted" if self.remaining_amount <= 0 else "active"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CreditGrant:
        """Build from the API's JSON."""
        return cls(
            id=data["id"],
            customer_id=data["customer_id"],
            credit_entitlement_id=data["credit_entitlement_id"],
            initial_amount=Decimal(str(data["initial_amount"])),
            remaining_amount=Decimal(str(data["remaining_amount"])),
            is_expired=bool(data["is_expired"]),
            source_type=data["source_type"],
            is_rolled_over=bool(data.get("is_rolled_over", False)),
            rollover_count=int(data.get("rollover_count") or 0),
            expires_at=_optional_time(data.get("expires_at")),
            created_at=_optional_time(data.get("created_at")),
            updated_at=_optional_time(data.get("updated_at")),
            source_id=data.get("source_id"),
            parent_grant_id=data.get("parent_grant_id"),
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass(frozen=True)
class WebhookEndpoint:
    """A webhook endpoint registered with the API (``WebhookDetails``): where credit
    events are delivered. Its signing secret is read separately, with
    ``client.webhooks.secret()``.

    ``filter_types`` lists the event types sent to it (empty: every type); a ``disabled``
    endpoint gets nothing. The OpenAPI document types ``created_at`` and ``updated_at`` as
    plain strings: they are ``None`` when the API sends one that is not an RFC 3339 time.
    """

    id: str
    url: str
    description: str = ""
    disabled: bool = False
    filter_types: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    rate_limit: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WebhookEndpoint:
        """Build from the API's JSON."""
        return cls(
            id=data["id"],
            url=data["url"],
            description=data.get("description") or "",
            disabled=bool(data.get("disabled")),
            filter_types=tuple(data.get("filter_types") or ()),
            metadata=dict(data.get("metadata") or {}),
            rate_limit=data.get("rate_limit"),
            created_at=_lenient_time(data.get("created_at")),
            updated_at=_lenient_time(data.get("updated_at")),
        )


@dataclass(frozen=True)
class MeterUsage:
    """One meter's usage in a billing period of a subscription (``MeterUsageItem``).

    ``consumed_units`` is what the meter aggregated, ``chargeable_units`` what is left after
    the ``free_threshold``; ``total_price`` is in the smallest unit of ``currency`` (cents).
    The OpenAPI document types the units and ``price_per_unit`` as strings "for precision"
    without a format: they are exact decimals, or ``None`` when the API sends text that is
    not a number.
    """

    id: str
    name: str
    consumed_units: Decimal | None
    chargeable_units: Decimal | None
    free_threshold: int = 0
    price_per_unit: Decimal | None = None
    currency: str | None = None
    total_price: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MeterUsage:
        """Build from the API's JSON."""
        return cls(
            id=data["id"],
            name=data["name"],
            consumed_units=_lenient_decimal(data.get("consumed_units")),
            chargeable_units=_lenient_decimal(data.get("chargeable_units")),
            free_threshold=int(data.get("free_threshold") or 0),
            price_per_unit=_lenient_decimal(data.get("price_per_unit")),
            currency=data.get("currency"),
            total_price=int(data.get("total_price") or 0),
        )


@dataclass(frozen=True)
class UsagePeriod:
    """A billing period of a subscription and each meter's usage in it, as
    ``GET /subscriptions/{id}/usage-history`` returns it."""

    start_date: datetime
    end_date: datetime
    meters: tuple[MeterUsage, ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsagePeriod:
        """Build from the API's JSON."""
        return cls(
            start_date=parse_timestamp(data["start_date"]),
            end_date=parse_timestamp(data["end_date"]),
            meters=tuple(MeterUsage.from_dict(item) for item in data.get("meters") or ()),
        )
