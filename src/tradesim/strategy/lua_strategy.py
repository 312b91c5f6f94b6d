"""`LuaStrategy`: one strategy script in its own sandbox, with the seed API.

A script defines three functions, called by the runner according to the
state machine's state::

    function detect_opportunity(market_data, context, indicators)  -- IDLE: nil or a table
    function filter_commitment(market_data, context, indicators)   -- ANALYZING: nil or an action
    function manage_position(market_data, context, indicators)     -- IN_POSITION: nil or an action

and optionally a ``params`` table of defaults and a ``name`` string. See
``lua-strategies/README.md`` for the complete API.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tradesim._core.state_machine import Side
from tradesim.strategy.decision import ActionRequest, Decision, SyncCode, decode, lua_codes
from tradesim.strategy.errors import StrategyError, StrategyLoadError
from tradesim.strategy.sandbox import LuaSandbox

__all__ = ["ActionRequest", "Decision", "LuaStrategy", "ENTRY_POINTS"]

ENTRY_POINTS = ("detect_opportunity", "filter_commitment", "manage_position")

# Indicator kinds a script can ask for -> registry spec name or window statistic.
_WINDOW_STATS = {"high", "low", "range", "avg_volume"}


@dataclass
class _Binding:
    window: Any
    bank: Any


def _api_source() -> str:
    return resources.files("tradesim.strategy").joinpath("api.lua").read_text(encoding="utf-8")


class LuaStrategy:
    """A Lua strategy script, loaded into its own sandbox.

    Parameters
    ----------
    path : str or Path
        The script (UTF-8 Lua 5.4 source, at most 1 MiB).
    params : dict, optional
        Overrides for the script's ``params`` table, by name. Values must match
        the default's type (int, float, bool, str); strings are converted
        (``{"fast": "5"}`` works, for command lines).
    name : str, optional
        Strategy name; default: the script's ``name`` global, else the file stem.
    max_memory, instruction_budget, cpu_seconds, log_handler
        Sandbox limits per runtime / per call (see `LuaSandbox`).

    Raises
    ------
    StrategyLoadError
        Unreadable file, syntax error, binary chunk, a missing entry point
        (named), or a bad parameter override (named, with the value).
    StrategyError
        The script's top-level code failed (with script and line).

    Notes
    -----
    Params are applied after the script's top-level code ran: read
    ``params.x`` inside the entry points, not into top-level locals.
    """

    def __init__(self, path: str | Path, params: dict[str, Any] | None = None, *,
                 name: str | None = None, max_memory: int = 16 << 20,
                 instruction_budget: int = 5_000_000, cpu_seconds: float = 0.05,
                 log_handler: Callable[[str, str], Any] | None = None) -> None:
        self.path = Path(path)
        self._limits = dict(max_memory=max_memory, instruction_budget=instruction_budget,
                            cpu_seconds=cpu_seconds, log_handler=log_handler)
        self._overrides = dict(params or {})
        self._explicit_name = name
        self._binding: _Binding | None = None
        self._position: tuple | None = None
        self._symbol: str | None = None
        self._install(self._build())

    # -- loading ---------------------------------------------------------------

    def _read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except OSError as exc:
            # the full path: a relative one in runners.toml resolves against the TOML's folder
            raise StrategyLoadError(f"cannot read strategy {self.path.resolve()}: {exc.strerror or exc}",
                                    script=self.path.name) from None

    def _build(self) -> dict[str, Any]:
        """Load the script into a fresh sandbox; nothing in `self` changes."""
        source = self._read()
        sandbox = LuaSandbox(self._explicit_name or self.path.stem, **self._limits)
        sandbox.load(source, self.path.name, required=ENTRY_POINTS)
        api = sandbox.eval_host(_api_source(), self._register_indicator,
                                sandbox.table_from(lua_codes()), name="strategy-api")
        fns = {key: api[key] for key in ("on_bar", "set_position", "clear_context", "sync", "set_context",
                                          "context_snapshot", "context_table", "params_snapshot", "set_param",
                                          "strategy_name", "resolve", "set_symbol")}
        # Every host entry point runs under the sandbox guard (fresh budget per call).
        built = {"sandbox": sandbox, **{k: sandbox.guard(v, k) for k, v in fns.items()}}
        defaults = self._pairs(built["params_snapshot"]())
        effective = dict(defaults)
        for key, raw in self._overrides.items():
            effective[key] = _coerce_param(self.path.name, key, raw, defaults)
        for key, value in effective.items():
            if key in self._overrides:
                built["set_param"](key, value)
        built["defaults"] = defaults
        built["params"] = effective
        built["source"] = source.decode("utf-8", errors="replace")
        built["name"] = self._explicit_name or built["strategy_name"]() or self.path.stem
        if self._symbol:
            built["set_symbol"](self._symbol)
        return built

    def _install(self, built: dict[str, Any]) -> None:
        self._sandbox: LuaSandbox = built["sandbox"]
        self._fns = built
        #: the script's text as loaded (a reload replaces it): what a recorded session keeps
        self.source: str = built["source"]
        self._script_name = self.path.name      # named by decode's errors: not looked up per decision
        # The raw guarded dispatcher, for the runner's hot path (called from C
        # when the sandbox allows it): pass what it raises to `translate_error`
        # before calling it again.
        raw = built["on_bar"].lua
        self.dispatch = self._sandbox.direct(raw) or raw
        # The runner's fills mirror the position into Lua from C through this (None: use `sync`).
        self.position_sync = self._sandbox.direct(built["sync"].lua)
        # A recorded run snapshots the context at every opportunity: its table is read in C.
        self._context_direct = self._sandbox.direct(built["context_table"].lua)
        self.name: str = built["name"]
        self.default_params: dict[str, Any] = built["defaults"]
        self.params: dict[str, Any] = built["params"]
        # Loading leaves about a third of the runtime's memory as garbage (compiler
        # temporaries); collect it now rather than carry it in every runner.
        self._sandbox.collect_garbage()

    @staticmethod
    def _pairs(flat: Any) -> dict[str, Any]:
        if flat is None:
            return {}
        if not isinstance(flat, tuple):
            flat = (flat,)
        # sorted: a Lua table's order changes from one process to the next (a session log must not)
        return dict(sorted(zip(flat[::2], flat[1::2])))   # (key, value) pairs; a lone last item dropped

    def reload(self) -> None:
        """Re-read the script (hot reload), keeping context, position and indicators.

        Raises
        ------
        StrategyLoadError, StrategyError
            The new version failed to load; the old version keeps running.
        """
        built = self._build()
        context = self.context()
        old = self._sandbox
        self._install(built)
        for key, value in context.items():
            self._fns["set_context"](key, value)
        if self._position is not None:
            self._fns["set_position"](*self._position)
        old.close()

    def close(self) -> None:
        """Release the Lua runtime."""
        self._sandbox.close()

    # -- binding to a runner -----------------------------------------------------

    def bind(self, window: Any, bank: Any) -> None:
        """Attach the runner's `MarketDataWindow` and `IndicatorBank`.

        Indicators the script asks for are created in `bank` on first use and
        warmed from `window`'s bars.
        """
        self._binding = _Binding(window, bank)

    def set_symbol(self, symbol: str) -> None:
        """The instrument the script trades (``market_data.symbol``)."""
        self._symbol = symbol
        self._fns["set_symbol"](symbol)

    def _register_indicator(self, kind: Any, a: Any = None, b: Any = None, c: Any = None) -> tuple:
        # Called from Lua (inside the guarded call) the first time a script asks
        # for an indicator. Errors go back as (nil, message) so Lua raises them
        # at the script's line.
        from tradesim import indicators as registry
        from tradesim._core import AverageVolume, Highest, Lowest, PriceRange

        if self._binding is None:
            return None, "indicators are not available: the strategy is not bound to a runner"
        kind = str(kind)
        args = [x for x in (a, b, c) if x is not None]
        if not args:
            return None, f"{kind}: a period is required, e.g. indicators.{kind}(14)"
        for x in args:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                return None, f"{kind}: parameters must be numbers, got {x!r}"
        spec = f"{kind}:{','.join(format(x, 'g') for x in args)}"
        key = spec
        try:
            if kind in _WINDOW_STATS:
                period = int(args[0])
                if period != args[0] or period < 1:
                    raise ValueError(f"{kind}: period = {args[0]!r} must be an integer >= 1")
                cls = {"high": Highest, "low": Lowest, "range": PriceRange,
                       "avg_volume": AverageVolume}[kind]
                indicator = cls(period)
            else:
                info, params = registry.parse_spec(spec)
                key = registry.spec_name(info, params)
                indicator = info.cls(*params)
        except (KeyError, ValueError) as exc:
            return None, str(exc).strip('"')
        bank = self._binding.bank
        first = bank.add(key, indicator, self._binding.window)
        n = indicator.n_outputs
        return (first + 1, n, *(bank.value(first + i) for i in range(n)))

    # -- per bar -----------------------------------------------------------------

    def on_bar(self, state: int, timestamp: int, open: float, high: float, low: float,
               close: float, volume: float, bid: float = math.nan, ask: float = math.nan,
               values: tuple = ()) -> Decision | None:
        """Run the entry point for `state` on one closed bar and return its decision.

        `values` are the bound bank's output slots in order (the runner passes
        ``bank.values_view()``). Returns None when the strategy did nothing.

        Raises
        ------
        StrategyError
            A Lua error (with script, function and line), a timeout or memory
            error, or an invalid action table (naming the field and value).
        """
        try:
            result = self.dispatch(state, timestamp, open, high, low, close, volume, bid, ask, *values)
        except Exception as exc:
            raise self._sandbox.translate_error(exc) from None
        return None if result is None else self.decode(result)

    def translate_error(self, exc: BaseException) -> StrategyError:
        """Map an exception raised by `dispatch` to a `StrategyError` (re-arms the guard)."""
        return self._sandbox.translate_error(exc)

    def decode(self, result: Any) -> Decision:
        """Turn the dispatcher's scalars into a validated `Decision` (`tradesim.strategy.decision.decode`).

        Raises
        ------
        StrategyError
            Naming the script, function, field and value of an invalid action.
        """
        return decode(result, self._script_name)

    # -- state shared with the runner --------------------------------------------

    def set_position(self, side: str | None, quantity: float = 0.0, entry_price: float = 0.0,
                     stop_loss: float = math.nan, take_profit: float = math.nan,
                     entry_time: int = 0) -> None:
        """Tell the script about its position (``indicators.position``); side None = flat."""
        self._position = None if side is None else (side, quantity, entry_price, stop_loss,
                                                     take_profit, entry_time)
        self._fns["set_position"](*(self._position or (None,)))

    def sync(self, code: int, entry_time: int = 0, quantity: float = 0.0, entry_price: float = 0.0,
             stop_loss: float = math.nan, take_profit: float = math.nan) -> None:
        """`set_position` / `clear_context` by number, as the runner's C fills call them.

        `code` `Side.LONG` or `Side.SHORT` (the position's fields follow),
        `SyncCode.SYNC_FLAT`, `SyncCode.SYNC_CLEAR_CONTEXT` (empty the context),
        or `SyncCode.SYNC_ORDER_LONG` / `SYNC_ORDER_SHORT` / `SYNC_NO_ORDER`
        (the working order: placed time, quantity, limit price, stop price,
        expiry time in the five value arguments; NaN = none).
        """
        if code == SyncCode.SYNC_CLEAR_CONTEXT:
            self.clear_context()
        elif code in (SyncCode.SYNC_ORDER_LONG, SyncCode.SYNC_ORDER_SHORT, SyncCode.SYNC_NO_ORDER):
            # the working order (`indicators.order`): placed time, quantity, limit, stop, expiry
            self._fns["sync"](int(code), entry_time, quantity, entry_price, stop_loss, take_profit)
        else:
            self.set_position(None if code == SyncCode.SYNC_FLAT else
                              "long" if code == Side.LONG else "short", quantity,
                              entry_price, stop_loss, take_profit, entry_time)

    def clear_context(self) -> None:
        """Empty the script's context table (the runner does this on exit)."""
        self._fns["clear_context"]()

    def context(self) -> dict[str, Any]:
        """The script's context as a dict of scalars (str keys, sorted; number, str or bool values)."""
        direct = self._context_direct
        if direct is not None:
            try:
                got = direct.scalar_entries()
            except Exception as exc:
                raise self._sandbox.translate_error(exc) from None
            if got is not None:
                return got
        return self._pairs(self._fns["context_snapshot"]())

    def set_context(self, key: str, value: float | int | str | bool) -> None:
        """Set one context value visible to the script."""
        if not isinstance(key, str) or not isinstance(value, (int, float, str, bool)):
            raise TypeError(f"context[{key!r}] must be a str key with an int/float/str/bool value")
        self._fns["set_context"](key, value)

    def memory_used(self) -> int:
        """Bytes held by the Lua runtime."""
        return self._sandbox.memory_used()

    def __repr__(self) -> str:
        return f"<LuaStrategy {self.name!r} from {self.path} params={self.params}>"


def _coerce_param(script: str, key: str, raw: Any, defaults: dict[str, Any]) -> Any:
    if key not in defaults:
        known = ", ".join(sorted(defaults)) or "none"
        raise StrategyLoadError(f"unknown parameter {key!r} (the script's params: {known})",
                                script=script, field=key, value=raw)
    default = defaults[key]
    kind = type(default)
    try:
        if kind is bool:
            if isinstance(raw, str):
                low = raw.strip().lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return low in ("true", "1", "yes")
            if not isinstance(raw, bool):
                raise ValueError
            return raw
        if kind is int:
            value = float(raw) if isinstance(raw, str) else raw
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            value = float(raw) if isinstance(raw, str) else raw
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError
            return float(value)
        if not isinstance(raw, str):
            raise ValueError
        return raw
    except (TypeError, ValueError):
        raise StrategyLoadError(
            f"parameter {key!r} = {raw!r}: expected {kind.__name__} like the default {default!r}",
            script=script, field=key, value=raw) from None
