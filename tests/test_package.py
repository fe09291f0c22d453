"""Packaging promises: a cheap import, no provider SDK imported eagerly, one version."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import dodo_ingest

BLOCK_PROVIDERS = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"openai", "anthropic", "google", "groq"}:
            raise ImportError(f"{name} is not installed")
        return None
sys.meta_path.insert(0, _Block())
"""


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_import_is_lazy_and_needs_no_provider_sdk() -> None:
    out = _run(
        BLOCK_PROVIDERS
        + "import json, dodo_ingest\n"
        + "heavy = ['httpx2', 'tenacity', 'asyncio', 'openai', 'anthropic', 'google.genai']\n"
        + "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    assert json.loads(out) == []


def test_public_names_resolve_without_provider_sdks() -> None:
    out = _run(
        BLOCK_PROVIDERS
        + "import dodo_ingest\n"
        + "print(sorted(n for n in dodo_ingest.__all__ if getattr(dodo_ingest, n) is None))\n"
    )
    assert out.strip() == "[]"


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="NoSuchThing"):
        dodo_ingest.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018


def test_version_is_single_sourced() -> None:
    from importlib.metadata import version

    assert dodo_ingest.__version__ == version("dodo-ingest")
