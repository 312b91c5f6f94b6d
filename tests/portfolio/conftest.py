"""Fixtures of the portfolio tests: small synthetic bars and a scripted Lua strategy (hand-computed cases)."""

from __future__ import annotations

from pathlib import Path

import pytest

HOUR = 3_600_000
DAY = 24 * HOUR
#: 2025-01-01 00:00 UTC: days start at multiples of DAY
T0 = 1_735_689_600_000

# Enters long when the close is at or above `enter_above`, exits when it is at or below
# `exit_below`; `quantity` 0 sizes from the cash (size_fraction).
LEVEL = """
name = "level"
params = {enter_above = 100, exit_below = 90, quantity = 1}
function detect_opportunity(md, ctx, ind)
  if md.close >= params.enter_above then return {reason = "above"} end
  return nil
end
function filter_commitment(md, ctx, ind)
  if md.close >= params.enter_above then
    if params.quantity > 0 then
      return {action = "enter_long", quantity = params.quantity, reason = "above"}
    end
    return {action = "enter_long", reason = "above"}
  end
  return {action = "cancel_analysis", reason = "below"}
end
function manage_position(md, ctx, ind)
  if md.close <= params.exit_below then return {action = "exit", reason = "below"} end
  return nil
end
"""


def level_strategy(folder: Path) -> Path:
    path = folder / "level.lua"
    path.write_text(LEVEL)
    return path


def write_bars(path: Path, closes, *, start: int = T0, step: int = HOUR) -> Path:
    """A generic OHLCV CSV whose bars open and close at `closes` (high/low 0.5 around them)."""
    rows = ["timestamp,open,high,low,close,volume"]
    for i, c in enumerate(closes):
        c = float(c)
        rows.append(f"{start + i * step},{c!r},{c + 0.5!r},{c - 0.5!r},{c!r},1.0")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture()
def level(tmp_path):
    """The LEVEL strategy's path."""
    return level_strategy(tmp_path)


@pytest.fixture()
def bars_csv(tmp_path):
    """``bars_csv(symbol, closes, step=HOUR, start=T0)``: a bar file named for `symbol`."""
    def make(symbol: str, closes, *, step: int = HOUR, start: int = T0) -> Path:
        return write_bars(tmp_path / f"{symbol}-bars.csv", closes, start=start, step=step)
    return make
