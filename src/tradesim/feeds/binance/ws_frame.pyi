"""WebSocket frame headers (RFC 6455 §5.2) for the Binance feed's fast path."""

def scan_data_frame(buf: bytes, pos: int, max_size: int) -> tuple[int, int, int]:
    """The ordinary data frame that starts at ``buf[pos]``, if there is a whole one.

    Returns ``(opcode, start, end)``: opcode 1 (text) or 2 (binary) for a
    complete, final, unmasked frame with no reserved bits and a payload of at
    most `max_size` bytes, whose payload is ``buf[start:end]`` (the next frame
    starts at `end`); ``(0, 0, 0)`` for anything else (incomplete, control or
    continuation frame, not final, masked, reserved bits set, or too big).
    """
