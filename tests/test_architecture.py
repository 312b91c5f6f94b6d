"""The package's layers: no module imports from a layer above it, and there is no import cycle.

The layers are declared once, in pyproject.toml (``[tool.importlinter]``). Python
imports are checked by import-linter and grimp on the source tree (every import,
including those inside functions and under TYPE_CHECKING); the cimports and imports
of the compiled modules (.pyx/.pxd), which those tools do not read, by the same
layer list here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PYPROJECT = ROOT / "pyproject.toml"

pytest.importorskip("importlinter")


def _layers() -> list[list[str]]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [[name.strip() for name in layer.split("|")] for layer in contract["layers"]]


def _run_in_source_tree(code: str) -> subprocess.CompletedProcess:
    # Run from src/ so that the tools read this tree, not an installed copy.
    return subprocess.run([sys.executable, "-c", code], cwd=SRC, capture_output=True, text=True,
                          timeout=300)


def test_no_module_imports_from_a_layer_above_it():
    proc = _run_in_source_tree(
        "import sys; from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(PYPROJECT)!r}, no_cache=True, no_logo=True))")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_no_import_cycle():
    proc = _run_in_source_tree(
        "import json, grimp; g = grimp.build_graph('tradesim', cache_dir=None); "
        "print(json.dumps({m: sorted(g.find_modules_directly_imported_by(m)) for m in g.modules}))")
    assert proc.returncode == 0, proc.stderr[-2000:]
    graph = json.loads(proc.stdout)
    # A package's __init__ re-exports its modules: that is not a cycle of concepts.
    edges = {m: [d for d in deps if not m.startswith(d + ".") and not d.startswith(m + ".")]
             for m, deps in graph.items()}
    cycles = _strongly_connected(edges)
    assert not cycles, f"import cycles: {cycles}"


def _strongly_connected(edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_strongly_connected_finds_a_cycle():
    # The checker itself can fail.
    assert _strongly_connected({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _strongly_connected({"a": ["b"], "b": []}) == []


_COMPILED_IMPORT = re.compile(r"^\s*(?:from\s+(tradesim(?:\.\w+)+)\s+c?import|c?import\s+(tradesim(?:\.\w+)+))",
                              re.MULTILINE)


def _layer_of(module: str, layers: list[list[str]]) -> int:
    for i, layer in enumerate(layers):
        if any(module == name or module.startswith(name + ".") for name in layer):
            return i
    raise AssertionError(f"{module} is in no layer of pyproject.toml [tool.importlinter]")


def test_compiled_modules_import_only_their_layer_or_below():
    layers = _layers()
    sources = sorted([*SRC.glob("tradesim/**/*.pyx"), *SRC.glob("tradesim/**/*.pxd")])
    assert sources, "no compiled sources found"
    wrong = []
    for path in sources:
        module = ".".join(path.relative_to(SRC).with_suffix("").parts)
        own = _layer_of(module, layers)
        for match in _COMPILED_IMPORT.finditer(path.read_text()):
            imported = match.group(1) or match.group(2)
            if _layer_of(imported, layers) < own:
                wrong.append(f"{path.relative_to(ROOT)} imports {imported}")
    assert not wrong, "compiled modules importing from a layer above: " + "; ".join(wrong)


def test_every_compiled_module_is_listed_in_cmake():
    listed = set(re.findall(r"^\s+([\w/]+)\s", (ROOT / "CMakeLists.txt").read_text().split(
        "set(CYTHON_MODULES", 1)[1].split(")", 1)[0], re.MULTILINE))
    found = {str(p.relative_to(SRC / "tradesim").with_suffix("")) for p in SRC.glob("tradesim/**/*.pyx")}
    assert found == listed


def test_code_cites_docs_in_this_repository_only():
    # The facts the code relies on live in docs/; a note outside the repository is no citation.
    citing = [str(p.relative_to(ROOT)) for base in ("src", "tests", "benches", "lua-strategies")
              for p in (ROOT / base).rglob("*") if p.is_file() and p.suffix in (".py", ".pyx", ".pxd", ".pyi", ".lua")
              and "reliability.md" in p.read_text(errors="replace") and p.name != "test_architecture.py"]
    assert not citing, f"cite docs/ instead of reliability.md in: {citing}"
