"""scripts/screenshots.sh: the docs as a reader sees them in Chromium at 1280 px.

Runs the script once (it builds the site and photographs the default pages), then checks
that each picture is a real rendering of the right page, and what the renderings show about
the layout. Skips locally when Chromium is missing; fails instead when ``CI`` is set.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from ._snippets import ROOT


def _module(path: Path) -> ModuleType:
    """Load a script or docs hook by path (its folder importable meanwhile, as MkDocs does)."""
    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(f"docs_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(path.parent))


checks = _module(ROOT / "docs" / "_hooks" / "checks.py")
known_exceptions = _module(ROOT / "docs" / "_hooks" / "known_exceptions.py")
render_pages = _module(ROOT / "scripts" / "render_pages.py")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chromium() -> str:
    """Chromium's path; skip (locally) or fail (in CI) when there is none."""
    found = shutil.which(os.environ.get("CHROMIUM", "chromium"))
    if found is None:
        reason = "Chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"the screenshot tests must run in CI: {reason}")
        pytest.skip(reason)
    return found


def expected_pages() -> dict[str, Path]:
    """The pages the script photographs by default, with their Markdown sources."""
    docs = ROOT / "docs"
    pages = {
        name: docs / f"{name}.md" for name in ("getting-started", "llm", "credit-gate", "devserver")
    }
    pages["home"] = docs / "index.md"
    for source in (docs / "reference").glob("*.md"):
        pages[f"reference-{source.stem}"] = source
    return pages


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("screenshots")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "screenshots.sh"), str(out)],
        env={**os.environ, "CHROMIUM": chromium()},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.fixture(scope="module")
def seen(shots: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((shots / "pages.json").read_text())
    return report


def png_pixels(data: bytes, rows_wanted: int | None = None) -> tuple[int, int, list[bytes]]:
    """Width, height and the (first ``rows_wanted``) rows of an 8-bit RGB or RGBA PNG."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    chunks: dict[bytes, bytes] = {}
    at = 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        chunks[kind] = chunks.get(kind, b"") + data[at + 8 : at + 8 + length]
        at += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    pixel = 3 if colour == 2 else 4
    raw = zlib.decompress(chunks[b"IDAT"])
    stride = width * pixel
    rows: list[bytes] = []
    previous = bytes(stride)
    for y in range(min(height, rows_wanted or height)):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - pixel] if i >= pixel else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                corner = previous[i - pixel] if i >= pixel else 0
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                near = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + near) & 255
        rows.append(bytes(line))
        previous = rows[-1]
    return width, height, rows


def colours(rows: list[bytes], pixel: int) -> set[bytes]:
    return {row[i : i + pixel] for row in rows for i in range(0, len(row), pixel)}


def test_png_decoding_undoes_each_filter() -> None:
    """The decoder itself: a 2x4 image, each row under another filter, worked by hand."""
    rows = [
        b"\x01" + bytes([255, 0, 0, 0, 255, 0]),  # Sub: red, red + green = yellow
        b"\x02" + bytes([0, 0, 255, 0, 0, 255]),  # Up: magenta, white
        b"\x03" + bytes([1, 10, 1, 0, 0, 0]),  # Average: up // 2 + raw, then (left + up) // 2
        b"\x04" + bytes([100, 100, 100, 0, 0, 0]),  # Paeth: up, then left or up
    ]
    data = (
        PNG_SIGNATURE
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 4, 8, 2, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + _chunk(b"IEND", b"")
    )
    width, height, decoded = png_pixels(data)
    assert (width, height) == (2, 4)
    assert decoded == [
        bytes([255, 0, 0, 255, 255, 0]),
        bytes([255, 0, 255, 255, 255, 255]),
        bytes([128, 10, 128, 191, 132, 191]),
        bytes([228, 110, 228, 228, 132, 228]),
    ]
    assert len(colours(decoded, 3)) == 8
    assert png_pixels(data, rows_wanted=1)[2] == decoded[:1]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_every_page_is_photographed_top_to_bottom(seen: dict[str, Any], shots: Path) -> None:
    assert set(seen) == set(expected_pages())
    step = render_pages.HEIGHT - render_pages.OVERLAP
    for name, page in seen.items():
        count = 1 + max(0, math.ceil((page["height"] - render_pages.HEIGHT) / step))
        assert page["shots"] == [f"{name}-{n:02d}.png" for n in range(1, count + 1)], name
        for picture in page["shots"]:
            head = (shots / picture).read_bytes()[:24]
            assert head[:8] == PNG_SIGNATURE, picture
            assert head[12:16] == b"IHDR", picture
            size = struct.unpack(">II", head[16:24])
            assert size == (render_pages.WIDTH, render_pages.HEIGHT), picture


def test_pictures_are_renderings_not_blank(seen: dict[str, Any], shots: Path) -> None:
    """The top of each page has the page's many colours: header, text, code."""
    for name, page in seen.items():
        data = (shots / page["shots"][0]).read_bytes()
        width, height, rows = png_pixels(data, rows_wanted=400)
        assert (width, height) == (render_pages.WIDTH, render_pages.HEIGHT)
        pixel = len(rows[0]) // width
        header, body = colours(rows[:40], pixel), colours(rows[100:], pixel)
        assert len(header) >= 2, (name, "the header bar is one colour: not drawn")
        assert len(body) >= 50, (name, f"{len(body)} colours: the page looks blank")


def test_pictures_show_the_pages_of_the_site(seen: dict[str, Any], shots: Path) -> None:
    """Each page's rendered DOM has its Markdown title as heading, in the site's layout."""
    for name, source in expected_pages().items():
        heading = source.read_text(encoding="utf-8").splitlines()[0].removeprefix("# ")
        assert seen[name]["h1"] == heading, name
        dom = (shots / f"{name}.html").read_text(encoding="utf-8")
        assert "<title>" in dom and "dodo-ingest</title>" in dom, name
        assert 'class="md-header' in dom and 'class="md-nav' in dom, name
        assert f">{heading}<" in dom or f">{heading}<a" in dom, name


def test_nothing_but_code_scrolls_sideways(seen: dict[str, Any]) -> None:
    """At 1280 px no page is wider than the window and no table scrolls sideways."""
    for name, page in seen.items():
        assert page["pageWidth"] == render_pages.WIDTH, name
        assert [w for w in page["wide"] if w["tag"] != "code"] == [], name


def test_code_fits_the_pages_of_the_quick_start(seen: dict[str, Any]) -> None:
    """The first code a reader meets shows whole: home and getting started."""
    for name in ("home", "getting-started"):
        assert seen[name]["wide"] == [], name


def test_code_blocks_show_the_columns_the_docs_check_allows(seen: dict[str, Any]) -> None:
    for name, page in seen.items():
        assert page["codeColumns"] >= checks.MAX_CODE_COLUMNS, (name, page["codeColumns"])
        if f"{name}.md" not in known_exceptions.WIDE_CODE:
            assert page["wide"] == [], name
