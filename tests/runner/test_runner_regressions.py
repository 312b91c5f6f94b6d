"""Regressions found in review: error streaks, reload under a runner, stale context, symbol, error lines."""

from tradesim import MarketData
from tradesim.runner import RunnerStatus, SymbolRunner

SKELETON = """
function detect_opportunity(md, ctx, ind) {detect} end
function filter_commitment(md, ctx, ind) {filter} end
function manage_position(md, ctx, ind) {manage} end
"""


def write(tmp_path, detect="return nil", filter="return nil", manage="return nil", name="s.lua"):
    p = tmp_path / name
    p.write_text(SKELETON.format(detect=detect, filter=filter, manage=manage))
    return p


def bars(n, start=1):
    for i in range(start, start + n):
        c = 100.0 + (i % 7)
        yield MarketData("BTCUSDT", 60_000 * i, c, c + 1, c - 1, c, 1.0)


def test_malformed_action_tables_count_toward_the_error_limit(tmp_path):
    # detect finds a setup every bar and filter returns a table with an unknown field
    p = write(tmp_path, detect="return {reason = 'x'}", filter="return {action = 'enter_long', bogus = 1}")
    r = SymbolRunner("BTCUSDT", p, max_consecutive_errors=3)
    results = [r.process(b) for b in bars(10)]
    assert results[:2] == [True, True] and results[2] is False
    assert r.status == RunnerStatus.FAILED and "3 consecutive" in r.status_reason
    assert len(r.errors) == 3 and "unknown field" in r.errors[-1].message


def test_failed_setup_bar_leaves_no_stale_context(tmp_path):
    p = write(tmp_path, detect="return {reason = 'x', level = 1}", filter="error('boom')")
    r = SymbolRunner("BTCUSDT", p, max_consecutive_errors=100)
    r.process(next(bars(1)))
    assert r.errors and r.machine.state.name == "IDLE"
    assert r.strategy.context() == {}


def test_reload_under_a_runner_runs_the_new_code(tmp_path):
    p = write(tmp_path, detect="return {reason = 'v1'}", filter="return {action = 'cancel_analysis'}")
    events = []
    r = SymbolRunner("BTCUSDT", p, on_event=events.append)
    gen = bars(10)
    r.process(next(gen))
    p.write_text(SKELETON.format(detect="return {reason = 'v2'}", filter="return {action = 'cancel_analysis'}",
                                 manage="return nil"))
    r.reload()
    r.process(next(gen))
    reasons = [e["reason"] for e in events if e["type"] == "opportunity_detected"]
    assert reasons == ["v1", "v2"]


def test_market_data_has_the_symbol(tmp_path):
    p = write(tmp_path, detect="return {reason = md.symbol}", filter="return {action = 'cancel_analysis'}")
    events = []
    r = SymbolRunner("BTCUSDT", p, on_event=events.append)
    r.process(next(bars(1)))
    assert [e["reason"] for e in events if e["type"] == "opportunity_detected"] == ["BTCUSDT"]


def test_bad_multi_output_indicator_argument_points_at_script_line(tmp_path):
    p = write(tmp_path, detect="\nlocal m = ind.macd(12.5, 26, 9)\nreturn nil")
    r = SymbolRunner("BTCUSDT", p, max_consecutive_errors=100)
    r.process(next(bars(1)))
    assert r.errors and "s.lua:3:" in r.errors[0].message
