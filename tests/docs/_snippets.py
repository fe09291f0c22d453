"""Extract the Python blocks of a Markdown file, and run them the way a reader would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SKIP_MARKER = re.compile(r"^# Not run by the docs tests: (?P<reason>\S.*)$")
"""First line of a block the tests leave out, with its reason (shown to the reader too)."""
_FENCE = re.compile(r"^```python[^\n]*\n(?P<body>.*?)^```\s*$", re.S | re.M)


@dataclass(frozen=True)
class Snippet:
    """A fenced ``python`` block: where it is, its code, and why it is skipped, if it is."""

    path: str
    line: int
    code: str
    skip_reason: str | None


def snippets(path: Path) -> list[Snippet]:
    """Every ``python`` block of ``path``, in order, with the line of its first code line."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start("body")) + 1
        code = match["body"]
        first = code.splitlines()[0] if code.strip() else ""
        marker = SKIP_MARKER.match(first)
        found.append(
            Snippet(str(path.relative_to(ROOT)), line, code, marker["reason"] if marker else None)
        )
    return found


def runner_script(blocks: list[Snippet]) -> str:
    """A script running ``blocks`` in one namespace, in order, as a reader of the page
    would (a later block may use what an earlier one defined); a failure names its block.
    Each block is compiled with its file and line, so a traceback points into the page."""
    lines = [
        "import sys, traceback",
        "namespace = {'__name__': '__main__'}",
        "blocks = []",
    ]
    for block in blocks:
        if block.skip_reason is None:
            padded = "\n" * (block.line - 1) + block.code
            lines.append(f"blocks.append(({block.path!r}, {block.line}, {padded!r}))")
    lines += [
        "for path, line, code in blocks:",
        "    try:",
        "        exec(compile(code, path, 'exec'), namespace)",
        "    except BaseException:",
        "        traceback.print_exc()",
        "        print(f'the block at {path}:{line} failed', file=sys.stderr)",
        "        sys.exit(1)",
        "    print(f'ran {path}:{line}', flush=True)",
    ]
    return "\n".join(lines) + "\n"
