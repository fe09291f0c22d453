"""Packaging promises: a cheap import, no provider SDK imported eagerly, one version."""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pickle
import subprocess
import sys
import typing
from typing import Any

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


PUBLIC_MODULES = [
    "dodo_ingest",
    "dodo_ingest.client",
    "dodo_ingest.client.webhooks",
    "dodo_ingest.delivery",
    "dodo_ingest.gate",
    "dodo_ingest.devserver",
    "dodo_ingest.blueprints.llm",
    "dodo_ingest.blueprints.stream",
    "dodo_ingest.blueprints.time_range",
    "dodo_ingest.blueprints.api_gateway",
    "dodo_ingest.blueprints.object_storage",
    "dodo_ingest.testing",
]
NOT_YET_PUBLIC_PATHS: dict[str, str] = {}
"""Packages whose owners have not adopted ``_present_as`` yet (expected to fail)."""


def _public_objects(module_name: str) -> list[tuple[str, Any]]:
    module = importlib.import_module(module_name)
    found = []
    for name in module.__all__:
        try:
            value = getattr(module, name)
        except ImportError:  # an optional extra that is not installed
            continue
        if inspect.isclass(value) or inspect.isfunction(value):
            found.append((name, value))
    return found


@pytest.mark.parametrize(
    "module_name",
    [
        pytest.param(
            name,
            # Not strict: adopting it must not break the suite (the run reports XPASS).
            marks=[pytest.mark.xfail(strict=False, reason=NOT_YET_PUBLIC_PATHS[name])]
            if name in NOT_YET_PUBLIC_PATHS
            else [],
        )
        for name in PUBLIC_MODULES
    ],
)
def test_public_names_present_their_public_path(module_name: str) -> None:
    """Every public class and function says it lives at a public path (no ``._module``),
    and that path imports the very same object: tracebacks, reprs and pickles show it."""
    wrong = []
    for name, value in _public_objects(module_name):
        path = value.__module__
        owner = next((p for p in NOT_YET_PUBLIC_PATHS if path.startswith(p + "._")), None)
        if owner is not None and owner != module_name:
            continue  # counted (and expected to fail) under its own package
        if any(part.startswith("_") for part in path.split(".")):
            wrong.append(f"{module_name}.{name}: {path}")
            continue
        assert getattr(importlib.import_module(path), value.__qualname__) is value, name
    assert wrong == []


def test_exception_traceback_shows_the_public_path() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from dodo_ingest import DodoClient\nDodoClient(api_key='')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("DODO_PAYMENTS_")},
    )
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("dodo_ingest.client.ConfigurationError: "), done.stderr


def test_public_exceptions_pickle_through_their_public_path() -> None:
    from dodo_ingest import ConfigurationError, InsufficientCreditsError

    error = ConfigurationError("no API key")
    assert b"dodo_ingest.client\n" in pickle.dumps(error, protocol=0)
    assert str(pickle.loads(pickle.dumps(error))) == "no API key"
    assert InsufficientCreditsError.__module__ == "dodo_ingest.gate"


def test_type_hints_of_public_classes_still_resolve() -> None:
    """Moving ``__module__`` must not break ``typing.get_type_hints`` (FastAPI, pydantic
    and cattrs read the models' annotations through it)."""
    import dodo_ingest.client as client
    import dodo_ingest.delivery as delivery
    import dodo_ingest.gate as gate

    for cls in [
        client.Event,
        client.Meter,
        client.MeterFilter,
        client.CreditBalance,
        client.CreditLedgerEntry,
        delivery.DeadLetter,
        gate.Snapshot,
        gate.Reservation,
    ]:
        hints = typing.get_type_hints(cls)
        assert hints and not any(isinstance(hint, str) for hint in hints.values()), cls
