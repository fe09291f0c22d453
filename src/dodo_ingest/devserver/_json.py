"""Decoding request bodies as JSON with a bound on nesting.

Python's decoder recurses once per nested array or object, so a body of a few thousand ``[``
would exhaust the interpreter's recursion limit inside the decoder (and answer 500). Bodies
are checked for depth first, in time linear in their length: nesting deeper than
:data:`MAX_JSON_DEPTH` is refused with 422 ``json_too_deep``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import accumulate
from typing import Any

from ._errors import APIError

__all__ = ["MAX_JSON_DEPTH", "check_depth", "loads"]

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a request body may have (the body itself is 1)."""

# A JSON string, or an unterminated one running to the end; every match attempt that starts
# at a quote succeeds, so stripping strings is linear in the length of the body.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def check_depth(body: bytes) -> None:
    """Raise :class:`APIError` 422 ``json_too_deep`` (with ``max_depth``) when ``body``
    nests arrays and objects deeper than :data:`MAX_JSON_DEPTH`."""
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", body))
    if max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_JSON_DEPTH:
        raise APIError(
            422,
            "json_too_deep",
            f"the body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep",
            max_depth=MAX_JSON_DEPTH,
        )


def loads(body: bytes, *, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """Decode a request body (depth checked first); 422 ``invalid_json`` when it is not
    JSON, 422 ``json_too_deep`` when it nests too deeply."""
    check_depth(body)
    try:
        return json.loads(body, parse_constant=parse_constant)
    except (ValueError, UnicodeDecodeError) as error:
        raise APIError(422, "invalid_json", f"the body is not valid JSON: {error}") from None
    except RecursionError:  # defensive: a decoder that recurses more per level than CPython's
        raise APIError(
            422,
            "json_too_deep",
            f"the body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep",
            max_depth=MAX_JSON_DEPTH,
        ) from None
