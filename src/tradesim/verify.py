"""Cross-check tradesim's Cython indicators against the OCaml reference.

The OCaml implementation lives in ``<repo>/ocaml-indicators`` and is built
with dune into a small CLI that answers JSON requests on stdin (see
``ocaml-indicators/README.md``).  This module locates (and if needed builds)
that CLI, runs it on a batch of requests, and compares its outputs with the
batch functions of :mod:`tradesim.indicators`.

Both implementations follow TA-Lib's conventions: warm-up values are NaN and
must sit at the same positions, and after the warm-up the values must agree
to a relative tolerance (1e-9 by default).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from tradesim import indicators as registry
from tradesim.jsonable import finite_or_none, jsonable

__all__ = [
    "DEFAULT_SPECS",
    "Comparison",
    "IndicatorSpec",
    "VerifyError",
    "VerifyUnavailable",
    "compare",
    "find_cli",
    "parse_spec",
    "run_reference",
    "verify",
]

ENV_VAR = "TRADESIM_OCAML_INDICATORS"
"""Environment variable naming a prebuilt OCaml indicators CLI."""

_PROJECT_MARKER = Path("ocaml-indicators") / "dune-project"
_EXE_RELATIVE = Path("_build") / "default" / "bin" / "main.exe"


class VerifyUnavailable(RuntimeError):
    """The OCaml reference CLI cannot be found or built."""


class VerifyError(RuntimeError):
    """The OCaml reference CLI ran but rejected a request or misbehaved."""


# ---------------------------------------------------------------------------
# Indicator specs (read from the registry, `tradesim.indicators`)


DEFAULT_SPECS: tuple[str, ...] = tuple(
    registry.spec_name(info, info.defaults) for info in registry.available())
"""The default set: every registered indicator with its standard parameters."""


@dataclass(frozen=True)
class IndicatorSpec:
    """A parsed indicator spec such as ``macd:12,26,9``.

    Attributes
    ----------
    name : str
        Registry name of the indicator (``sma``, ``ema``, ``rsi``, ``macd``,
        ``bollinger``, ``atr``, ``stochastic`` or ``vwap``).
    params : tuple of (str, int or float)
        Parameter names and values, in the order of the indicator's signature.
    """

    name: str
    params: tuple[tuple[str, int | float], ...]

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of the bar columns the indicator reads."""
        return registry.get(self.name).inputs

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of the indicator's outputs, in the order they are returned."""
        return registry.get(self.name).outputs

    def __str__(self) -> str:
        return registry.spec_name(registry.get(self.name), tuple(v for _, v in self.params))

    def request(self, columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Build the OCaml CLI request for this spec from bar ``columns``."""
        return {
            "indicator": self.name,
            "params": dict(self.params),
            "inputs": {name: columns[name] for name in self.inputs},
        }


def parse_spec(spec: str | IndicatorSpec) -> IndicatorSpec:
    """Parse an indicator spec string with the registry's rules.

    Parameters
    ----------
    spec : str or IndicatorSpec
        ``NAME`` or ``NAME:P1,P2,...``, e.g. ``rsi:14``, ``macd:12,26,9``,
        ``bollinger:20,2``, ``stochastic:14,3,3``.  Missing trailing
        parameters take the standard defaults (``bollinger:20`` means
        ``bollinger:20,2``; ``rsi`` means ``rsi:14``).  An
        :class:`IndicatorSpec` is returned unchanged.

    Returns
    -------
    IndicatorSpec

    Raises
    ------
    ValueError
        Unknown indicator, too many parameters, a non-numeric parameter, or
        a parameter below its minimum (`tradesim.indicators.parse_spec`).
    """
    if isinstance(spec, IndicatorSpec):
        return spec
    try:
        info, values = registry.parse_spec(spec)
    except KeyError as exc:  # an unknown name: a bad value here, like the others
        raise ValueError(exc.args[0]) from None
    return IndicatorSpec(info.name, tuple((p.name, v) for p, v in zip(info.params, values)))


# ---------------------------------------------------------------------------
# Locating / building the CLI


def _find_project_dir() -> Path | None:
    starts = [Path(__file__).resolve().parent, Path.cwd().resolve()]
    for start in starts:
        for candidate in (start, *start.parents):
            if (candidate / _PROJECT_MARKER).is_file():
                return candidate / _PROJECT_MARKER.parent
    return None


def _newest_source_mtime(project: Path) -> float:
    """Latest modification time of the files the CLI is built from."""
    sources = [project / "dune-project"]
    for sub in ("src", "bin"):
        sources.extend((project / sub).glob("*.ml*"))
        sources.append(project / sub / "dune")
    return max((p.stat().st_mtime for p in sources if p.is_file()), default=0.0)


def find_cli(*, build: bool = True) -> Path:
    """Locate the OCaml indicators CLI, building it with dune if needed.

    Lookup order: the ``TRADESIM_OCAML_INDICATORS`` environment variable if
    set (it must name an executable file); otherwise
    ``<repo>/ocaml-indicators/_build/default/bin/main.exe``, where ``<repo>``
    is the first directory containing ``ocaml-indicators/dune-project`` found
    by walking up from this file, then from the working directory.  When
    ``dune`` is on ``PATH`` and the executable is missing or older than its
    sources, ``dune build --root <repo>/ocaml-indicators`` is run first.

    Parameters
    ----------
    build : bool, default True
        Allow running ``dune build``.

    Returns
    -------
    pathlib.Path
        Path of the executable.

    Raises
    ------
    VerifyUnavailable
        With the reason: the environment variable names no executable, the
        project directory is not found, dune is missing, or the build failed.
    """
    override = os.environ.get(ENV_VAR)
    if override:
        exe = Path(override)
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            raise VerifyUnavailable(f"{ENV_VAR}={override!r} is not an executable file")
        return exe

    project = _find_project_dir()
    if project is None:
        raise VerifyUnavailable(
            f"cannot find {_PROJECT_MARKER} above {Path(__file__).resolve().parent} "
            f"or {Path.cwd()}; set {ENV_VAR} to the built CLI"
        )
    exe = project / _EXE_RELATIVE
    stale = not exe.is_file() or exe.stat().st_mtime < _newest_source_mtime(project)
    if not stale:
        return exe
    dune = shutil.which("dune")
    if not build or dune is None:
        if exe.is_file():
            return exe  # older than its sources, but nothing can rebuild it
        raise VerifyUnavailable(
            f"{exe} is not built and dune is not on PATH; install it with "
            "`apt-get install -y ocaml-nox ocaml-dune libyojson-ocaml-dev` "
            f"or set {ENV_VAR}"
        )
    proc = subprocess.run(
        [dune, "build", "--root", str(project), "./bin/main.exe"],
        cwd=project,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0 or not exe.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        raise VerifyUnavailable(
            f"`dune build --root {project}` failed (exit {proc.returncode}):\n{tail}"
        )
    return exe


# ---------------------------------------------------------------------------
# Running the CLI


def _json_array(values: Any) -> list[float | None]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"inputs must be 1-D, got shape {arr.shape}")
    return jsonable(arr)


def run_reference(
    requests: Sequence[Mapping[str, Any]], *, cli: Path | None = None, timeout: float = 600.0
) -> list[dict[str, np.ndarray]]:
    """Evaluate indicator requests with the OCaml CLI (one process for all).

    Parameters
    ----------
    requests : sequence of dict
        Each ``{"indicator": NAME, "params": {...}, "inputs": {COLUMN: array}}``
        with 1-D array-likes of equal length as inputs (NaN is sent as null).
    cli : pathlib.Path, optional
        The executable; default :func:`find_cli`.
    timeout : float, default 600
        Seconds before the process is killed.

    Returns
    -------
    list of dict of str to numpy.ndarray
        One dict per request, output name -> float64 array of the input
        length, NaN during warm-up.

    Raises
    ------
    VerifyUnavailable
        The CLI cannot be found or built.
    VerifyError
        The CLI rejected a request (the messages are collected), crashed, or
        answered with something that is not the expected JSON.
    """
    exe = cli if cli is not None else find_cli()
    payload = [
        {
            "indicator": r["indicator"],
            "params": dict(r.get("params", {})),
            "inputs": {k: _json_array(v) for k, v in r.get("inputs", {}).items()},
        }
        for r in requests
    ]
    try:
        proc = subprocess.run(
            [str(exe)],
            input=json.dumps(payload, allow_nan=False).encode(),
            capture_output=True,
            timeout=timeout,
        )
    except OSError as exc:
        raise VerifyUnavailable(f"cannot run {exe}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise VerifyError(f"{exe} timed out after {timeout} s") from exc
    try:
        answer = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise VerifyError(
            f"{exe} exited {proc.returncode} without a JSON answer; stderr: "
            f"{proc.stderr.decode(errors='replace').strip()[-2000:]}"
        ) from None
    if isinstance(answer, dict) and "error" in answer:
        raise VerifyError(f"OCaml CLI: {answer['error']}")
    if not isinstance(answer, list) or len(answer) != len(payload):
        raise VerifyError(f"{exe} returned {type(answer).__name__}, expected a list of {len(payload)}")
    errors = [
        f"request {i} ({payload[i]['indicator']}): {r['error']}"
        for i, r in enumerate(answer)
        if isinstance(r, dict) and "error" in r
    ]
    if errors or proc.returncode != 0:
        raise VerifyError("OCaml CLI rejected requests: " + "; ".join(errors or [f"exit {proc.returncode}"]))
    return [
        {name: np.array(values, dtype=np.float64) for name, values in r["outputs"].items()}
        for r in answer
    ]


# ---------------------------------------------------------------------------
# Comparing


@dataclass(frozen=True)
class Comparison:
    """Result of comparing one indicator output of two implementations.

    Attributes
    ----------
    spec : str
        Canonical indicator spec, e.g. ``"macd:12,26,9"``.
    output : str
        Output name, e.g. ``"signal"``.
    max_abs_diff : float
        Largest ``|ours - reference|`` over the positions where both are
        defined (0.0 when there are none; ``inf`` when the lengths differ).
    max_rel_diff : float
        Largest ``|a - b| / max(|a|, |b|, 1e-300)`` over the same positions
        (both zero counts as 0).
    warmup_matches : bool
        NaN (warm-up) positions coincide exactly, and the lengths agree.
    n_compared : int
        Number of positions where both values are defined.
    """

    spec: str
    output: str
    max_abs_diff: float
    max_rel_diff: float
    warmup_matches: bool
    n_compared: int

    def ok(self, tolerance: float = 1e-9) -> bool:
        """True when warm-ups match and ``max_rel_diff <= tolerance``."""
        return self.warmup_matches and self.max_rel_diff <= tolerance


def diff_arrays(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float, bool, int]:
    """Compare two indicator outputs.

    Parameters
    ----------
    ours, reference : numpy.ndarray
        1-D float arrays; NaN marks warm-up.

    Returns
    -------
    tuple
        ``(max_abs_diff, max_rel_diff, warmup_matches, n_compared)`` as in
        :class:`Comparison`.

    Notes
    -----
    The relative difference divides by max(|a|, |b|, 1e-3 * max |reference|):
    at a value of (nearly) zero, e.g. %K at the window's low or MACD at a
    crossing, a relative error is undefined (two correct implementations
    leave different 1e-15 residues), so values below 1/1000 of the series'
    magnitude are measured against that floor instead.
    """
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf, math.inf, False, 0
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    both = ~nan_a & ~nan_b
    n = int(both.sum())
    if n == 0:
        return 0.0, 0.0, bool(np.array_equal(nan_a, nan_b)), 0
    x, y = a[both], b[both]
    with np.errstate(invalid="ignore", over="ignore"):
        abs_diff = np.abs(x - y)
        abs_diff = np.where(x == y, 0.0, abs_diff)  # equal infinities
        abs_diff = np.where(np.isnan(abs_diff), np.inf, abs_diff)
        finite_y = np.abs(y[np.isfinite(y)])
        floor = 1e-3 * float(finite_y.max()) if finite_y.size else 0.0
        scale = np.maximum(np.maximum(np.abs(x), np.abs(y)), max(floor, 1e-300))
        rel = np.where(abs_diff == 0.0, 0.0, abs_diff / scale)
    return float(abs_diff.max()), float(rel.max()), bool(np.array_equal(nan_a, nan_b)), n


def _columns(data: Any) -> dict[str, np.ndarray]:
    if isinstance(data, (str, os.PathLike)):
        data = _load_bars(Path(data))
    cols: dict[str, np.ndarray] = {}
    for name in ("high", "low", "close", "volume"):
        value = data.get(name) if isinstance(data, Mapping) else getattr(data, name, None)
        if value is None:
            continue
        arr = np.ascontiguousarray(value, dtype=np.float64)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
        cols[name] = arr
    if "close" not in cols:
        raise ValueError("data has no 'close' column")
    lengths = {len(v) for v in cols.values()}
    if len(lengths) != 1:
        raise ValueError(f"data columns differ in length: { {k: len(v) for k, v in cols.items()} }")
    return cols


def _load_bars(path: Path) -> Any:
    from tradesim.data import load_bars

    return load_bars(path)


def _default_impl() -> Any:
    return registry


def _call(impl: Any, spec: IndicatorSpec, cols: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    fn: Callable[..., Any] = getattr(impl, spec.name)
    result = fn(*(cols[c] for c in spec.inputs), *(v for _, v in spec.params))
    values = (result,) if len(spec.outputs) == 1 else tuple(result)
    if len(values) != len(spec.outputs):
        raise VerifyError(f"{spec}: expected {len(spec.outputs)} outputs, got {len(values)}")
    return {name: np.asarray(v, dtype=np.float64) for name, v in zip(spec.outputs, values)}


def compare(
    data: Any,
    indicators: Iterable[str | IndicatorSpec] | None = None,
    *,
    impl: Any = None,
    cli: Path | None = None,
) -> list[Comparison]:
    """Compare tradesim's indicators with the OCaml reference on some bars.

    Parameters
    ----------
    data : Bars, mapping, str or os.PathLike
        Bars with 1-D float64 ``high``, ``low``, ``close``, ``volume``
        (attributes, as on :class:`tradesim.data.Bars`, or mapping keys) of
        equal length; a path is loaded with :func:`tradesim.data.load_bars`.
        Only ``close`` is needed for close-only indicators.
    indicators : iterable of str or IndicatorSpec, optional
        Specs such as ``"rsi:14"``; default :data:`DEFAULT_SPECS` (all eight).
    impl : module or object, optional
        Provides the batch functions (``sma(close, period)``, ...,
        ``vwap(high, low, close, volume, period)``); default
        :mod:`tradesim.indicators`.
    cli : pathlib.Path, optional
        OCaml CLI executable; default :func:`find_cli`.

    Returns
    -------
    list of Comparison
        One per indicator output, in spec order then output order.

    Raises
    ------
    ValueError
        A bad spec, or data without the needed columns.
    VerifyUnavailable
        The OCaml CLI cannot be found or built.
    VerifyError
        The OCaml CLI rejected a request.
    ImportError
        ``impl`` is not given and :mod:`tradesim.indicators` is not importable.
    """
    specs = [parse_spec(s) for s in (DEFAULT_SPECS if indicators is None else indicators)]
    cols = _columns(data)
    for spec in specs:
        missing = [c for c in spec.inputs if c not in cols]
        if missing:
            raise ValueError(f"{spec} needs columns {', '.join(missing)}")
    impl = _default_impl() if impl is None else impl
    exe = cli if cli is not None else find_cli()
    reference = run_reference([spec.request(cols) for spec in specs], cli=exe)
    results: list[Comparison] = []
    for spec, ref in zip(specs, reference):
        ours = _call(impl, spec, cols)
        for name in spec.outputs:
            if name not in ref:
                raise VerifyError(f"OCaml CLI gave no output {name!r} for {spec}")
            results.append(Comparison(str(spec), name, *diff_arrays(ours[name], ref[name])))
    return results


# ---------------------------------------------------------------------------
# CLI command


@click.command("verify")
@click.option(
    "--data",
    "data_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Bars file: Binance kline CSV (.csv/.csv.gz) or timestamp,open,high,low,close,volume CSV.",
)
@click.option("--symbol", default=None, help="Instead of --data: this symbol's bars from the catalog.")
@click.option("--interval", default=None, help="With --symbol: bar interval (default 1m).")
@click.option("--from", "start", default=None, help="With --symbol: first open time (ISO date/time UTC or ms).")
@click.option("--to", "end", default=None, help="With --symbol: stop before this open time.")
@click.option("--catalog", "catalog_dir", default=None, type=click.Path(file_okay=False),
              help="With --symbol: catalog folder (default $TRADESIM_CATALOG or ~/.local/share/tradesim).")
@click.option(
    "--indicator",
    "specs",
    multiple=True,
    metavar="SPEC",
    help="Indicator spec such as rsi:14, macd:12,26,9 (repeatable; default: all eight).",
)
@click.option(
    "--tolerance",
    type=float,
    default=1e-9,
    show_default=True,
    help="Maximum relative difference allowed after warm-up.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def verify(data_path: Path | None, symbol: str | None, interval: str | None, start: str | None, end: str | None,
           catalog_dir: str | None, specs: tuple[str, ...], tolerance: float, as_json: bool) -> None:
    """Cross-check the Cython indicators against the OCaml reference.

    Exit status 0 when every output agrees within the tolerance with identical
    warm-up, 1 otherwise (or when the OCaml CLI is unavailable), 2 on usage
    errors.
    """
    try:
        parsed = [parse_spec(s) for s in (specs or DEFAULT_SPECS)]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--indicator'") from None
    if not (tolerance >= 0 and math.isfinite(tolerance)):
        raise click.BadParameter("must be a finite number >= 0", param_hint="'--tolerance'")
    from tradesim.catalog.commands import bars_option_values

    source = bars_option_values([data_path] if data_path else [], [symbol] if symbol else [], interval,
                                start, end, catalog_dir)[0]
    try:
        bars = _load_bars(source) if isinstance(source, Path) else source
    except Exception as exc:  # noqa: BLE001 - report any loader failure cleanly
        raise click.ClickException(f"cannot load {data_path}: {exc}") from exc
    label = data_path.name if data_path else f"{bars.symbol} {interval or '1m'} (catalog)"
    try:
        results = compare(bars, parsed)
    except VerifyUnavailable as exc:
        raise click.ClickException(f"OCaml reference indicators unavailable: {exc}") from exc
    except (VerifyError, ValueError, ImportError) as exc:
        raise click.ClickException(str(exc)) from exc

    all_ok = all(r.ok(tolerance) for r in results)
    if as_json:
        rows = []
        for r in results:
            row = asdict(r)
            row["max_abs_diff"] = finite_or_none(r.max_abs_diff)
            row["max_rel_diff"] = finite_or_none(r.max_rel_diff)
            row["ok"] = r.ok(tolerance)
            rows.append(row)
        click.echo(
            json.dumps(
                {"data": str(data_path) if data_path else bars.source, "tolerance": tolerance, "ok": all_ok,
                 "results": rows},
                indent=2,
            )
        )
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"OCaml reference vs tradesim — {label}")
        table.add_column("indicator", no_wrap=True)
        table.add_column("output", no_wrap=True)
        table.add_column("max abs diff", justify="right")
        table.add_column("max rel diff", justify="right")
        table.add_column("warm-up match", justify="center")
        table.add_column("status", justify="center", no_wrap=True)
        for r in results:
            good = r.ok(tolerance)
            table.add_row(
                r.spec,
                r.output,
                f"{r.max_abs_diff:.3g}",
                f"{r.max_rel_diff:.3g}",
                "yes" if r.warmup_matches else "[red]NO[/red]",
                "[green]OK[/green]" if good else "[red]FAIL[/red]",
            )
        console = Console()
        console.print(table)
        console.print(
            f"tolerance {tolerance:g} (relative): "
            + ("[green]all OK[/green]" if all_ok else "[red]FAIL[/red]")
        )
    if not all_ok:
        click.get_current_context().exit(1)
