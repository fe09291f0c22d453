"""Reading records from JSON Lines and CSV files (no API involved)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dodo_ingest._cli._rows import (
    ColumnMapping,
    FileFormatError,
    Record,
    RowError,
    derived_event_id,
    detect_format,
    read_records,
)


def records(path: Path, mapping: ColumnMapping | None = None) -> list[Record | RowError]:
    fmt = detect_format(path)
    return list(read_records(path, fmt, mapping or ColumnMapping()))


def test_flat_json_fields_become_metadata_with_the_metadata_object(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_text(
        '{"customer_id": "c", "event_name": "e", "tokens": 5, "model": "m",'
        ' "metadata": {"region": "eu"}}\n'
        "\n"
        '{"customer_id": "c", "event_name": "e"}\n'
    )
    first, second = records(path)
    assert isinstance(first, Record)
    assert first.metadata == {"region": "eu", "tokens": 5, "model": "m"}
    assert first.line == 1
    assert isinstance(second, Record)
    assert (second.line, second.metadata) == (3, None)  # the blank line is skipped, counted


def test_json_values_converted_to_the_type_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_text(
        '{"customer_id": "c", "event_name": "e", "a": 2.0, "b": 3, "c": true, "d": 7}\n'
        '{"customer_id": "c", "event_name": "e", "a": 2.5}\n'
    )
    mapping = ColumnMapping(metadata=(("a", "int"), ("b", "float"), ("c", "str"), ("d", "auto")))
    good, bad = records(path, mapping)
    assert isinstance(good, Record)
    assert good.metadata == {"a": 2, "b": 3.0, "c": "true", "d": 7}
    assert isinstance(bad, RowError)
    assert (bad.line, bad.field, bad.problem) == (2, "metadata.a", "must be int, got 2.5")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"2026-11-25T08:00:00Z"', datetime(2026, 11, 25, 8, tzinfo=UTC)),
        ('"2026-11-25T09:00:00+01:00"', datetime(2026, 11, 25, 8, tzinfo=UTC)),
        ('"2026-11-25T08:00:00"', datetime(2026, 11, 25, 8, tzinfo=UTC)),
        ("1795593600", datetime(2026, 11, 25, 8, tzinfo=UTC)),
        ('"1795593600.5"', datetime(2026, 11, 25, 8, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_timestamps_iso_8601_or_unix_seconds(tmp_path: Path, raw: str, expected: datetime) -> None:
    path = tmp_path / "u.jsonl"
    path.write_text(f'{{"customer_id": "c", "event_name": "e", "timestamp": {raw}}}\n')
    (record,) = records(path)
    assert isinstance(record, Record)
    assert record.timestamp == expected


def test_a_bad_timestamp_names_the_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text("customer_id,event_name,when\nc,e,yesterday\n")
    (error,) = records(path, ColumnMapping(timestamp="when"))
    assert isinstance(error, RowError)
    assert str(error) == "line 2: when: must be an ISO 8601 date-time, got 'yesterday'"


def test_derived_ids_are_stable_and_differ_by_line_and_content(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text("customer_id,event_name,n\nc,e,1\nc,e,1\nc,e,2\n")
    ids = [r.event_id for r in records(path) if isinstance(r, Record)]
    assert len(set(ids)) == 3  # identical rows on different lines are different events
    assert ids == [r.event_id for r in records(path) if isinstance(r, Record)]
    assert ids[0] == derived_event_id(2, "c\x1fe\x1f1")


def test_csv_quoted_cells_tsv_and_ragged_rows(tmp_path: Path) -> None:
    csv_path = tmp_path / "u.csv"
    csv_path.write_text('customer_id,event_name,note\nc,e,"two\nlines, and a comma"\nc,e\n')
    quoted, ragged = records(csv_path)
    assert isinstance(quoted, Record)
    assert quoted.metadata == {"note": "two\nlines, and a comma"}
    assert isinstance(ragged, RowError)
    assert (ragged.line, ragged.field, ragged.problem) == (4, None, "2 cells, the header has 3")
    assert str(ragged) == "line 4: 2 cells, the header has 3"

    tsv = tmp_path / "u.tsv"
    tsv.write_text("customer_id\tevent_name\ttokens\nc\te\t10\n")
    (record,) = records(tsv)
    assert isinstance(record, Record)
    assert record.metadata == {"tokens": 10}


def test_a_header_without_a_mapped_column_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text("user,event_name\nc,e\n")
    with pytest.raises(FileFormatError, match="column 'customer_id' is not in the header"):
        records(path)
    with pytest.raises(FileFormatError, match="column 'kind' is not in the header"):
        records(path, ColumnMapping(customer_id="user", event_name="kind"))
    (record,) = records(path, ColumnMapping(customer_id="user", metadata=()))
    assert isinstance(record, Record)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.csv", "{}", "csv"),
        ("a.ndjson", "x,y", "jsonl"),
        ("a.txt", '\n  {"a": 1}\n', "jsonl"),
        ("a.txt", "customer_id,event_name\n", "csv"),
    ],
)
def test_detect_format(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    assert detect_format(path) == expected


def test_start_line_skips_what_was_sent(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_text("".join(f'{{"customer_id": "c{i}", "event_name": "e"}}\n' for i in range(5)))
    rest = list(read_records(path, "jsonl", ColumnMapping(), start_line=3))
    assert [r.line for r in rest] == [4, 5]


def test_json_lines_read_as_json_loads_reads_them(tmp_path: Path) -> None:
    lines = [
        '{"customer_id": "c1", "event_name": "e"}\r\n',  # CRLF
        '  {"customer_id": "c2", "event_name": "e"}  \n',  # spaces around
        '{"customer_id": "c3", "event_name": "e"} {"x": 1}\n',  # extra data
        "   \n",  # blank
        '{"customer_id": "c4", "event_name": "e", "n": NaN}\r',  # a lone CR ends a line too
        "[1, 2]\n",
        '{"customer_id": "c5", "event_name": "e", "big": 1e400}\n',
        '{"customer_id": "c6", "event_name": "e"',  # the last line, cut short
    ]
    path = tmp_path / "u.jsonl"
    path.write_bytes("".join(lines).encode())

    got = records(path)

    by_line = {item.line: item for item in got}
    assert sorted(by_line) == [1, 2, 3, 5, 6, 7, 8]
    assert [by_line[n].customer_id for n in (1, 2)] == ["c1", "c2"]  # type: ignore[union-attr]
    extra = by_line[3]
    assert isinstance(extra, RowError)
    assert extra.problem == "not valid JSON (Extra data: line 1 column 42 (char 41))"
    nan = by_line[5]
    assert isinstance(nan, Record) and nan.metadata is not None
    assert nan.metadata["n"] != nan.metadata["n"]  # NaN, refused later by the check
    assert isinstance(by_line[6], RowError)
    assert by_line[6].problem == "not a JSON object (got list)"
    big = by_line[7]
    assert isinstance(big, Record) and big.metadata == {"big": float("inf")}
    cut = by_line[8]
    assert isinstance(cut, RowError) and cut.problem.startswith("not valid JSON (Expecting")
