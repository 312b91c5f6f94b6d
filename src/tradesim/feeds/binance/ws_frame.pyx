"""WebSocket frame headers (RFC 6455 §5.2) for the Binance feed's fast path.

`FrameConnection` hands the payload of an ordinary server data frame (final,
unmasked, no reserved bits, text or binary) straight to the feed, without
websockets' generator-based parser; everything else (control frames,
fragments, protocol errors, a frame split across reads) is left to
websockets. This module only reads headers: it never decides what a frame
that is not ordinary means.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

cdef enum:
    OP_TEXT = 1
    OP_BINARY = 2


def scan_data_frame(bytes buf not None, Py_ssize_t pos, Py_ssize_t max_size):
    """The ordinary data frame that starts at ``buf[pos]``, if there is a whole one.

    Parameters
    ----------
    buf : bytes
        Bytes received from the server.
    pos : int
        Offset of a frame header in `buf`.
    max_size : int
        Largest payload accepted here (bytes); a bigger frame is left to
        websockets, which closes the connection with 1009.

    Returns
    -------
    (opcode, start, end) : tuple of int
        ``opcode`` 1 (text) or 2 (binary) for a complete, final, unmasked frame
        with no reserved bits: its payload is ``buf[start:end]`` and the next
        frame starts at `end`. ``opcode`` 0 for anything else (``start`` and
        ``end`` then 0): incomplete, a control or continuation frame, not
        final, masked, reserved bits set, or too big.
    """
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(buf)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(buf)
    cdef Py_ssize_t at = pos, length
    cdef unsigned char b0, b1
    cdef int i, opcode
    if pos < 0 or n - at < 2:
        return 0, 0, 0
    b0, b1 = p[at], p[at + 1]
    opcode = b0 & 0x0F
    # FIN set, RSV1-3 clear, text or binary; MASK clear (a server never masks)
    if (b0 & 0xF0) != 0x80 or (opcode != OP_TEXT and opcode != OP_BINARY) or (b1 & 0x80):
        return 0, 0, 0
    length = b1 & 0x7F
    at += 2
    if length == 126:
        if n - at < 2:
            return 0, 0, 0
        length = (<Py_ssize_t>p[at] << 8) | p[at + 1]
        at += 2
    elif length == 127:
        if n - at < 8 or p[at] & 0x80:
            return 0, 0, 0
        length = 0
        for i in range(8):
            length = (length << 8) | p[at + i]
        at += 8
    if length > max_size or n - at < length:
        return 0, 0, 0
    return opcode, at, at + length
