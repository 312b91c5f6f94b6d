"""The source passes the linters configured in pyproject.toml (ruff; cython-lint on .pyx/.pxd)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_ruff_check_is_clean():
    pytest.importorskip("ruff")
    proc = _run("ruff", "check", "--no-cache", "src", "tests", "benches")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_cython_lint_is_clean():
    pytest.importorskip("cython_lint")
    sources = sorted(str(p.relative_to(ROOT)) for ext in ("pyx", "pxd")
                     for p in (ROOT / "src").rglob(f"*.{ext}"))
    assert sources
    proc = _run("cython_lint.cython_lint", "--", *sources)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
