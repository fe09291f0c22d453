"""Reading usage events from a JSON Lines or CSV file, with column mapping.

Each record of the file becomes a :class:`Record` (or a :class:`RowError` naming the line and
the field); nothing here talks to the API. A record without an event id gets one derived from
its line number and content, so sending the same file again never bills twice.
"""

from __future__ import annotations

import csv
import hashlib
import json
import json.scanner
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ..client._models import MetadataValue, parse_timestamp

__all__ = [
    "ColumnMapping",
    "FileFormatError",
    "Format",
    "Record",
    "RowError",
    "derived_event_id",
    "detect_format",
    "read_records",
]

Format = Literal["jsonl", "csv"]

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_DIGITS = re.compile(r"[+-]?[0-9]+")
_TRUE = frozenset(("true", "True", "TRUE"))
_FALSE = frozenset(("false", "False", "FALSE"))
_ZULU = ("Z", "z")
_LINE_ENDS = frozenset(("\n", "\r\n", ""))


@dataclass(frozen=True)
class ColumnMapping:
    """Which column (CSV) or field (JSON Lines) holds each part of an event.

    ``metadata`` lists ``(column, type)`` pairs to take as metadata; ``None`` takes every
    column not mapped to a part (CSV), or the ``metadata`` object plus every other top-level
    field (JSON Lines). ``event_name`` is used for records without an event name.
    """

    event_id: str = "event_id"
    customer_id: str = "customer_id"
    event_name: str = "event_name"
    timestamp: str = "timestamp"
    metadata: tuple[tuple[str, str], ...] | None = None
    default_event_name: str | None = None

    def mapped(self) -> frozenset[str]:
        """The columns that are parts of the event, not metadata."""
        return frozenset((self.event_id, self.customer_id, self.event_name, self.timestamp))


@dataclass(slots=True)
class Record:
    """One event read from the file, not yet validated against the API's limits."""

    line: int
    event_id: str
    customer_id: Any
    event_name: Any
    timestamp: datetime | None
    metadata: dict[str, Any] | None


class FileFormatError(ValueError):
    """The file as a whole cannot be read with the mapping (a mapped column is missing)."""


class RowError(Exception):
    """A record that cannot become an event: ``line`` (1-based), ``field`` (``None`` when the
    whole line or row is at fault) and ``problem``."""

    def __init__(self, line: int, field: str | None, problem: str) -> None:
        self.line = line
        self.field = field
        self.problem = problem
        super().__init__(f"line {line}: {self.detail}")

    @property
    def detail(self) -> str:
        """``field: problem``, or the problem alone when it is the whole line's."""
        return self.problem if self.field is None else f"{self.field}: {self.problem}"


def detect_format(path: Path) -> Format:
    """``csv`` for ``*.csv``, ``jsonl`` for ``*.jsonl``/``*.ndjson``/``*.json``; otherwise
    ``jsonl`` when the first non-blank character is ``{``, else ``csv``."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    with path.open("r", encoding="utf-8-sig", errors="replace") as file:
        for line in file:
            if line.strip():
                return "jsonl" if line.lstrip().startswith("{") else "csv"
    return "jsonl"


def derived_event_id(line: int, content: str) -> str:
    """A stable id for a record without one: ``bf_`` and 32 hex digits of a BLAKE2b hash of
    its line number and content (the same line of the same file always gets the same id)."""
    digest = hashlib.blake2b(f"{line}\x00{content}".encode(), digest_size=16).hexdigest()
    return f"bf_{digest}"


def read_records(
    path: Path, fmt: Format, mapping: ColumnMapping, *, start_line: int = 0
) -> Iterator[Record | RowError]:
    """Yield every record of the file after line ``start_line``, or the error that makes it
    unusable, in file order. Blank lines are skipped. Raises :class:`FileFormatError` when a
    CSV header lacks a mapped column, :class:`UnicodeDecodeError` for a file that is not
    UTF-8."""
    if fmt == "csv":
        return _read_csv(path, mapping, start_line)
    return _read_jsonl(path, mapping, start_line)


_scan_value: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]  # typeshed: the decoder is its context
)
"""The scanner ``json.loads`` runs, called directly for a line that is one JSON value and its
line break: the same object, without the work around it (``json.loads`` does the rest)."""


def _read_jsonl(path: Path, mapping: ColumnMapping, start_line: int) -> Iterator[Record | RowError]:
    loads, scan = json.loads, _scan_value
    record = _RecordReader(mapping, _jsonl_metadata)
    with path.open("r", encoding="utf-8-sig", newline="") as file:
        number = 0
        for text in file:
            number += 1
            if number <= start_line:
                continue
            try:
                data, end = scan(text, 0)
                parsed = text[end:] in _LINE_ENDS
            except (StopIteration, ValueError):
                parsed = False
            if not parsed:  # anything else: as json.loads sees it
                try:
                    data = loads(text)
                except ValueError as error:
                    if text.strip():  # blank lines are not records
                        yield RowError(number, None, f"not valid JSON ({error})")
                    continue
            if type(data) is not dict:
                yield RowError(number, None, f"not a JSON object (got {type(data).__name__})")
                continue
            try:
                yield record(number, text, data)
            except RowError as error:
                yield error


def _read_csv(path: Path, mapping: ColumnMapping, start_line: int) -> Iterator[Record | RowError]:
    with path.open("r", encoding="utf-8-sig", newline="") as file:
        dialect: type[csv.Dialect] | str = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
        reader = csv.reader(file, dialect)
        header = next(reader, None)
        if header is None:
            return
        columns = [name.strip() for name in header]
        required = [mapping.customer_id, *(column for column, _ in mapping.metadata or ())]
        if mapping.default_event_name is None:
            required.append(mapping.event_name)
        for name in required:
            if name not in columns:
                raise FileFormatError(
                    f"column {name!r} is not in the header ({', '.join(columns)})"
                )
        width = len(columns)
        record = _RecordReader(mapping, _csv_metadata)
        for row in reader:
            number = reader.line_num
            if number <= start_line or not "".join(row).strip():  # blank rows are no records
                continue
            if len(row) != width:
                yield RowError(number, None, f"{len(row)} cells, the header has {width}")
                continue
            try:
                yield record(number, row, dict(zip(columns, row, strict=True)))
            except RowError as error:
                yield error


MetadataReader = Callable[[int, dict[str, Any], "_RecordReader"], "dict[str, Any] | None"]


class _RecordReader:
    """Builds the :class:`Record` of one parsed line or row (raising :class:`RowError`), with
    what depends only on the mapping worked out once."""

    def __init__(self, mapping: ColumnMapping, metadata_of: MetadataReader) -> None:
        self.mapping = mapping
        self.event_id = mapping.event_id
        self.customer_id = mapping.customer_id
        self.event_name = mapping.event_name
        self.timestamp = mapping.timestamp
        self.default_event_name = mapping.default_event_name
        self.metadata_of = metadata_of
        self.mapped = mapping.mapped()
        self.mapped_or_metadata = self.mapped | {"metadata"}

    def __call__(self, number: int, source: str | list[str], data: dict[str, Any]) -> Record:
        """``source`` is the line (JSON Lines) or the cells (CSV) the record was read from,
        hashed into the event id of a record without one."""
        event_id = data.get(self.event_id)
        if type(event_id) is not str or not event_id:
            if event_id is None or event_id == "":
                content = source.rstrip("\r\n") if isinstance(source, str) else "\x1f".join(source)
                event_id = derived_event_id(number, content)
            else:
                event_id = _scalar_text(number, self.event_id, event_id)
        event_name = data.get(self.event_name)
        if event_name is None or event_name == "":
            if self.default_event_name is None:
                problem = "missing" if event_name is None else "empty"
                raise RowError(number, self.event_name, f"{problem} (or give --event-name)")
            event_name = self.default_event_name
        customer_id = data.get(self.customer_id)
        if type(customer_id) is not str:
            if customer_id is None:
                raise RowError(number, self.customer_id, "missing")
            if not isinstance(customer_id, str):
                customer_id = _scalar_text(number, self.customer_id, customer_id)
        if not customer_id.strip():
            raise RowError(number, self.customer_id, "empty")
        raw_time = data.get(self.timestamp)
        timestamp = (
            None
            if raw_time is None or raw_time == ""
            else _timestamp(number, self.timestamp, raw_time)
        )
        metadata = self.metadata_of(number, data, self)
        return Record(number, event_id, customer_id, event_name, timestamp, metadata)


def _scalar_text(number: int, field: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RowError(number, field, f"must be a string, got {json.dumps(value)}")
    return str(value)


def _timestamp(number: int, field: str, value: Any) -> datetime:
    """RFC 3339 / ISO 8601 text (``Z`` or an offset; none means UTC) or Unix seconds."""
    if isinstance(value, str) and value[-1:] not in _ZULU and _NUMBER.fullmatch(value.strip()):
        value = float(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise RowError(number, field, "must be a finite number of Unix seconds")
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise RowError(number, field, f"Unix time out of range: {value}") from None
    if not isinstance(value, str):
        raise RowError(number, field, f"must be an ISO 8601 date-time, got {json.dumps(value)}")
    try:
        return parse_timestamp(value.strip())
    except ValueError:
        raise RowError(number, field, f"must be an ISO 8601 date-time, got {value!r}") from None


def _jsonl_metadata(
    number: int, data: dict[str, Any], reader: _RecordReader
) -> dict[str, Any] | None:
    """The ``metadata`` object, then every other top-level field that is no part of the event
    (or only the columns the mapping names)."""
    if reader.mapping.metadata is not None:
        return _selected(number, data, reader.mapping.metadata) or None
    nested = data.get("metadata")
    if nested is not None and type(nested) is not dict:
        raise RowError(number, "metadata", f"must be an object, got {type(nested).__name__}")
    skip = reader.mapped_or_metadata
    if data.keys() <= skip:  # no other top-level field
        return nested or None
    metadata: dict[str, Any] | None = nested  # a fresh dict of its own, from the parser
    for key, value in data.items():
        if key not in skip:
            if metadata is None:
                metadata = {}
            metadata[key] = value
    return metadata or None


def _csv_metadata(
    number: int, data: dict[str, str], reader: _RecordReader
) -> dict[str, Any] | None:
    if reader.mapping.metadata is not None:
        return _selected(number, data, reader.mapping.metadata) or None
    skip = reader.mapped
    metadata = {key: _auto(value) for key, value in data.items() if key not in skip and value}
    return metadata or None


def _selected(
    number: int, data: Mapping[str, Any], columns: tuple[tuple[str, str], ...]
) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    for column, kind in columns:
        value = data.get(column)
        if value is None or value == "":
            continue
        metadata[column] = _convert(number, column, value, kind)
    return metadata


def _convert(number: int, column: str, value: Any, kind: str) -> MetadataValue | Any:
    """A cell as the metadata type asked for; ``auto`` reads numbers and true/false in text
    (but ``007`` stays text: leading zeros mark codes) and keeps JSON values as they are;
    ``str`` turns a JSON value into its JSON text."""
    if not isinstance(value, str):
        return _convert_json(number, f"metadata.{column}", value, kind)
    if kind == "str":
        return value
    if kind == "auto":
        return _auto(value)
    text = value.strip()
    if kind == "int":
        if _DIGITS.fullmatch(text):
            return int(text)
        raise RowError(number, f"metadata.{column}", f"must be an integer, got {value!r}")
    if kind == "float":
        try:
            result = float(text)
        except ValueError:
            result = math.nan
        if math.isfinite(result):
            return result
        raise RowError(number, f"metadata.{column}", f"must be a finite number, got {value!r}")
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RowError(number, f"metadata.{column}", f"must be true or false, got {value!r}")


def _auto(value: str) -> MetadataValue:
    """A text cell typed ``auto``: an integer, a number, true or false, else the text."""
    text = value.strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    if _NUMBER.fullmatch(text):
        return float(text)
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return value


def _convert_json(number: int, field: str, value: Any, kind: str) -> Any:
    """A JSON value (not a string) as ``kind``; objects, arrays and null are left for the
    event's validation to refuse."""
    number_like = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "auto":
        return value
    if kind == "str":
        return json.dumps(value, ensure_ascii=False)
    if kind == "int" and number_like and float(value).is_integer():
        return int(value)
    if kind == "float" and number_like:
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    raise RowError(number, field, f"must be {kind}, got {json.dumps(value)}")
