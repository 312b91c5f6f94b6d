"""Shared by the session tests: a recorded backtest of a strategy that scales in and exits in parts."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tradesim.backtest import Backtest
from tradesim.data import Bars
from tradesim.recording import SessionRecorder
from tradesim.sessions import open_session

# Enters 1, adds 0.5 twice, exits 1.2 (a partial exit across lots), then the rest: every 12 calls.
SCALING = """
local n = 0
function detect_opportunity(md, ctx, ind) n = n + 1; if n % 12 == 1 then return {reason = "go"} end end
function filter_commitment(md, ctx, ind) return {action = "enter_long", quantity = 1, reason = "first"} end
function manage_position(md, ctx, ind)
  n = n + 1
  local k = n % 12
  if k == 3 or k == 5 then return {action = "enter_long", quantity = 0.5, reason = "add"} end
  if k == 7 then return {action = "exit", quantity = 1.2, reason = "part"} end
  if k == 10 then return {action = "exit", reason = "rest"} end
end
"""


@pytest.fixture
def scaled(tmp_path):
    """The SCALING strategy backtested on 400 synthetic 1m bars and recorded: ``script``, ``bars``,
    ``result`` (the backtest's) and ``session`` (the recording, opened)."""
    script = tmp_path / "scale.lua"
    script.write_text(SCALING)
    n = 400
    ts = 1_700_000_000_000 + 60_000 * np.arange(n, dtype=np.int64)
    close = 100 + np.sin(np.arange(n) / 7.0) * 3
    bars = Bars("BTCUSDT", ts, close, close + 0.5, close - 0.5, close, np.ones(n))
    result = Backtest(str(script), bars, close_at_end=False).run(
        SessionRecorder(tmp_path / "s", kind="backtest", name="scale"))
    return SimpleNamespace(script=script, bars=bars, result=result, session=open_session(tmp_path / "s" / "scale"))
