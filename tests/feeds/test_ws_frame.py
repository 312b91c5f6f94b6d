"""The WebSocket fast path: `scan_data_frame` against websockets' own frame serializer, and
`FrameConnection` on a loopback server that writes crafted bytes (coalesced frames, a ping
between frames, a frame split across writes, a large frame, a fragmented message)."""

import asyncio
import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.frames import Frame, Opcode

from tradesim.feeds.binance.transport import FrameConnection
from tradesim.feeds.binance.ws_frame import scan_data_frame

BIG = 1 << 20


def wire(opcode, payload, fin=True, mask=False, rsv1=False):
    data = Frame(opcode, payload, fin=fin).serialize(mask=mask)
    # websockets refuses to write reserved bits; set RSV1 by hand (0x40 of the first byte)
    return bytes([data[0] | 0x40]) + data[1:] if rsv1 else data


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 200_000])
@pytest.mark.parametrize("opcode, code", [(Opcode.TEXT, 1), (Opcode.BINARY, 2)])
def test_an_ordinary_frame_of_any_length_encoding_is_found_whole(size, opcode, code):
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    buf = b"xx" + wire(opcode, payload) + b"next"
    op, start, end = scan_data_frame(buf, 2, BIG)
    assert op == code and buf[start:end] == payload and buf[end:] == b"next"


@pytest.mark.parametrize("frame", [
    wire(Opcode.PING, b"hi"), wire(Opcode.PONG, b""), wire(Opcode.CLOSE, b"\x03\xe8"),
    wire(Opcode.TEXT, b"part", fin=False), wire(Opcode.CONT, b"rest"),
    wire(Opcode.TEXT, b"masked", mask=True), wire(Opcode.TEXT, b"rsv", rsv1=True),
], ids=["ping", "pong", "close", "not-final", "continuation", "masked", "reserved-bit"])
def test_anything_but_an_ordinary_data_frame_is_left_to_websockets(frame):
    assert scan_data_frame(frame, 0, BIG) == (0, 0, 0)


def test_too_big_or_cut_short_is_left_to_websockets():
    frame = wire(Opcode.TEXT, b"a" * 300)
    assert scan_data_frame(frame, 0, 299) == (0, 0, 0)
    assert scan_data_frame(frame, 0, 300)[0] == 1
    for cut in range(len(frame)):
        assert scan_data_frame(frame[:cut], 0, BIG) == (0, 0, 0)
    assert scan_data_frame(frame, len(frame), BIG) == (0, 0, 0)


frames_st = st.lists(st.one_of(
    st.tuples(st.sampled_from([Opcode.TEXT, Opcode.BINARY]), st.binary(max_size=70_000), st.booleans()),
    st.tuples(st.just(Opcode.PING), st.binary(max_size=125), st.just(True))), max_size=6)


@settings(max_examples=200, deadline=None)
@given(frames_st)
def test_scanning_a_stream_yields_the_data_frames_up_to_the_first_other_one(frames):
    """Walk a buffer of websockets-serialized frames: the scan returns exactly the ordinary
    data frames' payloads, in order, and stops at the first frame that is not one."""
    buf = b"".join(wire(op, data, fin=fin) for op, data, fin in frames)
    expected = []
    for op, data, fin in frames:
        if op is Opcode.PING or not fin:
            break
        expected.append((1 if op is Opcode.TEXT else 2, data))
    got, pos = [], 0
    while True:
        op, start, end = scan_data_frame(buf, pos, BIG)
        if not op:
            break
        got.append((op, buf[start:end]))
        pos = end
    assert got == expected


def test_frame_connection_hands_over_every_message_in_order_and_still_answers_pings():
    messages = [f'{{"n":{i},"pad":"{"x" * (i * 37 % 300)}"}}'.encode() for i in range(12)]
    big = b'{"big":"' + b"y" * 70_000 + b'"}'

    async def main():
        done = asyncio.Event()
        pong = {}

        async def handler(ws):
            write = ws.transport.write
            await asyncio.sleep(0.05)   # not in the handshake's read: that one is websockets' to parse
            write(b"".join(wire(Opcode.TEXT, m) for m in messages[:4]))        # coalesced
            await asyncio.sleep(0.05)
            write(wire(Opcode.TEXT, messages[4]) + wire(Opcode.PING, b"p1") + wire(Opcode.TEXT, messages[5]))
            await asyncio.sleep(0.05)
            split = wire(Opcode.TEXT, messages[6])
            write(split[:3])                                                    # a frame in two reads
            await asyncio.sleep(0.05)
            write(split[3:] + wire(Opcode.BINARY, messages[7]))
            await asyncio.sleep(0.05)
            write(wire(Opcode.TEXT, big))
            await asyncio.sleep(0.05)
            pong["latency"] = await asyncio.wait_for(await ws.ping(), 5)       # answered by the client
            write(b"".join(wire(Opcode.TEXT, m) for m in messages[8:10]))
            await asyncio.sleep(0.05)
            write(wire(Opcode.TEXT, messages[10][:5], fin=False) + wire(Opcode.CONT, messages[10][5:]))
            await asyncio.sleep(0.05)
            write(wire(Opcode.TEXT, messages[11]))
            await done.wait()

        got = []
        async with serve(handler, "127.0.0.1", 0, max_size=BIG) as server:
            port = server.sockets[0].getsockname()[1]
            factory = functools.partial(FrameConnection, frame_sink=lambda data, binary: got.append((data, binary)))
            async with connect(f"ws://127.0.0.1:{port}", create_connection=factory, max_size=BIG,
                               compression=None) as ws:
                # frames 0..9 reach the sink; the fragmented one switches the connection to recv()
                while len(got) < 10:
                    await asyncio.sleep(0.01)
                queued = [await asyncio.wait_for(ws.recv(), 5) for _ in range(2)]
                done.set()
                return got, queued, ws.fast_frames, ws.queued_mode, pong

    got, queued, fast, queued_mode, pong = asyncio.run(main())
    text = [d for d, binary in got if not binary]
    assert text[:7] == messages[:7] and text[7] == big and text[8:] == messages[8:10]
    assert [d for d, binary in got if binary] == [messages[7]]
    assert [q.encode() for q in queued] == messages[10:12]
    assert queued_mode and pong["latency"] >= 0
    # The fast path took at least the coalesced four (up to eight, depending on how the
    # kernel splits reads); the frames after a ping or a split one went through websockets.
    assert 4 <= fast <= 8
