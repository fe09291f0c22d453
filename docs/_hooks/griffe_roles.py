"""Griffe extension for the API reference: reST roles become cross-references, internals go.

The docstrings of ``src/`` are Markdown that names other objects with Sphinx roles
(``:class:`DodoClient```, ``:meth:`~dodo_ingest.Ingestion.flush```). mkdocstrings renders
Markdown only, so this extension rewrites each role, once the package is loaded, into an
optional autorefs cross-reference: a link when the target is rendered somewhere in the
site, plain code otherwise (a builtin, a private helper). Names resolve as Python would
from the docstring's object: its members, its class, its module's names and imports.

It also removes from the reference every member whose docstring starts with
``Internal`` (methods the pipeline calls on itself, never the application) and private
base classes from the "Bases:" lines; it links a guide named by its path (``docs/fleet.md``)
to that page, and shows a default value named through a private module
(``rq.DEFAULT_PAGE_SIZE``) as the value itself.
"""

from __future__ import annotations

import ast
import html
import re
from pathlib import Path
from typing import Any

import griffe
from markdown.extensions.toc import slugify  # type: ignore[import-untyped]

ROLE = re.compile(
    r":(?:py:)?(?P<role>class|meth|func|attr|data|exc|mod|obj|const|type):"
    r"`(?P<body>[^`]+)`"
)
"""A Sphinx role of the Python domain, as the docstrings write them."""

_GUIDE = re.compile(r"``docs/(?P<page>[\w-]+\.md)``")
"""A guide named by its path in a docstring: ````docs/fleet.md````."""
_EXPLICIT_TITLE = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")
_LITERAL_MARKER = re.compile(r"(?P<text>[ \t]*\S.*?)?::[ \t]*")
"""A reST literal-block marker: ``text::`` (shown as ``text:``) or ``::`` alone (dropped)."""


def is_internal(obj: griffe.Object | griffe.Alias) -> bool:
    """True when the docstring says the object is for the package's own use."""
    docstring = obj.docstring
    return docstring is not None and docstring.value.lstrip().startswith("Internal")


class RolesExtension(griffe.Extension):
    """Rewrite Sphinx roles into autorefs references and drop internal members."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        docs = Path(__file__).resolve().parents[1]
        for obj in _walk(pkg):
            if obj.docstring is not None:
                text = convert_roles(obj.docstring.value, obj)
                text = link_guides(text, docs)
                obj.docstring.value = convert_literal_markers(text)
        for obj in list(_walk(pkg)):
            for name, member in list(obj.members.items()):
                if not member.is_alias and is_internal(member):
                    del obj.members[name]
            if isinstance(obj, griffe.Class):  # "Bases:" lists public classes only
                obj.bases = [base for base in obj.bases if not _private_name(str(base))]
            if isinstance(obj, griffe.Function):
                for parameter in obj.parameters:
                    parameter.default = public_default(parameter.default, obj)


def public_default(default: Any, scope: griffe.Object) -> Any:
    """A default value named through a private module (``rq.DEFAULT_PAGE_SIZE``) shown as
    the value itself (``100``); any other default unchanged."""
    if not isinstance(default, griffe.ExprName | griffe.ExprAttribute):
        return default
    path = default.canonical_path
    if not any(part.startswith("_") for part in path.split(".")[:-1]):
        return default
    try:
        found = scope.modules_collection[path]
        target = found.final_target if found.is_alias else found
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return default
    value = getattr(target, "value", None)
    return default if value is None else value


def _private_name(path: str) -> bool:
    return path.rsplit(".", 1)[-1].startswith("_")


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            found.extend(_walk(member))
    return found


def convert_roles(text: str, scope: griffe.Object) -> str:
    """Replace every role in ``text`` by an optional cross-reference resolved from ``scope``."""

    def replace(match: re.Match[str]) -> str:
        body = match["body"].strip()
        explicit = _EXPLICIT_TITLE.match(body)
        if explicit:
            title, target = explicit["title"], explicit["target"].strip()
        else:
            target = body
            title = None
        short = target.startswith("~")
        target = target.lstrip("~.")
        if title is None:
            title = target.rsplit(".", 1)[-1] if short else target
            if short and title == scope.name:  # "See snapshot()" in snapshot() reads as a loop
                title = ".".join(target.rsplit(".", 2)[-2:])
            if match["role"] in {"meth", "func"}:
                title += "()"
        identifier = resolve(target, scope)
        code = f"<code>{html.escape(title)}</code>"
        if identifier is None:
            return code
        return f'<autoref identifier="{html.escape(identifier)}" optional>{code}</autoref>'

    return ROLE.sub(replace, text)


def link_guides(text: str, docs: Path) -> str:
    """``docs/NAME.md`` (as code) becomes a link to that page of the site, titled with the
    page's heading; a page that does not exist stays as written."""

    def replace(match: re.Match[str]) -> str:
        page = docs / match["page"]
        if not page.is_file():
            return match[0]
        heading = page.read_text(encoding="utf-8").splitlines()[0].removeprefix("# ").strip()
        anchor = slugify(heading, "-")
        return f'<autoref identifier="{anchor}" optional>{html.escape(heading)}</autoref>'

    return _GUIDE.sub(replace, text)


def convert_literal_markers(text: str) -> str:
    """``text::`` before an indented block becomes ``text:``, a lone ``::`` goes, and the
    indented block becomes a fenced one: ``python`` (highlighted) when it parses as Python,
    ``text`` otherwise."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        marker = _LITERAL_MARKER.fullmatch(lines[i])
        if marker is None:
            out.append(lines[i])
            i += 1
            continue
        out.append(f"{marker['text']}:" if marker["text"] else "")
        i += 1
        start = i
        while start < len(lines) and not lines[start].strip():
            start += 1
        if start == len(lines) or _indent(lines[start]) <= _indent(lines[i - 1]):
            continue  # no indented block follows: only the marker changes
        indent, end, last = _indent(lines[start]), start, start
        while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) >= indent):
            if lines[end].strip():
                last = end
            end += 1
        block = [line[indent:] for line in lines[start : last + 1]]
        margin = " " * max(_indent(lines[i - 1]), indent - 4)  # a list item's block stays in it
        language = "python" if _is_python("\n".join(block)) else "text"
        out += ["", f"{margin}```{language}", *(margin + line for line in block), f"{margin}```"]
        i = last + 1
    return "\n".join(out)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _is_python(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def resolve(target: str, scope: griffe.Object) -> str | None:
    """The canonical path of ``target`` seen from ``scope``, or None when unknown."""
    head, _, rest = target.partition(".")
    path: str | None
    try:
        path = scope.resolve(head)
    except griffe.NameResolutionError:
        path = target if "." in target else None
    else:
        path = f"{path}.{rest}" if rest else path
    if path is None:
        return None
    try:
        found = scope.modules_collection[path]
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return path
    try:
        target_object = found.final_target if found.is_alias else found
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return path
    return public_path(target_object)


def public_path(obj: griffe.Object) -> str:
    """The path users import ``obj`` from: the most specific public alias (the package that
    re-exports it, ``dodo_ingest.client.ConfigurationError``), else where it is defined."""
    paths = [obj.path, *obj.aliases]
    public = [p for p in paths if not any(part.startswith("_") for part in p.split("."))]
    if not public:
        return obj.path
    return max(public, key=lambda p: (p.count("."), p))
