"""MkDocs hook: no private module path in a tooltip.

A cross-reference to something the site does not render (a helper in a private module)
becomes plain code, which autorefs marks with a tooltip naming the target's full path,
such as ``dodo_ingest.client._models.validate_metadata``. The reference shows public paths
only, so such tooltips are removed (after autorefs has run, when each page is written).
"""

from __future__ import annotations

import re
from typing import Any

_PRIVATE_TOOLTIP = re.compile(r'<span title="[\w.]*\._[\w.]*">')


def on_post_page(output: str, page: Any, config: Any) -> str:
    return _PRIVATE_TOOLTIP.sub("<span>", output)
