"""The search space of `tradesim optimize`: parameter specs, constraints and objectives.

A parameter spec is ``name=lo:hi:step`` (inclusive range with a step, integers or decimals)
or ``name=v1,v2,...`` (a list; numbers or text) or ``name=v`` (one value). Constraints and
expression objectives are evaluated with `simpleeval` (arithmetic, comparisons and boolean
operators over the named values; no attribute access, calls or imports), never with ``eval``.
See docs/optimize.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
from simpleeval import EvalWithCompoundTypes, InvalidExpression, SimpleEval

__all__ = ["OptimizeInputError", "ParamSpec", "parse_param_spec", "Constraint", "Objective",
           "OBJECTIVES", "SearchSpace"]


class OptimizeInputError(ValueError):
    """Bad optimisation input (a parameter spec, constraint, objective or option).

    Attributes
    ----------
    field : str
        The option or parameter at fault (``"--param fast"``, ``"--constraint"``, ...).
    """

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


#: Named objectives: a `Metrics` field each (maximised). ``return`` is ``total_return``.
OBJECTIVES = {"sharpe": "sharpe", "sortino": "sortino", "calmar": "calmar", "return": "total_return",
              "profit_factor": "profit_factor"}

#: Most values a list/range parameter may have (a typo such as 1:1e9:1 fails fast).
MAX_VALUES = 100_000


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _scalar(text: str) -> Any:
    number = _number(text)
    if number is not None:
        return number
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    return text


@dataclass(frozen=True)
class ParamSpec:
    """One parameter's candidate values.

    Attributes
    ----------
    name : str
        Strategy parameter name (declared in the script's ``params`` table).
    values : tuple
        Candidates in order (ints, floats, bools or text).
    kind : str
        ``"range"`` (lo:hi:step), ``"list"`` or ``"fixed"`` (one value).
    low, high, step : number or None
        The range's bounds and step (``kind == "range"``).
    """

    name: str
    values: tuple
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None

    @property
    def is_int(self) -> bool:
        return all(isinstance(v, int) and not isinstance(v, bool) for v in self.values)


def _range_values(name: str, text: str) -> ParamSpec:
    parts = [p.strip() for p in text.split(":")]
    if len(parts) not in (2, 3) or not all(parts):
        raise OptimizeInputError(f"--param {name}={text}: a range is lo:hi[:step], e.g. {name}=5:40:5",
                                 f"--param {name}")
    try:
        lo, hi = Decimal(parts[0]), Decimal(parts[1])
        step = Decimal(parts[2]) if len(parts) == 3 else Decimal(1)
    except InvalidOperation:
        raise OptimizeInputError(f"--param {name}={text}: range bounds and step must be numbers",
                                 f"--param {name}") from None
    if not (lo.is_finite() and hi.is_finite() and step.is_finite()):
        raise OptimizeInputError(f"--param {name}={text}: range bounds and step must be finite", f"--param {name}")
    if step <= 0:
        raise OptimizeInputError(f"--param {name}={text}: step must be > 0, got {parts[2]}", f"--param {name}")
    if hi < lo:
        raise OptimizeInputError(f"--param {name}={text}: empty range (high {parts[1]} < low {parts[0]})",
                                 f"--param {name}")
    count = int((hi - lo) // step) + 1
    if count > MAX_VALUES:
        raise OptimizeInputError(f"--param {name}={text}: {count:,} values (at most {MAX_VALUES:,})",
                                 f"--param {name}")
    integer = all("." not in p and "e" not in p.lower() for p in parts)
    # Decimal arithmetic: 0.1:0.3:0.1 gives 0.1, 0.2, 0.3 exactly (floats would drift).
    values = tuple(int(lo + i * step) if integer else float(lo + i * step) for i in range(count))
    conv = int if integer else float
    return ParamSpec(name, values, "range", conv(lo), conv(hi), conv(step))


def parse_param_spec(item: str) -> ParamSpec:
    """Parse one ``--param`` item.

    Parameters
    ----------
    item : str
        ``name=lo:hi[:step]`` (inclusive; ``fast=5:40:5`` is 5, 10, ..., 40),
        ``name=v1,v2,...`` (a list, kept in the order given, duplicates removed) or ``name=v``.

    Returns
    -------
    ParamSpec

    Raises
    ------
    OptimizeInputError
        No ``=``, an empty name or value, a range with high < low, a step <= 0, a
        non-numeric bound, an empty list item, or more than `MAX_VALUES` values.
    """
    name, sep, text = item.partition("=")
    name, text = name.strip(), text.strip()
    if not sep or not name:
        raise OptimizeInputError(f"--param {item!r}: expected name=values (e.g. fast=5:40:5 or slow=20,30,50)",
                                 "--param")
    if not text:
        raise OptimizeInputError(f"--param {name}=: no values given (empty range)", f"--param {name}")
    if ":" in text:
        return _range_values(name, text)
    items = [p.strip() for p in text.split(",")]
    if not all(items):
        raise OptimizeInputError(f"--param {name}={text}: empty item in the list", f"--param {name}")
    values = tuple(dict.fromkeys(_scalar(p) for p in items))
    return ParamSpec(name, values, "list" if len(values) > 1 else "fixed")


class Constraint:
    """A boolean expression over parameter values, e.g. ``"fast < slow"`` or ``"fast * 2 <= slow"``.

    Evaluated by `simpleeval` with only the parameters as names: arithmetic, comparisons,
    ``and``/``or``/``not`` and ``min``/``max``/``abs``; anything else is an error.

    Raises
    ------
    OptimizeInputError
        On construction, when the expression does not parse or names something that is not a
        parameter (``field="--constraint"``).
    """

    _FUNCTIONS = {"min": min, "max": max, "abs": abs}

    def __init__(self, text: str, names: Sequence[str]) -> None:
        self.text = text.strip()
        if not self.text:
            raise OptimizeInputError("--constraint: empty expression", "--constraint")
        self._eval = SimpleEval(functions=dict(self._FUNCTIONS), names={})
        try:
            self._tree = self._eval.parse(self.text)
        except SyntaxError as exc:
            raise OptimizeInputError(f"--constraint {self.text!r}: not an expression ({exc.msg})",
                                     "--constraint") from None
        # Check the names now, on the first combination's values, so a typo fails before any trial.
        self.names = list(names)

    def check_names(self, sample: Mapping[str, Any]) -> None:
        """Evaluate once on `sample` to catch unknown names; raises `OptimizeInputError`."""
        try:
            self(sample)
        except OptimizeInputError:
            raise
        except Exception as exc:  # simpleeval raises its own errors and Python's (TypeError, ...)
            raise OptimizeInputError(f"--constraint {self.text!r}: {exc}", "--constraint") from None

    def __call__(self, params: Mapping[str, Any]) -> bool:
        self._eval.names = dict(params)
        try:
            return bool(self._eval.eval(self.text, previously_parsed=self._tree))
        except InvalidExpression as exc:
            raise OptimizeInputError(f"--constraint {self.text!r}: {exc} (parameters: "
                                     f"{', '.join(self.names)})", "--constraint") from None


class Objective:
    """What the search maximises: a named metric or an expression over `Metrics` fields.

    Parameters
    ----------
    spec : str
        ``sharpe``, ``sortino``, ``calmar``, ``return`` (total return), ``profit_factor``, or an
        expression such as ``"sharpe * (1 + max_drawdown)"`` or ``"-max_drawdown"`` over the
        fields of `tradesim.backtest.metrics.Metrics` (evaluated with `simpleeval`). Always
        maximised: negate an expression to minimise it.

    Raises
    ------
    OptimizeInputError
        An expression that does not parse or names no metric (``field="--objective"``).
    """

    def __init__(self, spec: str, metric_names: Sequence[str]) -> None:
        self.spec = spec.strip()
        if not self.spec:
            raise OptimizeInputError("--objective: empty", "--objective")
        self.metric = OBJECTIVES.get(self.spec)
        self._eval: EvalWithCompoundTypes | None = None
        if self.metric is None:
            if self.spec in metric_names:
                self.metric = self.spec
            else:
                self._eval = EvalWithCompoundTypes(functions={"min": min, "max": max, "abs": abs}, names={})
                try:
                    self._tree = self._eval.parse(self.spec)
                except SyntaxError:
                    raise OptimizeInputError(
                        f"--objective {self.spec!r}: neither one of {', '.join(OBJECTIVES)} nor an expression "
                        f"over the metrics", "--objective") from None
                try:
                    self(dict.fromkeys(metric_names, 1.0))
                except Exception as exc:
                    raise OptimizeInputError(f"--objective {self.spec!r}: {exc}; metrics: "
                                             f"{', '.join(metric_names)}", "--objective") from None

    def __call__(self, metrics: Mapping[str, Any]) -> float:
        """The objective's value for one trial's metrics; NaN when undefined (e.g. a 0/0 ratio)."""
        if self._eval is None:
            value = metrics[str(self.metric)]
        else:
            self._eval.names = dict(metrics)
            try:
                value = self._eval.eval(self.spec, previously_parsed=self._tree)
            except (ZeroDivisionError, OverflowError, ValueError):
                return math.nan
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan


class SearchSpace:
    """Parameter specs plus constraints: enumerates (grid) or samples (random) combinations.

    Parameters
    ----------
    specs : sequence of ParamSpec
        One per parameter, names unique.
    constraints : sequence of str
        Expressions every combination must satisfy.
    declared : mapping of str to value, optional
        The strategy's declared parameters (``params`` table defaults); when given, every
        spec's name must be one of them.

    Raises
    ------
    OptimizeInputError
        No parameter, a name given twice, a name the strategy does not declare, a bad
        constraint, or a constraint set that excludes every grid combination.
    """

    def __init__(self, specs: Sequence[ParamSpec], constraints: Sequence[str] = (),
                 declared: Mapping[str, Any] | None = None) -> None:
        if not specs:
            raise OptimizeInputError("no --param to optimise (e.g. --param fast=5:40:5)", "--param")
        names = [s.name for s in specs]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise OptimizeInputError(f"--param {twice[0]} given more than once", f"--param {twice[0]}")
        if declared is not None:
            unknown = [n for n in names if n not in declared]
            if unknown:
                raise OptimizeInputError(
                    f"--param {unknown[0]}: the strategy declares no parameter {unknown[0]!r}; it declares: "
                    f"{', '.join(sorted(declared)) or '(none)'}", f"--param {unknown[0]}")
        self.specs = list(specs)
        self.names = names
        self.constraints = [Constraint(c, names) for c in constraints]
        first = {s.name: s.values[0] for s in self.specs}
        for c in self.constraints:
            c.check_names(first)
        if self.constraints and self.grid_size <= MAX_VALUES * 10 and next(self.grid(), None) is None:
            raise OptimizeInputError(
                f"the constraint(s) {' and '.join(repr(c.text) for c in self.constraints)} exclude every one "
                f"of the {self.grid_size:,} combinations of {', '.join(self._describe(s) for s in self.specs)}",
                "--constraint")

    @staticmethod
    def _describe(spec: ParamSpec) -> str:
        if spec.kind == "range":
            return f"{spec.name}={spec.low}:{spec.high}:{spec.step}"
        return f"{spec.name}={','.join(map(str, spec.values))}"

    @property
    def grid_size(self) -> int:
        """Number of combinations before constraints."""
        return math.prod(len(s.values) for s in self.specs)

    def allowed(self, params: Mapping[str, Any]) -> bool:
        """Whether `params` satisfies every constraint."""
        return all(c(params) for c in self.constraints)

    def grid(self) -> Iterator[dict[str, Any]]:
        """Every allowed combination, the last parameter varying fastest."""
        for combo in itertools.product(*(s.values for s in self.specs)):
            params = dict(zip(self.names, combo))
            if self.allowed(params):
                yield params

    def sample(self, n: int, seed: int) -> list[dict[str, Any]]:
        """Up to `n` distinct allowed combinations drawn uniformly at random (numpy PCG64, `seed`).

        When the grid has at most ``4 * n`` combinations, the allowed ones are enumerated and
        `n` of them drawn without replacement (all of them if fewer); otherwise combinations
        are drawn per parameter and rejected if disallowed or already drawn.
        """
        rng = np.random.default_rng(seed)
        if self.grid_size <= 4 * n:
            every = list(self.grid())
            if len(every) <= n:
                return every
            return [every[i] for i in sorted(rng.choice(len(every), size=n, replace=False))]
        out: list[dict[str, Any]] = []
        seen: set[tuple] = set()
        attempts = 0
        while len(out) < n and attempts < 100 * n:
            attempts += 1
            combo = tuple(s.values[int(rng.integers(len(s.values)))] for s in self.specs)
            params = dict(zip(self.names, combo))
            if combo in seen or not self.allowed(params):
                continue
            seen.add(combo)
            out.append(params)
        return out
