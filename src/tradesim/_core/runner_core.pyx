"""`RunnerCore`: the per-bar step every mode shares (backtest, simulated, live).

One closed bar: push it into the window -> update the indicator bank -> fill a
market order waiting for this bar's open -> update the state machine (marks,
stop-loss / take-profit exits, analysis timeout) -> call the strategy's
dispatcher for the current state -> record equity.

Everything common happens here in C. Rare events (a fill, an automatic exit,
a strategy decision, an error) are handed to the Python `handler`
(`tradesim.runner.SymbolRunner`), which owns execution and bookkeeping. A
backtest calls `run` over arrays; a live runner calls `process` per bar: the
same `step` either way.
"""

from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.math cimport NAN

import numpy as np

from tradesim._core.bank cimport IndicatorBank
from tradesim._core.lua_direct cimport LuaDirect
from tradesim._core.market_data cimport MarketData
from tradesim._core.state_machine cimport StateMachine, UPDATE_NONE
from tradesim._core.window cimport MarketDataWindow

# Result of `step`.
cdef enum:
    STEP_OK = 0
    STEP_STOPPED = 1


cdef inline void _put(tuple args, Py_ssize_t i, object item):
    # PyTuple_SET_ITEM steals a reference; Cython owns `item`, so add one.
    Py_INCREF(item)
    PyTuple_SET_ITEM(args, i, item)


class RunnerStopped(Exception):
    """Raised by a handler to stop the runner (e.g. too many consecutive errors)."""


cdef class RunnerCore:
    """Per-bar driver of one (symbol, strategy) pair.

    Parameters
    ----------
    window : MarketDataWindow
    bank : IndicatorBank
    machine : StateMachine
    dispatch : callable
        The strategy's raw dispatcher ``f(state, ts, o, h, l, c, v, bid, ask, *values)``.
        A `LuaDirect` is called from C, without building an argument tuple.
    handler : object
        Has ``fill_pending(ts, open)``, ``on_update(code, ts, close)``,
        ``on_result(result, ts, close)`` and ``on_error(exc, ts)``.

    Attributes
    ----------
    cash : float
        Cash in quote currency (kept by the handler; read here for equity).
    quantity : float
        Signed position in base units (> 0 long, < 0 short).
    pending : bool
        A market order waits for the next bar's open.
    deciding : bool
        Call the strategy (False while paused: indicators stay warm).
    errors_in_row : int
        Consecutive failed strategy calls (reset by a successful call).
    bars : int
        Bars processed.
    """

    cdef public MarketDataWindow window
    cdef public IndicatorBank bank
    cdef public StateMachine machine
    cdef object _dispatch
    cdef LuaDirect _direct          # _dispatch when it is a LuaDirect, else None
    cdef LuaDirect _locked          # the LuaDirect whose lock `run` holds, else None
    cdef public object handler
    cdef public double cash
    cdef public double quantity
    cdef public bint pending
    cdef public bint deciding
    cdef public long long errors_in_row
    cdef public long long bars
    cdef public long long decisions

    def __init__(self, MarketDataWindow window not None, IndicatorBank bank not None,
                 StateMachine machine not None, dispatch, handler, double cash=0.0):
        self.window = window
        self.bank = bank
        self.machine = machine
        self.dispatch = dispatch
        self.handler = handler
        self.cash = cash
        self.quantity = 0.0
        self.pending = False
        self.deciding = True
        self.errors_in_row = 0
        self.bars = 0
        self.decisions = 0

    @property
    def dispatch(self):
        """The strategy's raw dispatcher (assignable, e.g. after a reload)."""
        return self._dispatch

    @dispatch.setter
    def dispatch(self, dispatch):
        self._dispatch = dispatch
        self._direct = dispatch if isinstance(dispatch, LuaDirect) else None

    cdef tuple _args(self, long long ts, double o, double h, double l, double c,
                     double v, double bid, double ask):
        # The dispatcher's arguments built directly: numbers only, no dicts.
        cdef int n = self.bank.n_values, i
        cdef tuple args = PyTuple_New(9 + n)
        _put(args, 0, self.machine.state_c)
        _put(args, 1, ts)
        _put(args, 2, o)
        _put(args, 3, h)
        _put(args, 4, l)
        _put(args, 5, c)
        _put(args, 6, v)
        _put(args, 7, bid)
        _put(args, 8, ask)
        for i in range(n):
            _put(args, 9 + i, self.bank.values[i])
        return args

    cdef int step(self, long long ts, double o, double h, double l, double c,
                  double v, double bid, double ask) except -1:
        cdef int code
        cdef long long errors
        self.window.push_fast(ts, o, h, l, c, v, bid, ask)
        self.bank.push_bar(o, h, l, c, v)
        self.bars += 1
        try:
            if self.pending:
                self.handler.fill_pending(ts, o)
            code = self.machine.update_fast(ts, o, h, l, c)
            if code != UPDATE_NONE:
                self.handler.on_update(code, ts, c)
            if self.deciding and not self.pending:
                try:
                    if self._direct is not None:
                        result = self._direct.call_bar(self.machine.state_c, ts, o, h, l, c, v,
                                                       bid, ask, self.bank.values, self.bank.n_values,
                                                       self._direct is self._locked)
                    else:
                        result = self._dispatch(*self._args(ts, o, h, l, c, v, bid, ask))
                except Exception as exc:
                    self.handler.on_error(exc, ts)
                else:
                    # The call counts as successful only if its result was valid too: an
                    # invalid action table is recorded by the handler as an error, and
                    # must extend the streak rather than restart it at 1.
                    errors = self.errors_in_row
                    if result is not None:
                        self.decisions += 1
                        self.handler.on_result(result, ts, c)
                    if self.errors_in_row == errors:
                        self.errors_in_row = 0
        except RunnerStopped:
            return STEP_STOPPED
        return STEP_OK

    @property
    def equity(self):
        """Cash plus the position marked at the newest close (quote currency)."""
        if not len(self.window):
            return self.cash
        return self.cash + self.quantity * self.window.col[3][self.window.head]

    def process(self, MarketData bar not None):
        """Run one closed bar through the step; returns False once the runner stopped itself."""
        return self.step(bar.timestamp, bar.open, bar.high, bar.low, bar.close, bar.volume,
                         bar.bid, bar.ask) == STEP_OK

    def process_values(self, long long ts, double o, double h, double l, double c, double v,
                       double bid=NAN, double ask=NAN):
        """`process` for a bar given as numbers (trusted: validate before)."""
        return self.step(ts, o, h, l, c, v, bid, ask) == STEP_OK

    def run(self, const long long[::1] ts, const double[::1] o, const double[::1] h,
            const double[::1] l, const double[::1] c, const double[::1] v,
            const double[::1] bid, const double[::1] ask,
            double[::1] equity_out, unsigned char[::1] in_position_out,
            Py_ssize_t start=0, Py_ssize_t stop=-1):
        """Process bars ``start .. stop-1`` of validated columns (a backtest).

        Writes equity (quote currency, marked at each close) and whether a
        position was held at the close into the output arrays at the same
        indices. Returns the index after the last bar processed (less than
        `stop` if the runner stopped itself).
        """
        cdef Py_ssize_t i
        cdef LuaDirect held = self._direct
        if stop < 0:
            stop = ts.shape[0]
        # Lua's lock once for the batch, not per bar (reentrant: the handler's own Lua
        # calls still work; a dispatcher swapped mid-batch locks per call).
        if held is not None:
            held.lock()
            self._locked = held
        try:
            for i in range(start, stop):
                if self.step(ts[i], o[i], h[i], l[i], c[i], v[i], bid[i], ask[i]) != STEP_OK:
                    equity_out[i] = self.cash + self.quantity * c[i]
                    in_position_out[i] = self.quantity != 0.0
                    return i + 1
                equity_out[i] = self.cash + self.quantity * c[i]
                in_position_out[i] = self.quantity != 0.0
            return stop
        finally:
            if held is not None:
                self._locked = None
                held.unlock()
