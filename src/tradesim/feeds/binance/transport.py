"""The WebSocket transport of the Binance feed: whole data frames handed over as they arrive.

`FrameConnection` is websockets' asyncio client connection with a fast path:
the header of an ordinary data frame is read in C (`tradesim.feeds.binance.ws_frame`)
and its payload handed to the feed straight from ``data_received``; anything
else is left to websockets.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.frames import Opcode
from websockets.protocol import State as WsState
from websockets.streams import StreamReader

from tradesim.feeds.binance.ws_frame import scan_data_frame

__all__ = ["FrameConnection", "abort"]

log = logging.getLogger(__name__)

# Where websockets' frame parser waits between frames (see FrameConnection._at_frame_boundary).
_AT_EOF = StreamReader.at_eof.__code__


class FrameConnection(ClientConnection):
    """websockets' asyncio client connection, handing each whole data frame to `frame_sink` at once.

    websockets' own path (frame -> message queue -> ``recv()`` future -> reader
    task) costs tens of µs per frame. Here:

    * **Fast path.** While websockets' parser waits for a new frame with
      nothing buffered, an ordinary data frame (final, unmasked, no reserved
      bits, within the size limit: every Binance message) is recognised from
      its header in C (`tradesim.feeds.binance.ws_frame`) and its payload handed to
      `frame_sink` straight from ``data_received``, without websockets'
      generator-based parser.
    * **Everything else** (pings, close, anything unusual, a frame split
      across reads) goes to websockets unchanged, from that byte on, in order;
      it answers pings and enforces the protocol as usual. Data frames it
      parses still reach `frame_sink` synchronously (``process_event``).
    * A fragmented message (never sent by Binance) switches the connection to
      websockets' queue for good, so ``recv()`` gets it and every later frame
      in order.

    Parameters
    ----------
    frame_sink : callable, optional
        ``frame_sink(data, binary)`` with the frame's payload (bytes; UTF-8
        not yet checked for text frames), called on the event-loop thread. It must not
        raise; an exception is logged and the frame dropped.

    Attributes
    ----------
    fast_frames : int
        Frames handed over by the fast path.
    """

    def __init__(self, *args: Any, frame_sink: Callable[[Any, bool], object] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frame_sink = frame_sink
        self.queued_mode = False
        self.fast_frames = 0
        self._boundary = False   # known to be between frames with nothing buffered in websockets
        limits = [x for x in (getattr(self.protocol, "max_message_size", None),
                              getattr(self.protocol, "max_fragment_size", None)) if x is not None]
        self._max_payload = min(limits) if limits else sys.maxsize

    def data_received(self, data: bytes) -> None:
        sink = self.frame_sink
        if sink is not None and not self.queued_mode and (self._boundary or self._at_frame_boundary()):
            pos, end_all = 0, len(data)
            while pos < end_all:
                op, start, end = scan_data_frame(data, pos, self._max_payload)
                if not op:
                    break
                try:
                    sink(data[start:end], op == 2)
                except Exception:  # the connection must outlive a bug downstream
                    log.exception("frame sink raised; frame dropped")
                self.fast_frames += 1
                pos = end
            if pos == end_all:
                self._boundary = True
                return
            data = data[pos:] if pos else data
        self._boundary = False
        super().data_received(data)

    def _at_frame_boundary(self) -> bool:
        """websockets' parser waits for the first byte of a new frame, with nothing buffered.

        Read from its generators: the client's parser delegates to the frame
        loop, which waits in ``StreamReader.at_eof`` between frames. Any other
        shape (another websockets version, the handshake, a half-read frame)
        answers False and leaves every byte to websockets.
        """
        protocol = self.protocol
        if (protocol.state is not WsState.OPEN or protocol.reader.buffer
                or getattr(protocol, "current_size", None) is not None):
            return False
        gen = getattr(protocol, "parser", None)
        for _ in range(4):
            gen = getattr(gen, "gi_yieldfrom", None)
            if gen is None:
                return False
            if getattr(gen, "gi_code", None) is _AT_EOF:
                return True
        return False

    def process_event(self, event: Any) -> None:
        sink = self.frame_sink
        if sink is not None and self.response is not None and not self.queued_mode:
            op = event.opcode
            if op is Opcode.TEXT or op is Opcode.BINARY:
                if event.fin:
                    data = event.data
                    try:
                        sink(data if data.__class__ is bytes else bytes(data), op is Opcode.BINARY)
                    except Exception:  # the connection must outlive a bug downstream
                        log.exception("frame sink raised; frame dropped")
                    return
                self.queued_mode = True
                log.warning("fragmented message: connection switched to websockets' message queue")
        super().process_event(event)


def abort(ws: Any) -> None:
    """Drop a connection at once (no close handshake to wait for)."""
    transport = getattr(ws, "transport", None)
    if transport is not None:
        transport.abort()
