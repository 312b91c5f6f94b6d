"""Every compiled module Python imports has a .pyi stub that matches it (mypy's stubtest)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

pytest.importorskip("mypy")


def _compiled_modules() -> list[str]:
    cmake = (ROOT / "CMakeLists.txt").read_text()
    block = cmake.split("set(CYTHON_MODULES", 1)[1].split(")", 1)[0]
    return ["tradesim." + m.replace("/", ".") for m in re.findall(r"^\s+([\w/]+)\s", block, re.MULTILINE)]


def test_every_compiled_module_has_a_stub():
    missing = [m for m in _compiled_modules()
               if not (SRC / (m.replace(".", "/") + ".pyi")).is_file()]
    assert not missing, f"compiled modules without a .pyi: {missing}"


def test_stubs_match_the_compiled_modules(tmp_path):
    # The stubs are read from this tree (MYPYPATH), the modules imported from the install;
    # run outside the repository so that src/ is not on the import path.
    env = {**os.environ, "MYPYPATH": str(SRC)}
    # Check the stubs, not the type hints of the .py modules they import.
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\nfollow_imports = silent\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--ignore-disjoint-bases", "--concise",
         "--allowlist", str(ROOT / "tests" / "stubtest_allowlist.txt"),
         "--mypy-config-file", str(config), *_compiled_modules()],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
