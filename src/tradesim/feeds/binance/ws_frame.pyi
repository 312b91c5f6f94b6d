"""WebSocket data-frame header scan in C (the live feed's fast path, `FrameConnection`)."""

def scan_data_frame(buf: bytes, pos: int, max_size: int) -> tuple[int, int, int]:
    """The ordinary data frame that starts at ``buf[pos]``, if there is a whole one.

    An ordinary frame is final, unmasked, with no reserved bits, a text (1) or
    binary (2) opcode and a payload of at most `max_size` bytes. Returns
    ``(opcode, payload start, payload end)``, offsets into `buf`; opcode 0 when
    the bytes at `pos` are not a whole ordinary frame (then websockets parses
    them).
    """
