"""runners.toml: validation errors name the key path; a config builds and runs an engine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from click.testing import CliRunner

from tradesim.cli import main
from tradesim.engine.config import ConfigError, load_config, parse_config
from tradesim.engine.run import build_engine

REPO = Path(__file__).resolve().parents[1]
EMA = REPO / "lua-strategies" / "examples" / "ema_crossover.lua"
RSI = REPO / "lua-strategies" / "examples" / "rsi_mean_reversion.lua"

GOOD = f"""
[engine]
workers = 2
queue_size = 256
history_limit = 7

[feeds.sim]
type = "simulated"
interval = "1m"
bars = 800
seed = 3

[[runners]]
symbol = "btcusdt"
strategy = "{EMA}"
feed = "sim"
params = {{ fast = 8, slow = 21 }}
execution = {{ fill = "close", commission_bps = 10, starting_cash = 5000 }}

[[runners]]
symbol = "ETHUSDT"
strategy = "{RSI}"
feed = "sim"
window_size = 300

[[runners]]
symbol = "BTCUSDT"
strategy = "{RSI}"
feed = "simulated"     # implicit feed of that type
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "runners.toml"
    path.write_text(text)
    return path


def test_a_valid_config_builds_the_engine_it_describes(tmp_path):
    config = load_config(_write(tmp_path, GOOD))
    feeds = config.resolved_feeds()
    assert feeds["sim"].symbols == ["BTCUSDT", "ETHUSDT"]
    assert feeds["simulated"].symbols == ["BTCUSDT"] and feeds["simulated"].type == "simulated"
    engine = build_engine(config)
    assert engine.runner_ids == ["BTCUSDT:ema_crossover", "ETHUSDT:rsi_mean_reversion",
                                 "BTCUSDT:rsi_mean_reversion"]
    ema = engine.runner("BTCUSDT:ema_crossover")
    assert ema.execution.fill == "close" and ema.execution.commission_bps == 10
    assert ema.execution.starting_cash == 5000
    assert ema.strategy.params["fast"] == 8 and ema.strategy.params["slow"] == 21
    assert engine.runner("ETHUSDT:rsi_mean_reversion").window.capacity == 300
    assert engine.history_limit == 7 and ema.history_limit == 7
    asyncio.run(engine.run())
    assert engine.runner_health("ETHUSDT:rsi_mean_reversion")["bars"] == 800
    assert engine.runner_health("BTCUSDT:rsi_mean_reversion")["bars"] == 5000


@pytest.mark.parametrize("text, where", [
    ("[[runners]]\nsymbol = 'BTCUSDT'\nstrategy = 's.lua'\nexecution = { slippage_bps = 'abc' }",
     "runners[0].execution.slippage_bps"),
    ("[[runners]]\nsymbol = 'BTCUSDT'\nstrategy = 's.lua'\nexecution = { slippage_bps = -1 }",
     "runners[0].execution.slippage_bps"),
    ("[[runners]]\nsymbol = 'BTCUSDT'\nstrategy = 's.lua'\n[[runners]]\nsymbol = 'X'\nstratgy = 'a'",
     "runners[1].stratgy"),
    ("[[runners]]\nsymbol = 'BTCUSDT'\nstrategy = 's.lua'\nfeed = 'nasdaq'", "runners[0].feed"),
    ("[feeds.a]\ntype = 'ftp'\n[[runners]]\nsymbol = 'B'\nstrategy = 's'\nfeed = 'a'", "feeds.a.type"),
    ("[feeds.a]\ntype = 'simulated'\ninterval = '7x'\n[[runners]]\nsymbol='B'\nstrategy='s'\nfeed='a'",
     "feeds.a.interval"),
    ("[engine]\nworkers = 0\n[[runners]]\nsymbol = 'B'\nstrategy = 's'", "engine.workers"),
    ("[engine]\nworkers = 2", "runners"),
    ("[engine]\nhistory_limit = 0\n[[runners]]\nsymbol = 'B'\nstrategy = 's'", "engine.history_limit"),
    ("[[runners]]\nsymbol = 'B'\nstrategy = 's'\nfeed = 'replay'", "runners[0].data"),
])
def test_errors_name_the_key_path(tmp_path, text, where):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert where in str(info.value)


def test_toml_syntax_error_gives_line(tmp_path):
    with pytest.raises(ConfigError, match=r"TOML syntax error.*line 2"):
        load_config(_write(tmp_path, "[engine]\nworkers = = 2\n"))


def test_relative_paths_resolve_against_the_file(tmp_path):
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "e.lua").write_text(EMA.read_text())
    config = load_config(_write(tmp_path, "[[runners]]\nsymbol='BTCUSDT'\nstrategy='strategies/e.lua'\n"))
    assert Path(config.runners[0].strategy) == tmp_path / "strategies" / "e.lua"
    assert parse_config({"runners": [{"symbol": "b", "strategy": "x"}]}).runners[0].symbol == "B"


def test_cli_run_with_config_prints_every_runner(tmp_path):
    path = _write(tmp_path, GOOD.replace("bars = 800", "bars = 300"))
    events = tmp_path / "events.jsonl"
    result = CliRunner().invoke(main, ["run", "--config", str(path), "--events", str(events)])
    assert result.exit_code == 0, result.output
    for rid in ("BTCUSDT:ema_crossover", "ETHUSDT:rsi_mean_reversion"):
        assert rid[:10] in result.output
    lines = events.read_text().splitlines()
    assert len(lines) > 600 and '"type":"bar_received"' in lines[0]


def test_cli_run_with_a_bad_config_exits_1_naming_the_key(tmp_path):
    path = _write(tmp_path, "[[runners]]\nsymbol='B'\nstrategy='s'\nwindow_size=0\n")
    result = CliRunner().invoke(main, ["run", "--config", str(path)])
    assert result.exit_code == 1 and "runners[0].window_size" in result.output
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 2 and "--strategy" in result.output


def test_missing_strategy_is_reported_with_its_full_path(tmp_path):
    from tradesim.engine.config import load_config
    from tradesim.engine.run import build_engine
    from tradesim.strategy import StrategyLoadError

    (tmp_path / "conf").mkdir()
    toml = tmp_path / "conf" / "runners.toml"
    toml.write_text('[[runners]]\nsymbol = "BTCUSDT"\nstrategy = "strategies/missing.lua"\n')
    config = load_config(toml)
    # relative to the TOML's folder, not the working directory
    assert config.runners[0].strategy == str(tmp_path / "conf" / "strategies" / "missing.lua")
    import pytest as _pytest
    with _pytest.raises(StrategyLoadError, match=str(tmp_path / "conf" / "strategies" / "missing.lua")):
        build_engine(config)
