"""runners.toml [risk] / [portfolio] (validation, per-runner overrides, reaching the engine) and the
`tradesim backtest` / `tradesim run` options reaching the run (docs/orders.md, Risk limits)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tradesim.cli import main
from tradesim.engine.config import ConfigError, parse_config
from tradesim.engine.run import build_engine
from tradesim.portfolio import PortfolioConfig
from tradesim.runner.risk import RiskConfig

HOUR = 3_600_000
T0 = 1_735_689_600_000


def _doc(**tables):
    runners = tables.pop("runners", [{"symbol": "BTCUSDT", "strategy": "s.lua"},
                                     {"symbol": "ETHUSDT", "strategy": "s.lua",
                                      "risk": {"max_drawdown_pct": 20}}])
    return {"runners": runners, **tables}


def test_risk_defaults_merge_under_each_runners_own_keys():
    config = parse_config(_doc(risk={"max_position_notional": 5000, "max_drawdown_pct": 10,
                                     "on_breach": "halt"},
                               portfolio={"cash": "shared", "max_open_positions": 1}))
    assert config.runners[0].risk == RiskConfig(max_position_notional=5000, max_drawdown_pct=10,
                                                on_breach="halt")
    assert config.runners[1].risk == RiskConfig(max_position_notional=5000, max_drawdown_pct=20,
                                                on_breach="halt")
    assert config.portfolio == PortfolioConfig(cash="shared", max_open_positions=1)


def test_without_risk_tables_runners_have_no_limits():
    config = parse_config(_doc(runners=[{"symbol": "BTCUSDT", "strategy": "s.lua"}]))
    assert config.runners[0].risk == RiskConfig() and config.portfolio == PortfolioConfig()


@pytest.mark.parametrize("tables, expected", [
    ({"portfolio": {"max_drawdown_pct": 150}},
     "portfolio.max_drawdown_pct: Input should be less than 100 (got 150)"),
    ({"portfolio": {"cash": "pooled"}}, "portfolio.cash: Input should be 'per_runner' or 'shared' (got 'pooled')"),
    ({"portfolio": {"max_open_positions": -2}},
     "portfolio.max_open_positions: Input should be greater than or equal to 0 (got -2)"),
    ({"portfolio": {"kill_switch": True}}, "portfolio.kill_switch: Unexpected keyword argument (got True)"),
    ({"risk": {"on_breach": "stop"}}, "risk.on_breach: Input should be 'block' or 'halt' (got 'stop')"),
    ({"runners": [{"symbol": "BTCUSDT", "strategy": "s.lua", "risk": {"max_daily_loss_pct": -1}}]},
     "runners[0].risk.max_daily_loss_pct: Input should be greater than or equal to 0 (got -1)"),
    ({"runners": [{"symbol": "BTCUSDT", "strategy": "s.lua",
                   "execution": {"min_notional": "five"}}]},
     "runners[0].execution.min_notional: Input should be a valid number"),
])
def test_errors_name_the_key_path_and_value(tables, expected):
    with pytest.raises(ConfigError) as info:
        parse_config(_doc(**tables), "runners.toml")
    assert expected in str(info.value)


def test_the_config_reaches_the_engine_and_its_runners(tmp_path):
    script = tmp_path / "s.lua"
    script.write_text('function detect_opportunity() return nil end\n'
                      'function filter_commitment() return nil end\nfunction manage_position() return nil end\n')
    config = parse_config(_doc(risk={"max_drawdown_pct": 10}, portfolio={"max_open_positions": 1},
                               runners=[{"symbol": "BTCUSDT", "strategy": str(script),
                                         "execution": {"lot_size": 0.001, "min_notional": 5}}]))
    engine = build_engine(config)
    runner = engine.runner(engine.runner_ids[0])
    assert runner.risk == RiskConfig(max_drawdown_pct=10)
    assert (runner.execution.lot_size, runner.execution.min_notional) == (0.001, 5)
    assert engine.portfolio is not None and engine.portfolio.config.max_open_positions == 1
    assert runner.core.gate is engine.portfolio


# --------------------------------------------------------------------------- command line

def _invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_backtest_options_reach_the_backtest(level, bars_csv):
    a = bars_csv("AAAUSDT", [99, 100, 101, 89, 95, 95])
    b = bars_csv("BBBUSDT", [99, 99, 100, 100, 100, 100])
    result = _invoke("backtest", "--strategy", str(level), "--data", str(a), "--data", str(b), "--fill", "close",
                     "--max-open-positions", "1", "--portfolio-max-drawdown-pct", "50",
                     "--risk-max-position-notional", "1000", "--lot-size", "0.5", "--min-notional", "2",
                     "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["portfolio"]["config"] == {"cash": "per_runner", "max_open_positions": 1,
                                          "max_daily_loss_pct": 0.0, "max_drawdown_pct": 50.0,
                                          "on_breach": "block"}
    assert out["ledger"]["risk"]["max_position_notional"] == 1000.0
    assert (out["ledger"]["lot_size"], out["ledger"]["min_notional"]) == (0.5, 2.0)
    # the max_open_positions case of test_backtest_limits: B's entry at bar 2 rejected
    (event,) = out["portfolio"]["risk_events"]
    assert (event["limit"], event["symbol"], event["timestamp"]) == ("max_open_positions", "BBBUSDT", T0 + 2 * HOUR)
    assert [(x["symbol"], x["entry_time"]) for x in out["trades"]] == [("AAAUSDT", T0 + HOUR),
                                                                       ("BBBUSDT", T0 + 3 * HOUR)]


def test_backtest_summary_shows_the_portfolio(level, bars_csv):
    a = bars_csv("AAAUSDT", [99, 100, 101, 89, 95, 95])
    result = _invoke("backtest", "--strategy", str(level), "--data", str(a), "--fill", "close")
    assert result.exit_code == 0, result.output
    assert "Portfolio" in result.output and "realised P&L -11.00" in result.output


@pytest.mark.parametrize("args, message", [
    (["--portfolio-max-drawdown-pct", "150"], "--portfolio-max-drawdown-pct"),
    (["--max-open-positions", "-1"], "--max-open-positions"),
    (["--lot-size", "-0.1"], "--lot-size"),
    (["--risk-max-daily-loss-pct", "nan"], "--risk-max-daily-loss-pct"),
])
def test_bad_option_values_are_usage_errors_naming_the_option(level, bars_csv, args, message):
    a = bars_csv("AAAUSDT", [99, 100, 101])
    result = _invoke("backtest", "--strategy", str(level), "--data", str(a), *args)
    assert result.exit_code == 2
    assert message in result.output and args[1] in result.output


def test_run_options_reach_the_engine(level, monkeypatch):
    seen = {}

    def fake_run_paper(strategy, **kwargs):
        seen.update(kwargs)
        return []
    monkeypatch.setattr("tradesim.engine.run.run_paper", fake_run_paper)
    result = _invoke("run", "--strategy", str(level), "--portfolio-cash", "shared", "--max-open-positions", "2",
                     "--risk-on-breach", "halt", "--risk-max-drawdown-pct", "5", "--min-notional", "10")
    assert result.exit_code == 0, result.output
    assert seen["portfolio"] == {"cash": "shared", "max_open_positions": 2}
    assert seen["risk"] == {"on_breach": "halt", "max_drawdown_pct": 5.0}
    assert seen["execution"]["min_notional"] == 10.0


def test_run_with_config_refuses_limit_options(tmp_path):
    result = _invoke("run", "--config", str(tmp_path / "runners.toml"), "--max-open-positions", "1")
    assert result.exit_code == 2 and "runners.toml" in result.output
