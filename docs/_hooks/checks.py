"""MkDocs hook: checks the docs build fails on.

- **No raw roles.** A Sphinx role such as ``:class:`X``` (or a reST ``text::`` marker) left
  in the built HTML means a docstring was not converted (see ``griffe_roles.py``).
- **Code fits the page.** No line of a code block is wider than ``MAX_CODE_COLUMNS``, the
  width the theme shows without a sideways scroll at 1280 px; checked on every rendered
  page (docstrings included) and on the README's fenced blocks.

Pages listed in ``known_exceptions.py`` are skipped by the width check, and named in the
build log.
"""

from __future__ import annotations

import html
import logging
import re
from pathlib import Path
from typing import Any

import known_exceptions
from mkdocs.exceptions import PluginError

MAX_CODE_COLUMNS = 88

RAW_ROLE = re.compile(
    r":(?:py:)?(?:class|meth|func|attr|data|exc|mod|obj|const|type|ref|doc|term):"
    r"(?:<code>|`)"
)
LITERAL_MARKER = re.compile(r"::</p>")
"""A reST literal-block marker (``text::``) left in a rendered paragraph."""
_PRE = re.compile(r"<pre\b(?P<attrs>[^>]*)>(?P<body>.*?)</pre>", re.S)
_TAG = re.compile(r"<[^>]+>")
_FENCE = re.compile(r"^(?P<fence>```+|~~~+)[^\n]*\n(?P<body>.*?)^(?P=fence)\s*$", re.S | re.M)

log = logging.getLogger("mkdocs.hooks.checks")
_problems: list[str] = []
_excused: set[str] = set()


def wide_lines(code: str, limit: int = MAX_CODE_COLUMNS) -> list[tuple[int, str]]:
    """The ``(line number, line)`` of each line of ``code`` wider than ``limit``."""
    return [
        (number, line)
        for number, line in enumerate(code.splitlines(), 1)
        if len(line.expandtabs()) > limit
    ]


def html_code_blocks(text: str) -> list[str]:
    """The text of each ``<pre>`` block of rendered HTML (diagrams left out)."""
    blocks = []
    for match in _PRE.finditer(text):
        if "mermaid" in match["attrs"]:
            continue
        blocks.append(html.unescape(_TAG.sub("", match["body"])))
    return blocks


def markdown_code_blocks(text: str) -> list[tuple[int, str]]:
    """The ``(first line, body)`` of each fenced block of a Markdown file."""
    return [
        (text.count("\n", 0, match.start("body")) + 1, match["body"])
        for match in _FENCE.finditer(text)
    ]


def on_pre_build(config: Any) -> None:
    _problems.clear()
    _excused.clear()


def on_page_content(html_text: str, page: Any, config: Any, files: Any) -> str:
    source = page.file.src_uri
    for block in html_code_blocks(html_text):
        for _, line in wide_lines(block):
            if source in known_exceptions.WIDE_CODE:
                _excused.add(source)
                continue
            _problems.append(
                f"{source}: code line of {len(line)} columns (max {MAX_CODE_COLUMNS}): "
                f"{line.strip()[:60]}"
            )
    return html_text


def on_post_build(config: Any) -> None:
    readme = Path(config.config_file_path).parent / "README.md"
    for start, body in markdown_code_blocks(readme.read_text(encoding="utf-8")):
        for number, line in wide_lines(body):
            _problems.append(
                f"README.md:{start + number - 1}: code line of {len(line)} columns "
                f"(max {MAX_CODE_COLUMNS})"
            )
    site = Path(config.site_dir)
    for page in sorted(site.rglob("*.html")):
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            if RAW_ROLE.search(line):
                _problems.append(f"{page.relative_to(site)}:{number}: unrendered role: {line[:80]}")
            if LITERAL_MARKER.search(line):
                _problems.append(f"{page.relative_to(site)}:{number}: reST '::' left: {line[:80]}")
    for source in sorted(set(known_exceptions.WIDE_CODE) - _excused):
        log.info("known_exceptions.WIDE_CODE lists %s, which now passes: remove it", source)
    for source in sorted(_excused):
        log.info("wide code allowed on %s: %s", source, known_exceptions.WIDE_CODE[source])
    if _problems:
        raise PluginError("docs checks failed:\n  " + "\n  ".join(_problems))
