"""Tests of the OCaml reference indicators and the tradesim.verify bridge.

Part 1 runs the OCaml CLI directly and checks it against TA-Lib (VWAP against
a plain numpy computation) on random series and on the real Binance klines.
Part 2 checks the Python bridge (spec parsing, CLI discovery, comparison, the
click command), using a TA-Lib-backed stand-in for tradesim.indicators.
Part 3 compares the real Cython indicators with the OCaml ones; it is skipped
until tradesim._core is built.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import types
from pathlib import Path

import numpy as np
import pytest

ENV_VAR = "TRADESIM_OCAML_INDICATORS"

if not os.environ.get(ENV_VAR) and (shutil.which("dune") is None or shutil.which("ocaml") is None):
    pytest.skip(
        "OCaml toolchain not found (needs `dune` and `ocaml` on PATH: "
        "apt-get install -y ocaml-nox ocaml-dune libyojson-ocaml-dev), "
        f"and {ENV_VAR} is not set",
        allow_module_level=True,
    )

from click.testing import CliRunner  # noqa: E402

from tradesim import verify  # noqa: E402

TOL = 1e-9


def _repo_root() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here, *here.parents):
        if (candidate / "ocaml-indicators" / "dune-project").is_file():
            return candidate
    pytest.skip(f"no ocaml-indicators/dune-project above {here}")


REPO = _repo_root()
KLINES = REPO.parent / "shared" / "data" / "binance" / "klines" / "1m"


@pytest.fixture(scope="module")
def cli() -> Path:
    """The OCaml CLI: $TRADESIM_OCAML_INDICATORS, else built here with dune."""
    override = os.environ.get(ENV_VAR)
    if override:
        return Path(override)
    project = REPO / "ocaml-indicators"
    proc = subprocess.run(
        ["dune", "build", "--root", str(project), "./bin/main.exe"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, f"dune build failed:\n{proc.stderr}"
    exe = project / "_build" / "default" / "bin" / "main.exe"
    assert exe.is_file()
    return exe


def run_cli(cli: Path, payload) -> tuple[int, object]:
    """Run the CLI on a JSON payload (no bridge involved); (exit code, JSON answer)."""
    text = payload if isinstance(payload, str) else json.dumps(payload)
    proc = subprocess.run([str(cli)], input=text.encode(), capture_output=True, timeout=600)
    return proc.returncode, json.loads(proc.stdout)


def as_arrays(response: dict) -> dict[str, np.ndarray]:
    assert set(response) == {"outputs"}, response
    return {k: np.array(v, dtype=np.float64) for k, v in response["outputs"].items()}


def assert_matches(ours: np.ndarray, ref: np.ndarray, label: str, tol: float = TOL) -> float:
    """Same warm-up (NaN) positions and relative difference <= tol; returns the max rel diff."""
    ours = np.asarray(ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{label}: shape {ours.shape} != {ref.shape}"
    nan_o, nan_r = np.isnan(ours), np.isnan(ref)
    if not np.array_equal(nan_o, nan_r):
        first = int(np.argmax(nan_o != nan_r))
        pytest.fail(
            f"{label}: warm-up differs; first mismatch at index {first}: "
            f"ours={ours[first]!r} reference={ref[first]!r} "
            f"(ours defined from {int(np.argmin(nan_o))}, reference from {int(np.argmin(nan_r))})"
        )
    mask = ~nan_o
    a, b = ours[mask], ref[mask]
    scale = np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-300)
    rel = np.where(a == b, 0.0, np.abs(a - b) / scale)
    worst = float(rel.max()) if rel.size else 0.0
    if worst > tol:
        i = int(np.flatnonzero(mask)[int(np.argmax(rel))])
        pytest.fail(f"{label}: max rel diff {worst:.3g} > {tol:g} at index {i}: ours={ours[i]!r} reference={ref[i]!r}")
    return worst


# ---------------------------------------------------------------------------
# Independent references: TA-Lib, and numpy for VWAP


def numpy_vwap(high, low, close, volume, period):
    tp = (high + low + close) / 3.0
    out = np.full(len(close), np.nan)
    if len(close) >= period:
        windows = np.lib.stride_tricks.sliding_window_view
        pv = windows(tp * volume, period).sum(axis=1)
        vol = windows(volume, period).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[period - 1 :] = np.where(vol == 0.0, np.nan, pv / vol)
    return out


def reference_outputs(name: str, params: dict, bars: dict) -> dict[str, np.ndarray]:
    talib = pytest.importorskip("talib")
    h, l, c = bars["high"], bars["low"], bars["close"]
    if name == "sma":
        return {"sma": talib.SMA(c, params["period"])}
    if name == "ema":
        return {"ema": talib.EMA(c, params["period"])}
    if name == "rsi":
        return {"rsi": talib.RSI(c, params["period"])}
    if name == "macd":
        m, s, hist = talib.MACD(c, params["fast"], params["slow"], params["signal"])
        return {"macd": m, "signal": s, "histogram": hist}
    if name == "bollinger":
        k = float(params["k"])
        up, mid, lo = talib.BBANDS(c, params["period"], k, k, 0)
        return {"upper": up, "middle": mid, "lower": lo}
    if name == "atr":
        return {"atr": talib.ATR(h, l, c, params["period"])}
    if name == "stochastic":
        k, d = talib.STOCH(h, l, c, params["k_period"], params["k_slowing"], 0, params["d_period"], 0)
        return {"k": k, "d": d}
    if name == "vwap":
        return {"vwap": numpy_vwap(h, l, c, bars["volume"], params["period"])}
    raise AssertionError(name)


INPUTS = {
    "sma": ("close",),
    "ema": ("close",),
    "rsi": ("close",),
    "macd": ("close",),
    "bollinger": ("close",),
    "atr": ("high", "low", "close"),
    "stochastic": ("high", "low", "close"),
    "vwap": ("high", "low", "close", "volume"),
}

STANDARD = [
    ("sma", {"period": 20}),
    ("ema", {"period": 20}),
    ("rsi", {"period": 14}),
    ("macd", {"fast": 12, "slow": 26, "signal": 9}),
    ("bollinger", {"period": 20, "k": 2}),
    ("atr", {"period": 14}),
    ("stochastic", {"k_period": 14, "k_slowing": 3, "d_period": 3}),
    ("vwap", {"period": 20}),
]

UNUSUAL = [
    ("sma", {"period": 1}),
    ("sma", {"period": 2}),
    ("sma", {"period": 50}),
    ("ema", {"period": 2}),
    ("ema", {"period": 50}),
    ("rsi", {"period": 2}),
    ("rsi", {"period": 30}),
    ("macd", {"fast": 5, "slow": 3, "signal": 4}),  # fast > slow: swapped
    ("macd", {"fast": 2, "slow": 2, "signal": 1}),
    ("macd", {"fast": 3, "slow": 10, "signal": 16}),
    ("bollinger", {"period": 5, "k": 1.5}),
    ("bollinger", {"period": 2, "k": 3}),
    ("atr", {"period": 1}),
    ("atr", {"period": 30}),
    ("stochastic", {"k_period": 5, "k_slowing": 1, "d_period": 1}),
    ("stochastic", {"k_period": 9, "k_slowing": 4, "d_period": 2}),
    ("stochastic", {"k_period": 1, "k_slowing": 1, "d_period": 1}),
    ("vwap", {"period": 1}),
    ("vwap", {"period": 50}),
]


def random_bars(
    seed: int, n: int = 4000, price: float = 100.0, vol: float = 0.01, tick: float | None = None, flat: bool = True
):
    """Geometric random walk OHLCV with occasional zero-volume bars."""
    rng = np.random.default_rng(seed)
    close = price * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    open_ = np.r_[close[0], close[:-1]]
    wick = np.abs(rng.normal(0.0, vol, n)) * close
    high = np.maximum(open_, close) + wick * rng.random(n)
    low = np.minimum(open_, close) - wick * rng.random(n)
    volume = rng.lognormal(0.0, 1.0, n)
    volume[rng.random(n) < 0.05] = 0.0
    volume[100:130] = 0.0  # a run of empty bars: VWAP windows with no volume
    # flat stretches (no trades moving the price): RSI's 0/0 case, HH == LL in
    # the stochastic, zero standard deviation, zero true range.  The one inside
    # the series is kept short (15 bars).
    for lo, hi in ((0, 60), (1500, 1515)) if flat else ():
        if lo >= n:
            continue
        close[lo:hi] = close[lo]
        high[lo:hi] = low[lo:hi] = close[lo]
    if tick:
        close, high, low = (np.round(x / tick) * tick for x in (close, high, low))
        high = np.maximum(high, close)
        low = np.minimum(low, close)
    return {"high": high, "low": low, "close": close, "volume": volume}


RANDOM_CASES = {
    "walk100": dict(seed=1),
    "btc-like-quiet": dict(seed=2, price=1e5, vol=1e-4),
    "ticked-flat": dict(seed=3, price=10.0, vol=0.002, tick=0.01),
    "penny": dict(seed=4, price=0.5, vol=0.02, tick=1e-4),
}


def check_against_reference(cli: Path, bars: dict, cases, label: str) -> dict[str, float]:
    requests = [
        {"indicator": name, "params": params, "inputs": {k: bars[k].tolist() for k in INPUTS[name]}}
        for name, params in cases
    ]
    code, answer = run_cli(cli, requests)
    assert code == 0, answer
    assert isinstance(answer, list) and len(answer) == len(requests)
    worst = {}
    for (name, params), response in zip(cases, answer):
        ours = as_arrays(response)
        ref = reference_outputs(name, params, bars)
        assert set(ours) == set(ref), (name, set(ours))
        for out, ref_values in ref.items():
            tag = f"{label} {name}{params} {out}"
            worst[f"{name} {out}"] = max(worst.get(f"{name} {out}", 0.0), assert_matches(ours[out], ref_values, tag))
    return worst


# ---------------------------------------------------------------------------
# Part 1: the OCaml CLI against TA-Lib / numpy


@pytest.mark.parametrize("case", sorted(RANDOM_CASES))
def test_cli_matches_talib_on_random_series(cli, case):
    pytest.importorskip("talib")
    bars = random_bars(**RANDOM_CASES[case])
    check_against_reference(cli, bars, STANDARD + UNUSUAL, case)


def test_cli_short_series_are_all_warmup(cli):
    pytest.importorskip("talib")
    bars = random_bars(seed=5, n=12)
    check_against_reference(cli, bars, STANDARD, "short")
    code, answer = run_cli(cli, {"indicator": "macd", "params": {"fast": 12, "slow": 26, "signal": 9},
                                 "inputs": {"close": bars["close"].tolist()}})
    assert code == 0
    assert all(v is None for v in answer["outputs"]["macd"])


def _load_klines(path: Path) -> dict[str, np.ndarray]:
    with gzip.open(path, "rt") as fh:
        header = fh.readline().strip().split(",")
    cols = [header.index(c) for c in ("high", "low", "close", "volume")]
    data = np.loadtxt(path, delimiter=",", skiprows=1, usecols=cols, ndmin=2)
    return dict(zip(("high", "low", "close", "volume"), data.T.copy()))


def _kline_files() -> list[Path]:
    if not KLINES.is_dir():
        return []
    return sorted(p for p in KLINES.glob("*.csv.gz") if p.name.startswith(("BTCUSDT", "ETHUSDT")))


@pytest.mark.parametrize("path", _kline_files() or [None], ids=lambda p: p.name.split(".")[0] if p else "missing")
def test_cli_matches_talib_on_real_klines(cli, path):
    pytest.importorskip("talib")
    if path is None:
        pytest.skip(f"real klines not found: no BTCUSDT/ETHUSDT *.csv.gz in {KLINES}")
    bars = _load_klines(path)
    assert len(bars["close"]) > 1000
    check_against_reference(cli, bars, STANDARD, path.name)


def test_rsi_zero_only_without_movement(cli):
    # Convention (TA-Lib >= 0.6, the Cython core): RSI is 0.0 only when
    # avgGain + avgLoss is exactly 0. Worked out by hand: RSI(2) on
    # [0, 1e-9, 1e-9]: gain = (1e-9 + 0)/2 = 5e-10, loss = 0 -> 100 * 5e-10 / 5e-10 = 100
    # (TA-Lib 0.4's 1e-8 threshold would give 0); a flat series gives 0.
    code, answer = run_cli(cli, [
        {"indicator": "rsi", "params": {"period": 2}, "inputs": {"close": [0, 1e-9, 1e-9]}},
        {"indicator": "rsi", "params": {"period": 2}, "inputs": {"close": [0, 1e-7, 1e-7]}},
        {"indicator": "rsi", "params": {"period": 3}, "inputs": {"close": [7, 7, 7, 7, 7]}},
    ])
    assert code == 0
    assert [a["outputs"]["rsi"] for a in answer] == [[None, None, 100], [None, None, 100], [None, None, None, 0, 0]]


def test_cli_single_request_and_full_precision(cli):
    rng = np.random.default_rng(7)
    x = rng.normal(size=200) * 10.0 ** rng.integers(-8, 9, size=200)
    # SMA(1) is x/1 = x exactly: the printed %.17g values must round-trip bit for bit
    code, answer = run_cli(cli, {"indicator": "sma", "params": {"period": 1}, "inputs": {"close": x.tolist()}})
    assert code == 0
    back = np.array(answer["outputs"]["sma"], dtype=np.float64)
    assert np.array_equal(back, x)


def test_cli_nulls_in_warmup_and_input(cli):
    # null inputs become NaN; NaN outputs are printed as null.  Like TA-Lib's
    # running sum, the SMA stays NaN after a NaN input.
    code, answer = run_cli(cli, {"indicator": "sma", "params": {"period": 2}, "inputs": {"close": [1, 3, None, 5, 7]}})
    assert code == 0
    assert answer == {"outputs": {"sma": [None, 2, None, None, None]}}
    # window functions recover once the NaN has left the window
    code, answer = run_cli(cli, {"indicator": "vwap", "params": {"period": 1}, "inputs": {
        "high": [3, 3, 3], "low": [3, 3, 3], "close": [3, None, 3], "volume": [1, 1, 1]}})
    assert code == 0
    assert answer == {"outputs": {"vwap": [3, None, 3]}}


@pytest.mark.parametrize(
    "request_, fragment",
    [
        ({"indicator": "foo", "params": {}, "inputs": {}}, "unknown indicator"),
        ({"indicator": "rsi", "params": {}, "inputs": {"close": [1, 2, 3]}}, "missing param"),
        ({"indicator": "rsi", "params": {"period": 2}, "inputs": {}}, "missing input"),
        ({"indicator": "rsi", "params": {"period": 0}, "inputs": {"close": [1, 2, 3]}}, ">= 1"),
        ({"indicator": "rsi", "params": {"period": 2.5}, "inputs": {"close": [1, 2, 3]}}, "integer"),
        ({"indicator": "rsi", "params": {"period": 2, "perod": 3}, "inputs": {"close": [1, 2]}}, "unknown param"),
        ({"indicator": "atr", "params": {"period": 2}, "inputs": {"high": [1], "low": [1, 2], "close": [1]}}, "length"),
        ({"indicator": "sma", "params": {"period": 2}, "inputs": {"close": "abc"}}, "array of numbers"),
    ],
)
def test_cli_errors(cli, request_, fragment):
    code, answer = run_cli(cli, request_)
    assert code == 1
    assert set(answer) == {"error"} and fragment in answer["error"], answer


def test_cli_invalid_json_and_batch_errors(cli):
    code, answer = run_cli(cli, "{not json")
    assert code == 1 and "invalid JSON" in answer["error"]
    good = {"indicator": "ema", "params": {"period": 2}, "inputs": {"close": [1, 2, 3]}}
    bad = {"indicator": "ema", "params": {"period": -1}, "inputs": {"close": [1, 2, 3]}}
    code, answer = run_cli(cli, [good, bad, good])
    assert code == 1
    # EMA(2), k = 2/3: seed (1+2)/2 = 1.5, then 1.5 + 2/3*(3-1.5) = 2.5
    assert answer[0] == answer[2] == {"outputs": {"ema": [None, 1.5, 2.5]}}
    assert "error" in answer[1]


# ---------------------------------------------------------------------------
# Part 2: the bridge, with a TA-Lib-backed stand-in for tradesim.indicators


def talib_impl():
    talib = pytest.importorskip("talib")
    return types.SimpleNamespace(
        sma=lambda close, period: talib.SMA(close, period),
        ema=lambda close, period: talib.EMA(close, period),
        rsi=lambda close, period: talib.RSI(close, period),
        macd=lambda close, fast, slow, signal: talib.MACD(close, fast, slow, signal),
        bollinger=lambda close, period, k: talib.BBANDS(close, period, k, k, 0),
        atr=lambda high, low, close, period: talib.ATR(high, low, close, period),
        stochastic=lambda high, low, close, kp, ks, dp: talib.STOCH(high, low, close, kp, ks, 0, dp, 0),
        vwap=numpy_vwap,
    )


def naive_ema(x, period):
    """EMA seeded with x[0] (a common convention, not TA-Lib's): must be caught."""
    k = 2.0 / (period + 1)
    out = np.empty_like(x)
    out[0] = x[0]
    for i in range(1, len(x)):
        out[i] = out[i - 1] + k * (x[i] - out[i - 1])
    return out


def test_parse_spec():
    assert str(verify.parse_spec("rsi:14")) == "rsi:14"
    assert verify.parse_spec("macd:12,26,9").params == (("fast", 12), ("slow", 26), ("signal", 9))
    assert verify.parse_spec("bollinger:20").params == (("period", 20), ("k", 2.0))
    assert str(verify.parse_spec("bollinger:20,2.5")) == "bollinger:20,2.5"
    assert str(verify.parse_spec(" Stochastic ")) == "stochastic:14,3,3"
    for bad in ("foo:1", "rsi:0", "rsi:1.5", "rsi:x", "macd:1,2,3,4", "bollinger:20,nan"):
        with pytest.raises(ValueError):
            verify.parse_spec(bad)
    assert [str(verify.parse_spec(s)) for s in verify.DEFAULT_SPECS] == list(verify.DEFAULT_SPECS)


def test_diff_arrays():
    nan = np.nan
    assert verify.diff_arrays(np.array([nan, 0.0, 2.0]), np.array([nan, 0.0, 2.0])) == (0.0, 0.0, True, 2)
    abs_d, rel_d, warm, n = verify.diff_arrays(np.array([nan, 1.0, 4.0]), np.array([nan, 1.0, 5.0]))
    assert (abs_d, warm, n) == (1.0, True, 2) and rel_d == pytest.approx(0.2)
    assert verify.diff_arrays(np.array([nan, 1.0]), np.array([0.0, 1.0]))[2] is False
    assert verify.diff_arrays(np.array([1.0]), np.array([1.0, 2.0]))[2] is False
    # near zero the relative difference is large even for tiny absolute differences
    assert verify.diff_arrays(np.array([1e-15]), np.array([0.0]))[1] == 1.0


def test_find_cli_env_override(monkeypatch, cli, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(cli))
    assert verify.find_cli() == cli
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(verify.VerifyUnavailable, match=ENV_VAR):
        verify.find_cli()


def test_find_cli_unavailable(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(verify, "_find_project_dir", lambda: None)
    with pytest.raises(verify.VerifyUnavailable, match="cannot find"):
        verify.find_cli()
    project = tmp_path / "ocaml-indicators"
    project.mkdir()
    (project / "dune-project").write_text("(lang dune 2.9)\n")
    monkeypatch.setattr(verify, "_find_project_dir", lambda: project)
    monkeypatch.setattr(verify.shutil, "which", lambda name: None)
    with pytest.raises(verify.VerifyUnavailable, match="dune is not on PATH"):
        verify.find_cli()


def test_find_cli_builds_repo_cli(monkeypatch):
    if shutil.which("dune") is None:
        pytest.skip("dune is not on PATH")
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(REPO)
    exe = verify.find_cli()
    assert exe == (REPO / "ocaml-indicators" / "_build" / "default" / "bin" / "main.exe").resolve()
    assert exe.is_file()


def test_run_reference(cli):
    close = np.array([1.0, 2.0, 4.0, 3.0, 5.0, np.nan])
    (res,) = verify.run_reference(
        [{"indicator": "rsi", "params": {"period": 2}, "inputs": {"close": close}}], cli=cli
    )
    assert set(res) == {"rsi"} and res["rsi"].dtype == np.float64 and len(res["rsi"]) == 6
    assert np.isnan(res["rsi"][[0, 1, 5]]).all()
    # RSI(2): gains 1,2 -> 100; then -1 -> 60 (Wilder smoothing, worked out by hand)
    assert res["rsi"][2:5] == pytest.approx([100.0, 60.0, 1100.0 / 13.0], rel=1e-15)
    with pytest.raises(verify.VerifyError, match="unknown indicator"):
        verify.run_reference([{"indicator": "nope", "params": {}, "inputs": {}}], cli=cli)


def test_compare_with_talib_impl_passes(cli):
    bars = random_bars(seed=11, n=3000)
    results = verify.compare(bars, impl=talib_impl(), cli=cli)
    expected = [(spec, out) for spec in verify.DEFAULT_SPECS for out in verify.parse_spec(spec).outputs]
    assert [(r.spec, r.output) for r in results] == expected
    for r in results:
        assert r.ok(TOL), r
        assert r.n_compared > 2900


def test_compare_catches_wrong_implementations(cli):
    bars = random_bars(seed=12, n=500, flat=False)  # a flat start would hide seeding errors
    talib = pytest.importorskip("talib")
    impl = talib_impl()
    impl.ema = naive_ema  # wrong warm-up and wrong seed

    def macd_first_values_seed(close, fast, slow, signal):
        # fast EMA seeded with the first `fast` values instead of TA-Lib's alignment
        f, s = talib.EMA(close, fast), talib.EMA(close, slow)
        m = f - s
        sig = np.full_like(m, np.nan)
        sig[slow - 1 :] = talib.EMA(m[slow - 1 :], signal)
        m[: slow + signal - 2] = np.nan
        sig[: slow + signal - 2] = np.nan
        return m, sig, m - sig

    impl.macd = macd_first_values_seed
    impl.vwap = lambda h, l, c, v, period: numpy_vwap(h, l, c, v, period) * (1 + 1e-8)
    results = {(r.spec.split(":")[0], r.output): r for r in verify.compare(bars, impl=impl, cli=cli)}
    assert not results["ema", "ema"].warmup_matches
    assert not results["macd", "macd"].ok(TOL) and results["macd", "macd"].warmup_matches
    assert not results["vwap", "vwap"].ok(TOL)
    assert 5e-9 < results["vwap", "vwap"].max_rel_diff < 2e-8
    assert results["rsi", "rsi"].ok(TOL)


def _patch_bridge(monkeypatch, impl, bars):
    monkeypatch.setattr(verify, "_default_impl", lambda: impl)
    monkeypatch.setattr(verify, "_load_bars", lambda path: types.SimpleNamespace(**bars))


def test_verify_command(monkeypatch, cli, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(cli))
    data = tmp_path / "bars.csv"
    data.write_text("timestamp,open,high,low,close,volume\n")  # contents unused: loader is patched
    bars = random_bars(seed=13, n=800)
    impl = talib_impl()
    _patch_bridge(monkeypatch, impl, bars)
    runner = CliRunner()

    result = runner.invoke(verify.verify, ["--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "FAIL" not in result.output
    for name in ("sma", "ema", "rsi", "macd", "bollinger", "atr", "stochastic", "vwap"):
        assert name in result.output

    result = runner.invoke(verify.verify, ["--data", str(data), "--indicator", "rsi:7",
                                           "--indicator", "bollinger:10,1.5", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["ok"] is True
    assert [(r["spec"], r["output"]) for r in doc["results"]] == [
        ("rsi:7", "rsi"), ("bollinger:10,1.5", "upper"), ("bollinger:10,1.5", "middle"), ("bollinger:10,1.5", "lower"),
    ]

    impl.rsi = lambda close, period: talib_impl().rsi(close, period) * (1 + 1e-6)
    result = runner.invoke(verify.verify, ["--data", str(data), "--indicator", "rsi:14", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["results"][0]["ok"] is False
    # ... unless the tolerance allows it
    result = runner.invoke(verify.verify, ["--data", str(data), "--indicator", "rsi:14", "--tolerance", "1e-5"])
    assert result.exit_code == 0, result.output

    result = runner.invoke(verify.verify, ["--data", str(data), "--indicator", "bogus:3"])
    assert result.exit_code == 2 and "bogus" in result.output
    result = runner.invoke(verify.verify, ["--indicator", "rsi:14"])
    assert result.exit_code == 2
    result = runner.invoke(verify.verify, ["--data", str(data), "--tolerance", "-1"])
    assert result.exit_code == 2

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing-exe"))
    result = runner.invoke(verify.verify, ["--data", str(data)])
    assert result.exit_code == 1 and "unavailable" in result.output


# ---------------------------------------------------------------------------
# Part 3: tradesim's Cython indicators against the OCaml reference


@pytest.fixture(scope="module")
def cython_indicators():
    pytest.importorskip("tradesim._core", reason="tradesim._core (Cython) is not built")
    return pytest.importorskip("tradesim.indicators", reason="tradesim.indicators is not importable yet")


@pytest.mark.parametrize("case", sorted(RANDOM_CASES))
def test_cython_matches_ocaml_random(cli, cython_indicators, case):
    bars = random_bars(**RANDOM_CASES[case])
    specs = list(verify.DEFAULT_SPECS) + [
        "sma:2", "ema:2", "rsi:2", "macd:5,3,4", "bollinger:5,1.5", "atr:1",
        "stochastic:5,1,1", "stochastic:9,4,2", "vwap:1",
    ]
    bad = [r for r in verify.compare(bars, specs, impl=cython_indicators, cli=cli) if not r.ok(TOL)]
    assert not bad, "\n".join(map(str, bad))


@pytest.mark.parametrize("path", _kline_files() or [None], ids=lambda p: p.name.split(".")[0] if p else "missing")
def test_cython_matches_ocaml_real_klines(cli, cython_indicators, path, monkeypatch):
    if path is None:
        pytest.skip(f"real klines not found: no BTCUSDT/ETHUSDT *.csv.gz in {KLINES}")
    data = pytest.importorskip("tradesim.data")
    bars = data.load_bars(path)
    results = verify.compare(bars, impl=cython_indicators, cli=cli)
    assert len(results) == 13
    bad = [r for r in results if not r.ok(TOL)]
    assert not bad, "\n".join(map(str, bad))
    # and through the click command, with the real loader and implementation
    monkeypatch.setenv(ENV_VAR, str(cli))
    result = CliRunner().invoke(verify.verify, ["--data", str(path)])
    assert result.exit_code == 0, result.output
