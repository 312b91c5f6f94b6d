"""Strategies the server may load: by id, only from the configured folders.

An id matches ``^[A-Za-z0-9_-]{1,64}$`` and names ``<folder>/<id>.lua`` in the first
configured folder holding it; the resolved path (symlinks followed) must stay inside
that folder's resolved path (docs/dashboard-security.md, "Strategies by ID, never by
path"). ``..``, absolute paths, NUL bytes, URL-encoded and backslash variants all fail
the pattern; a symlink pointing out of the folder fails the containment check.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradesim.strategy import LuaStrategy
from tradesim.strategy.examples import example_path

__all__ = ["STRATEGY_ID", "StrategyCatalog", "UnknownStrategy"]

#: The bundled example strategies (lua-strategies/examples, installed in tradesim/examples).
EXAMPLES = ("ema_crossover", "rsi_mean_reversion", "macd_trend", "bollinger_reversion", "range_breakout")

STRATEGY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class UnknownStrategy(LookupError):
    """No strategy with that id in the configured folders (or an id that is not allowed)."""


@dataclass(frozen=True)
class StrategyInfo:
    """One loadable strategy: id, file, name, default params and the comment at the top of the script."""

    id: str
    path: Path
    name: str
    params: dict[str, Any]
    doc: str

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "params": self.params, "doc": self.doc,
                "file": self.path.name}


def _doc(text: str) -> str:
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):
            lines.append(stripped[2:].strip())
        elif stripped or lines:
            break
    return "\n".join(lines)


class StrategyCatalog:
    """The strategies in `folders` (default: the bundled examples), looked up by id.

    Parameters
    ----------
    folders : list of path, optional
        Folders holding ``*.lua`` strategies; earlier folders win on duplicate ids.

    Raises
    ------
    ValueError
        A folder that does not exist.
    """

    def __init__(self, folders: list[str | Path] | None = None) -> None:
        if not folders:
            folders = [example_path("ema_crossover").parent]
            for name in EXAMPLES:   # (a source checkout's editable build may hold only some of them)
                with contextlib.suppress(FileNotFoundError):
                    if example_path(name).parent not in folders:
                        folders.append(example_path(name).parent)
        self.folders = [Path(f).expanduser().resolve() for f in folders]
        for folder in self.folders:
            if not folder.is_dir():
                raise ValueError(f"strategies folder {str(folder)!r} does not exist")
        self._cache: dict[tuple[Path, float], StrategyInfo] = {}

    def resolve(self, strategy_id: str) -> Path:
        """The file of strategy `strategy_id`.

        Raises
        ------
        UnknownStrategy
            The id does not match the pattern, no folder holds it, or it resolves
            (through a symlink) outside its folder.
        """
        if not isinstance(strategy_id, str) or not STRATEGY_ID.fullmatch(strategy_id):
            raise UnknownStrategy(f"strategy {strategy_id!r}: not a strategy id (letters, digits, _ and -)")
        for folder in self.folders:
            candidate = folder / f"{strategy_id}.lua"
            if not candidate.exists():
                continue
            real = candidate.resolve()
            if not real.is_relative_to(folder) or not real.is_file():
                raise UnknownStrategy(f"strategy {strategy_id!r}: refused (the file is outside the "
                                      f"strategies folder)")
            return real
        raise UnknownStrategy(f"no strategy {strategy_id!r}; known: {', '.join(self.ids())}")

    def ids(self) -> list[str]:
        """Ids of the strategies the folders hold (sorted, first folder wins)."""
        seen: dict[str, None] = {}
        for folder in self.folders:
            for path in sorted(folder.glob("*.lua")):
                if STRATEGY_ID.fullmatch(path.stem) and path.resolve().is_relative_to(folder):
                    seen.setdefault(path.stem, None)
        return sorted(seen)

    def info(self, strategy_id: str) -> StrategyInfo:
        """Name, default params and doc of a strategy (loaded once per file version).

        Raises
        ------
        UnknownStrategy
        StrategyLoadError
            The script does not load.
        """
        path = self.resolve(strategy_id)
        key = (path, path.stat().st_mtime)
        if key not in self._cache:
            strategy = LuaStrategy(path)
            try:
                self._cache[key] = StrategyInfo(strategy_id, path, strategy.name,
                                                dict(strategy.default_params),
                                                _doc(path.read_text(encoding="utf-8", errors="replace")))
            finally:
                strategy.close()
        return self._cache[key]

    def all(self) -> list[dict[str, Any]]:
        """Every strategy as a dict; one that fails to load is listed with its error."""
        out = []
        for sid in self.ids():
            try:
                out.append(self.info(sid).to_dict())
            except Exception as exc:   # a broken script is listed, not fatal
                out.append({"id": sid, "name": sid, "params": {}, "doc": "", "error": str(exc)[:500]})
        return out
