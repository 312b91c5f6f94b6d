"""The flat-event decoder (eventlog/flat_events.pyx) against msgpack-python, an independent MessagePack
implementation: equal values, of equal types, in equal key order, for every scalar encoding; malformed
blocks are refused as msgspec refuses them, never returned as data."""

from __future__ import annotations

import math

import msgpack
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradesim.eventlog.flat_events import FlatDecoder


def _same(a, b) -> bool:
    # equal and of the same type all the way down; dicts in the same key order; NaN equals NaN;
    # 0.0 and -0.0 differ; an ext value is its code and data (each library has its own ext type)
    a, b = (_ext(x) for x in (a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return a == b


def _ext(x):
    return ("ext", x.code, x.data) if isinstance(x, (msgspec.msgpack.Ext, msgpack.ExtType)) else x


def _reference(data: bytes) -> list:
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    return list(unpacker)


def _check(events: list, **pack) -> list:
    data = b"".join(msgpack.packb(e, **pack) for e in events)
    got = FlatDecoder().decode_block(data, len(events))
    assert _same(got, _reference(data)), (got, events)
    return got


_INTS = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1,
         -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)]
_STRS = ["", "a", "x" * 31, "x" * 32, "é" * 100, "x" * 255, "x" * 256, "€" * 30_000, "x" * 65_536, "BTCUSDT"]


def test_every_scalar_encoding_in_one_layout_and_many():
    # each value in an event of one layout (the same keys each time: the layout is reused) ...
    values = [*_INTS, *_STRS, None, True, False, 0.0, -0.0, 1.5, math.inf, -math.inf, math.nan, 1e-310]
    _check([{"type": "bar", "v": v, "seq": i} for i, v in enumerate(values)])
    # ... all in one event, and as float32 (msgpack-python's use_single_float)
    _check([{f"k{i}": v for i, v in enumerate(values)}] * 3)
    _check([{"type": "bar", "close": 101.25, "volume": 1e-3, "nan": math.nan}] * 2, use_single_float=True)


def test_a_live_bar_event_and_what_is_not_flat():
    bar = {"type": "bar", "feed": "binance", "symbol": "BTCUSDT", "timestamp": 1_700_000_000_000, "open": 100.25,
           "high": 101.0, "low": 99.5, "close": 100.75, "volume": 12.5, "bid": None, "ask": 100.8,
           "recv": 1_700_000_060_250, "time": 1_700_000_000_000, "seq": 7}
    events = [bar, {**bar, "seq": 8, "symbol": "ETHUSDT", "close": 2.5},
              {"type": "decision", "action": {"type": "open_long", "quantity": 1.5}, "seq": 9},   # nested
              {"type": "bars", "open": b"\x00" * 16, "seq": 10},                                   # bin
              [1, 2, 3], 5, "text", None, {1: "int key"}, {"a": msgpack.ExtType(5, b"xyz")}, {},
              {"dup": 1, "x": 2, "dup": 3},   # noqa: F601 (a repeated key: last value, first place)
              {**bar, "seq": 11, "symbol": "ETHUSDT"}]
    got = _check(events)
    assert list(got[11]) == ["dup", "x"] and got[11]["dup"] == 3
    got = _check([bar, {**bar, "seq": 8, "symbol": "ETHUSDT"}, {"type": "x"}, {**bar, "seq": 9, "symbol": "ETHUSDT"}])
    assert got[0]["symbol"] == "BTCUSDT" and got[1]["symbol"] == "ETHUSDT" and got[-1]["symbol"] == "ETHUSDT"
    assert got[1]["symbol"] is got[-1]["symbol"]   # a str equal to the last one at its place is shared
    # a block of mostly other events: its rest goes to msgspec in one call, with the same result
    _check([bar] * 3 + [{"type": "order", "levels": [1.5, 2.5], "seq": i} for i in range(40)] + [bar] * 5)
    deep: list = []
    for _ in range(300):   # deeper than the skipper goes: the whole block is msgspec's
        deep = [deep]
    _check([bar, {"deep": deep}, bar])


_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=True)
            | st.sampled_from(_STRS[:6]) | st.text(max_size=40))
_values = _scalars | st.recursive(
    _scalars | st.binary(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6)
_keys = (st.sampled_from(["type", "seq", "open", "close", "symbol", "é", "k" * 31, "k" * 32, "feed"])
         | st.text(max_size=6))
# few distinct layouts, so that most events meet a layout already known
_layouts = st.lists(st.lists(_keys, min_size=0, max_size=16), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(_layouts, st.data())
def test_random_blocks_decode_as_msgpack_python_reads_them(layouts, data):
    events = []
    for _ in range(data.draw(st.integers(1, 30))):
        keys = data.draw(st.sampled_from(layouts))
        if data.draw(st.integers(0, 9)) == 0:
            events.append(data.draw(_values))   # now and then something else entirely
        else:
            events.append({k: data.draw(_values) for k in keys})
    _check(events)


def test_more_layouts_than_it_remembers_are_decoded_by_msgspec():
    events = [{f"key{i}": i, "type": "x", "v": float(i)} for i in range(600)]
    decoder = FlatDecoder()
    data = b"".join(msgpack.packb(e) for e in events)
    assert _same(decoder.decode_block(data, 600), events)
    assert _same(decoder.decode_block(data, 600), events)   # again, with the layouts full


def _bad(data: bytes, count: int, error: type[Exception] = msgspec.DecodeError) -> None:
    with pytest.raises(error):
        msgspec.msgpack.Decoder().decode(b"\xdd" + count.to_bytes(4, "big") + data)   # msgspec refuses it ...
    with pytest.raises(error):
        FlatDecoder().decode_block(data, count)                                       # ... and so does this


def test_the_reviewers_cases():
    with pytest.raises(TypeError):
        FlatDecoder().decode_block(None, 0)
    decoder = FlatDecoder()   # a known layout, then an event cut right after its key
    assert decoder.decode_block(b"\x81\xa1a\x01\x81\xa1a\x02", 2) == [{"a": 1}, {"a": 2}]
    with pytest.raises(msgspec.DecodeError):
        decoder.decode_block(b"\x81\xa1a", 1)


def test_malformed_blocks_are_refused_never_returned():
    bar = msgpack.packb({"type": "bar", "symbol": "BTCUSDT", "close": 100.5, "n": 2**40, "s": "x" * 40})
    block = bar * 3
    for cut in range(len(block)):          # cut short at every byte
        _bad(block[:cut], 3)
    _bad(block + b"\x01", 3)               # trailing bytes
    _bad(block, 4)                         # fewer values than counted
    _bad(bar.replace(b"BTCUSDT", b"BTC\xffSDT"), 1)                  # a str value that is not UTF-8
    _bad(bar.replace(b"\xa4type", b"\xa4t\xc3\x28e"), 1)             # a key that is not UTF-8
    _bad(bar.replace(b"\xa6symbol", b"\xc1symbol"), 1)               # 0xC1: never used in MessagePack
    _bad(b"\x81\xa1a" + b"\x91" * 10_000 + b"\xc0", 1, RecursionError)   # nested past msgspec's depth
