"""The example strategies shipped with tradesim (`lua-strategies/examples/`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def example_path(name: str = "ema_crossover") -> Path:
    """Path of a bundled example strategy.

    The installed wheel carries the examples in ``tradesim/examples``; a source
    checkout falls back to ``lua-strategies/examples``.

    Raises
    ------
    FileNotFoundError
        When the example is neither installed nor in the source tree.
    """
    bundled = resources.files("tradesim").joinpath("examples", f"{name}.lua")
    if bundled.is_file():
        return Path(str(bundled))
    repo = Path(__file__).resolve().parents[3] / "lua-strategies" / "examples" / f"{name}.lua"
    if repo.is_file():
        return repo
    raise FileNotFoundError(f"example strategy {name!r} is not installed (reinstall tradesim)")
