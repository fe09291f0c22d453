"""Known exceptions to the docs checks, in one place.

Each entry names a page whose owner has not brought it within a check yet, and why. The
docs build (``docs/_hooks/checks.py``) and the snippet test (``tests/docs/``) skip exactly
what is listed here and nothing else; an entry that no longer fails is reported (build log,
XPASS) so that it can be removed.
"""

WIDE_CODE: dict[str, str] = {
}
"""Pages (paths under ``docs/``) allowed code lines wider than ``MAX_CODE_COLUMNS``."""

SNIPPETS: dict[str, str] = {
}
"""Pages (paths from the repository root) whose Python blocks do not run as written yet:
``tests/docs/test_snippets.py`` expects them to fail, and reports XPASS once one passes
(the cue to remove its entry)."""
