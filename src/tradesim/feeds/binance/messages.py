"""Strict parsing of Binance spot WebSocket market-data messages (combined streams).

Only closed klines (``"x": true``) become bars. Numbers arrive as decimal
strings and are accepted only in Binance's plain form (digits with an optional
fraction): ``"NaN"``, ``"inf"``, ``"1e999"``, ``"1_000"`` or ``" 12 "`` are
rejected, as are the JSON literals NaN/Infinity (docs/hostile-inputs.md, M1),
prices <= 0 and negative volume (M2), and inconsistent klines: OHLCV breaking
the bar rule of `tradesim._core.market_data` (high < low, open/close outside
[low, high]), close time != open time + interval - 1, or an interval that
differs from the stream name's (M3). A rejected message raises
`FrameError` naming the field and value; the caller counts it and keeps the
stream up.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import orjson

from tradesim._core.market_data import bar_problem
from tradesim.feeds.binance.kline_fast import kline_or_none, rest_klines_into
from tradesim.timeframes import BINANCE_INTERVAL_MS

__all__ = [
    "INTERVAL_MS",
    "MAX_FRAME_BYTES",
    "SNIPPET",
    "BookTicker",
    "FrameError",
    "Kline",
    "Trade",
    "decode",
    "message_kind",
    "parse_book_ticker",
    "parse_kline",
    "parse_rest_kline",
    "parse_rest_klines",
    "parse_trade",
]

#: Binance kline intervals in ms ("1M", a calendar month, is None: checked by open/close times).
INTERVAL_MS = BINANCE_INTERVAL_MS

MAX_FRAME_BYTES = 1 << 20
#: Longest excerpt of a message or error quoted in logs and status events (characters).
SNIPPET = 200


class FrameError(ValueError):
    """A message was rejected. `field` and `value` say what was wrong."""

    def __init__(self, message: str, field: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class Kline(NamedTuple):
    """One kline update: times in ms since epoch UTC, prices quote currency, volume base units."""

    symbol: str
    interval: str
    open_time: int
    close_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    closed: bool


class BookTicker(NamedTuple):
    """Best bid/ask: prices in quote currency, quantities in base units; `update_id` is Binance's ``u``."""

    symbol: str
    update_id: int
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float


class Trade(NamedTuple):
    """One trade: `time` in ms since epoch UTC (trade time ``T``), price quote currency, qty base units."""

    symbol: str
    trade_id: int
    time: int
    price: float
    qty: float


def decode(frame: str | bytes) -> dict:
    """Decode one text frame into a JSON object (RFC 8259 strict; <= 1 MiB).

    Raises
    ------
    FrameError
        Binary-looking, empty, oversized or malformed JSON, or not an object.
    """
    if not frame:
        raise FrameError("empty frame", "frame", frame)
    if len(frame) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(frame)} bytes exceeds {MAX_FRAME_BYTES}", "frame", len(frame))
    try:
        msg = orjson.loads(frame)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"malformed JSON: {exc}", "frame", frame[:80]) from None
    if not isinstance(msg, dict):
        raise FrameError(f"expected a JSON object, got {type(msg).__name__}", "frame", msg)
    return msg


def _decimal(obj: dict, key: str, name: str, positive: bool) -> float:
    text = obj.get(key)
    # Plain decimals only: ASCII digits with at most one '.', <= 41 characters
    # (str methods run in C; a regex here cost a third of the frame budget).
    digits = text.replace(".", "", 1) if type(text) is str else ""
    if not (digits.isascii() and digits.isdigit() and len(text) <= 41):
        raise FrameError(f"{name} = {text!r}: not a plain decimal string", name, text)
    value = float(text)  # finite: at most 41 plain digits
    if positive and value <= 0:
        raise FrameError(f"{name} = {text!r}: must be {'> 0' if positive else '>= 0'}", name, text)
    return value


def _int(obj: dict, key: str, name: str) -> int:
    value = obj.get(key)
    if type(value) is not int or value < 0:
        raise FrameError(f"{name} = {value!r}: expected a non-negative integer", name, value)
    return value


def parse_kline(data: dict, stream_interval: str | None = None) -> Kline:
    """Validate a kline event payload (the ``data`` of a combined message).

    Valid klines take a C path (`tradesim.feeds.binance.kline_fast`, same rules); any
    other goes through `_checked_kline`, which says what is wrong.

    Raises
    ------
    FrameError
        Any rule of the module docstring broken; names the field and value.
    """
    k = kline_or_none(data, stream_interval, INTERVAL_MS, Kline)
    if k is not None:
        return k
    return _checked_kline(data, stream_interval)


def _checked_kline(data: dict, stream_interval: str | None = None) -> Kline:
    """`parse_kline` in Python: the reference rules, and the error messages."""
    k = data.get("k")
    if data.get("e") != "kline" or not isinstance(k, dict):
        raise FrameError("not a kline event", "e", data.get("e"))
    symbol = k.get("s")
    interval = k.get("i")
    if not isinstance(symbol, str) or not symbol:
        raise FrameError(f"symbol = {symbol!r}", "s", symbol)
    if type(interval) is not str or interval not in INTERVAL_MS:
        raise FrameError(f"interval = {interval!r}: unknown", "i", interval)
    if stream_interval is not None and interval != stream_interval:
        raise FrameError(f"interval {interval!r} does not match the stream's {stream_interval!r}", "i", interval)
    t, close_time = _int(k, "t", "open_time"), _int(k, "T", "close_time")
    step = INTERVAL_MS[interval]
    if (step is not None and close_time != t + step - 1) or close_time <= t:
        raise FrameError(f"close_time {close_time} inconsistent with open_time {t} and interval {interval}",
                         "close_time", close_time)
    o = _decimal(k, "o", "open", True)
    h = _decimal(k, "h", "high", True)
    l = _decimal(k, "l", "low", True)
    c = _decimal(k, "c", "close", True)
    v = _decimal(k, "v", "volume", False)
    problem = bar_problem(o, h, l, c, v, math.nan, math.nan)  # the bar rule (tradesim._core.market_data)
    if problem is not None:
        field, value, reason = problem
        raise FrameError(f"{field} = {value!r} {reason}", field, value)
    closed = k.get("x")
    if type(closed) is not bool:
        raise FrameError(f"closed flag = {closed!r}: expected true/false", "x", closed)
    return Kline(symbol, interval, t, close_time, o, h, l, c, v, closed)


def parse_rest_kline(row: Any, symbol: str, interval: str) -> Kline:
    """Validate one row of REST ``GET /api/v3/klines`` by the same rules as a WebSocket kline.

    A row is ``[openTime, "open", "high", "low", "close", "volume", closeTime, ...]``
    (later items are ignored). The row says nothing about whether the kline is
    closed: the result has ``closed=True`` and the caller drops rows whose close
    time is not yet past.

    Raises
    ------
    FrameError
        Not an array of >= 7 items, or any rule of the module docstring broken.
    """
    if type(row) is not list or len(row) < 7:
        raise FrameError(f"REST kline row: expected an array of >= 7 items, got {str(row)[:80]}", "row", row)
    k = {"s": symbol, "i": interval, "t": row[0], "T": row[6], "o": row[1], "h": row[2], "l": row[3],
         "c": row[4], "v": row[5], "x": True}
    return parse_kline({"e": "kline", "k": k}, interval)


def parse_rest_klines(rows: Any, symbol: str, interval: str) -> np.ndarray:
    """Validate a whole REST ``GET /api/v3/klines`` response into columns.

    Every row must pass `parse_rest_kline` (valid rows take the C path
    `kline_fast.rest_klines_into`, same rules; the first invalid one goes
    through `parse_rest_kline`, which names the field and value).

    Returns
    -------
    ndarray of float64, shape (n, 6)
        Columns open time (ms since epoch UTC; exact), open, high, low, close
        (quote currency) and volume (base units), in the response's order.

    Raises
    ------
    FrameError
        Not an array, a row breaking a rule, or an interval without a fixed length ("1M").
    """
    if type(rows) is not list:
        raise FrameError(f"REST klines: expected an array, got {str(rows)[:80]}", "rows", rows)
    step = INTERVAL_MS.get(interval)
    if not step:
        raise FrameError(f"interval = {interval!r}: no fixed length", "i", interval)
    out = np.empty((len(rows), 6), dtype=np.float64)
    done = rest_klines_into(rows, step, out)
    if done < len(rows):
        parse_rest_kline(rows[done], symbol, interval)  # raises, naming the field
        raise AssertionError(f"row {done} refused by the C path but accepted by parse_rest_kline")
    return out


def parse_book_ticker(data: dict) -> BookTicker:
    """Validate a bookTicker payload (``{"u", "s", "b", "B", "a", "A"}``).

    Prices must be plain decimals > 0 and quantities >= 0. A crossed quote
    (bid > ask) or an empty side (quantity 0) parses; the feed decides what to
    do with it (docs/hostile-inputs.md, M4).

    Raises
    ------
    FrameError
        A field is missing or not a plain decimal / non-negative integer.
    """
    symbol = data.get("s")
    if not isinstance(symbol, str) or not symbol:
        raise FrameError(f"symbol = {symbol!r}", "s", symbol)
    return BookTicker(symbol, _int(data, "u", "update_id"), _decimal(data, "b", "bid", True),
                      _decimal(data, "B", "bid_qty", False), _decimal(data, "a", "ask", True),
                      _decimal(data, "A", "ask_qty", False))


def parse_trade(data: dict) -> Trade:
    """Validate a ``@trade`` payload (``{"e": "trade", "s", "t", "p", "q", "T", ...}``).

    Raises
    ------
    FrameError
        Not a trade event, or price <= 0, qty < 0, or ids/times not non-negative integers.
    """
    if data.get("e") != "trade":
        raise FrameError("not a trade event", "e", data.get("e"))
    symbol = data.get("s")
    if not isinstance(symbol, str) or not symbol:
        raise FrameError(f"symbol = {symbol!r}", "s", symbol)
    return Trade(symbol, _int(data, "t", "trade_id"), _int(data, "T", "trade_time"),
                 _decimal(data, "p", "price", True), _decimal(data, "q", "qty", False))


def message_kind(msg: dict) -> str:
    """Classify a decoded message: kline, bookTicker, ack, error, serverShutdown or unknown."""
    if "result" in msg and "id" in msg:
        return "ack"
    if "code" in msg and "msg" in msg:
        return "error"
    data = msg.get("data") if "stream" in msg else msg
    if not isinstance(data, dict):
        return "unknown"
    event = data.get("e")
    if event == "kline":
        return "kline"
    if event == "serverShutdown" or msg.get("stream") == "!serverShutdown":
        return "serverShutdown"
    if event is None and {"u", "s", "b", "a"} <= data.keys():
        return "bookTicker"
    return "unknown"
