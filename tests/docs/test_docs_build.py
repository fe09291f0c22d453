"""The docs build: strict and quiet, the API reference public-only, and its own checks
(raw roles, wide code) failing when they should."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ._snippets import ROOT

MKDOCS = Path(sys.executable).with_name("mkdocs")
# The end-of-life notice of Material for MkDocs is acknowledged (README, "Docs toolchain").
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--quiet", "-f", str(config), "--site-dir", str(site)],
        cwd=config.parent,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def internal_members(path: Path) -> set[str]:
    """Names of the methods whose docstring starts with ``Internal`` in a source file."""
    source = path.read_text(encoding="utf-8")
    return set(re.findall(r'def (\w+)\([^)]*\)[^:]*:\s*\n\s+"""Internal', source))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout + done.stderr == "", "the build is not quiet"
    return out


def test_reference_shows_no_internal_member(site: Path) -> None:
    delivery = ROOT / "src" / "dodo_ingest" / "delivery"
    hidden = internal_members(delivery / "_outbox.py") | internal_members(
        delivery / "_redis_outbox.py"
    )
    assert {"checkpoint", "after_fork_in_child"} <= hidden
    ids = set(re.findall(r'id="([^"]+)"', (site / "reference/delivery/index.html").read_text()))
    for cls in ("Outbox", "RedisOutbox"):
        shown = {i.rsplit(".", 1)[1] for i in ids if i.startswith(f"dodo_ingest.delivery.{cls}.")}
        assert shown, cls
        assert shown.isdisjoint(hidden), (cls, shown & hidden)


def test_reference_names_public_paths(site: Path) -> None:
    text = (site / "reference/client/index.html").read_text()
    assert 'id="dodo_ingest.client.ConfigurationError"' in text
    assert "dodo_ingest.client._errors" not in text
    assert "_BaseClient" not in text  # a private base is not listed under "Bases:"
    for page in site.glob("reference/*/index.html"):
        titles = re.findall(r'title="([^"]*)"', page.read_text())
        assert [t for t in titles if re.search(r"\._", t)] == [], page


def test_roles_became_links(site: Path) -> None:
    text = (site / "reference/gate/index.html").read_text()
    assert re.search(r'<a class="autorefs autorefs-internal"[^>]*><code>Hold</code></a>', text)
    assert ":class:" not in text and ":meth:" not in text


def test_rest_literal_blocks_became_code(site: Path) -> None:
    text = (site / "reference/devserver/index.html").read_text()
    assert "Several servers may run at once in one process:</p>" in text
    assert "::</p>" not in text


def test_checks_fail_on_a_raw_role_and_on_wide_code(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("```python\nx = 1\n```\n")
    wide = "y = " + "1 + " * 25 + "1"
    (tmp_path / "docs" / "index.md").write_text(
        f"# Page\n\nSee :class:`Thing`.\n\nLike this::\n\n```python\n{wide}\n```\n"
    )
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nhooks:\n  - " + str(ROOT / "docs" / "_hooks" / "checks.py") + "\n"
    )
    done = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0
    assert f"index.md: code line of {len(wide)} columns (max 88)" in done.stderr
    assert "unrendered role" in done.stderr
    assert "reST '::' left" in done.stderr
