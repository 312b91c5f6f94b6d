"""A block's MessagePack events decoded, flat ones (a map of str keys to scalars, or to such maps)
without msgspec.

Most events of a live session's log are ``bar`` events: a map of a dozen str
keys to ints, floats and strs. msgspec decodes one in ~0.45 µs, most of it
looking up its keys, growing a new dict and making a str of each str value
(docs/event-log.md, Speed). Events of one kind repeat the same keys in the
same order, so this decoder remembers each key layout it meets: a flat event
whose keys match a known layout byte for byte becomes a copy of that layout's
dict with its values set (no key lookup, no dict growth), and a str value
equal to the last one at its position is the same str object (strs are
immutable); a value that is a flat map (a decision's indicator values, a
closed position's trade) is decoded the same way. Any other value (an array,
a map deeper down, bin, ext), a key that is not a short str, a layout never
met before once `_MAX_LAYOUTS` are known, or anything malformed, is decoded
by msgspec, which remains the codec: the two give equal dicts, with equal
types and key order (tested).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Copy, PyDict_SetItem
from cpython.float cimport PyFloat_FromDouble
from cpython.long cimport PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

import msgspec

cdef object _DECODER = msgspec.msgpack.Decoder()
cdef object _MISMATCH = object()   # (_fill: the keys are not that layout's)
cdef object _NOT_FLAT = object()   # (_value: not a flat value: the event is msgspec's)

cdef enum:
    # A map with more entries than this is decoded by msgspec (values' offsets live on the stack).
    MAX_KEYS = 64
    # Nesting at which the skipper gives up (the event then goes to msgspec, which decides).
    MAX_DEPTH = 256
# Key layouts remembered per decoder; events of any further layout are decoded by msgspec.
cdef Py_ssize_t _MAX_LAYOUTS = 256


cdef inline uint16_t _be16(const uint8_t* p) noexcept nogil:
    return (<uint16_t>p[0] << 8) | p[1]


cdef inline uint32_t _be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef inline uint64_t _be64(const uint8_t* p) noexcept nogil:
    return (<uint64_t>_be32(p) << 32) | _be32(p + 4)


cdef Py_ssize_t _skip(const uint8_t* p, Py_ssize_t pos, Py_ssize_t end, int depth) noexcept nogil:
    """The offset just after the MessagePack value at `pos`, or -1 if it is malformed, cut short or
    nested deeper than MAX_DEPTH (msgspec then decodes the rest and reports it)."""
    cdef uint8_t tag
    cdef uint64_t n = 0, items = 0, _k
    if pos >= end or depth > MAX_DEPTH:
        return -1
    tag = p[pos]
    if tag <= 0x7F or tag >= 0xE0 or tag == 0xC0 or tag == 0xC2 or tag == 0xC3:
        return pos + 1
    if 0xA0 <= tag <= 0xBF:
        n = 1 + (tag - 0xA0)
    elif 0x90 <= tag <= 0x9F:
        items, pos = tag - 0x90, pos + 1
    elif 0x80 <= tag <= 0x8F:
        items, pos = 2 * <uint64_t>(tag - 0x80), pos + 1
    elif tag == 0xCA or tag == 0xCE or tag == 0xD2:
        n = 5
    elif tag == 0xCB or tag == 0xCF or tag == 0xD3:
        n = 9
    elif tag == 0xCC or tag == 0xD0:
        n = 2
    elif tag == 0xCD or tag == 0xD1:
        n = 3
    elif 0xD4 <= tag <= 0xD8:            # fixext 1, 2, 4, 8, 16: tag, type, data
        n = 2 + (<uint64_t>1 << (tag - 0xD4))
    elif tag == 0xC4 or tag == 0xD9:     # bin8 / str8
        if pos + 2 > end:
            return -1
        n = 2 + p[pos + 1]
    elif tag == 0xC5 or tag == 0xDA:     # bin16 / str16
        if pos + 3 > end:
            return -1
        n = 3 + _be16(p + pos + 1)
    elif tag == 0xC6 or tag == 0xDB:     # bin32 / str32
        if pos + 5 > end:
            return -1
        n = 5 + <uint64_t>_be32(p + pos + 1)
    elif tag == 0xC7:                    # ext8: tag, size, type, data
        if pos + 2 > end:
            return -1
        n = 3 + p[pos + 1]
    elif tag == 0xC8:
        if pos + 3 > end:
            return -1
        n = 4 + _be16(p + pos + 1)
    elif tag == 0xC9:
        if pos + 5 > end:
            return -1
        n = 6 + <uint64_t>_be32(p + pos + 1)
    elif tag == 0xDC or tag == 0xDE:     # array16 / map16
        if pos + 3 > end:
            return -1
        items = _be16(p + pos + 1) * (2 if tag == 0xDE else 1)
        pos += 3
    elif tag == 0xDD or tag == 0xDF:     # array32 / map32
        if pos + 5 > end:
            return -1
        items = <uint64_t>_be32(p + pos + 1) * (2 if tag == 0xDF else 1)
        pos += 5
    else:                                # 0xC1: never used
        return -1
    if n:
        return pos + <Py_ssize_t>n if n <= <uint64_t>(end - pos) else -1
    for _k in range(items):
        pos = _skip(p, pos, end, depth + 1)
        if pos < 0:
            return -1
    return pos


cdef inline bint _equal(const uint8_t* a, const uint8_t* b, Py_ssize_t n) noexcept nogil:
    # (keys and strs here are short: a loop beats a call to memcmp)
    cdef Py_ssize_t i
    for i in range(n):
        if a[i] != b[i]:
            return False
    return True


cdef inline Py_ssize_t _number_size(uint8_t tag) noexcept nogil:
    # Bytes of a float or int of more than one byte, with its tag (0: not one).
    if tag == 0xCA or tag == 0xCE or tag == 0xD2:
        return 5
    if tag == 0xCB or tag == 0xCF or tag == 0xD3:
        return 9
    if tag == 0xCC or tag == 0xD0:
        return 2
    if tag == 0xCD or tag == 0xD1:
        return 3
    return 0


cdef class _Layout:
    # One key layout: the keys' bytes (with their str headers) back to back, where each starts, the
    # dict an event of this layout is copied from, and the last str value met at each position.
    cdef bytes key_bytes
    cdef Py_ssize_t n
    cdef Py_ssize_t offsets[MAX_KEYS + 1]
    cdef tuple names
    cdef dict template
    cdef list last_str       # per position: (bytes, str) of the last str value met, or None


cdef class FlatDecoder:
    """Decodes blocks of MessagePack events (see the module docstring); one per `LogReader` (it
    learns the layouts of that reader's log, `_MAX_LAYOUTS` at most).

    Threads may share one: it holds the GIL through a block unless a finalizer runs Python code in
    it, and then its caches stay consistent (each entry is replaced whole, and a layout is known
    only once it is complete)."""
    cdef dict layouts        # hash of a layout's key bytes -> the _Layouts with that hash
    cdef Py_ssize_t n_layouts
    cdef list by_size        # per number of keys: the layout of that size used last

    def __init__(self):
        self.layouts = {}
        self.n_layouts = 0
        self.by_size = [None] * (MAX_KEYS + 1)

    def decode_block(self, bytes raw not None, Py_ssize_t count):
        """The `count` MessagePack values back to back in `raw`, as a list.

        Raises
        ------
        msgspec.DecodeError
            `raw` is not exactly `count` values (raised by msgspec, which then decodes the block).
        """
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(raw)
        cdef Py_ssize_t end = PyBytes_GET_SIZE(raw), pos = 0, stop, k, others = 0
        cdef list out = []
        cdef object value, view = None
        for k in range(count):
            if others * 4 > k and k >= 8:
                # A block of mostly other events (lists, deeper maps, new layouts once the decoder
                # knows enough) is msgspec's: its rest in one call, not one call per event.
                out.extend(_decode_all(raw[pos:], count - k))
                return out
            value = self._flat(p, pos, end, &stop, False)
            if value is None:
                others += 1
                stop = _skip(p, pos, end, 0)
                if stop < 0:
                    return _decode_all(raw, count)   # malformed: msgspec raises (or decodes) it
                if view is None:
                    view = memoryview(raw)
                value = _DECODER.decode(view[pos:stop])
            out.append(value)
            pos = stop
        if pos != end:
            return _decode_all(raw, count)
        return out

    cdef object _flat(self, const uint8_t* p, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t* stop, bint inner):
        # A flat map at `pos` as a dict (and `stop` just after it), or None to leave it to msgspec. A
        # value may be a flat map itself (`inner`: this is one), as a decision's indicator values are.
        cdef Py_ssize_t size, i, klen, start
        cdef Py_ssize_t keys[MAX_KEYS]
        cdef uint8_t tag
        if pos >= end:
            return None
        tag = p[pos]
        if 0x80 <= tag <= 0x8F:
            size, pos = tag - 0x80, pos + 1
        elif tag == 0xDE and pos + 3 <= end:
            size, pos = _be16(p + pos + 1), pos + 3
        else:
            return None
        if size > MAX_KEYS:
            return None
        # Most events have the layout of the last event of their kind, and kinds differ in their
        # number of keys: the event is read in one pass against the last layout of its size, and its
        # keys are looked up only when they differ.
        last = self.by_size[size]
        if last is not None:
            d = self._fill(<_Layout>last, p, pos, end, stop, inner)
            if d is not _MISMATCH:
                return d
        start = pos
        for i in range(size):
            if pos >= end or not (0xA0 <= p[pos] <= 0xBF):
                return None
            klen = 1 + (p[pos] - 0xA0)
            keys[i] = pos
            if pos + klen >= end:
                return None
            tag = p[pos + klen]
            if 0x90 <= tag <= 0x9F or 0xC4 <= tag <= 0xC9 or 0xD4 <= tag <= 0xD8 or 0xDC <= tag <= 0xDF \
                    or (inner and (0x80 <= tag <= 0x8F or tag == 0xDE)) or tag == 0xC1:
                return None   # not flat: no layout is learnt from it (an array, bin, ext, a map too deep)
            pos = _skip(p, pos + klen, end, 0)
            if pos < 0:
                return None
        layout = self._layout(p, keys, size)
        if layout is None:
            return None
        self.by_size[size] = layout
        d = self._fill(<_Layout>layout, p, start, end, stop, inner)
        return None if d is _MISMATCH else d

    cdef object _fill(self, _Layout layout, const uint8_t* p, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t* stop,
                      bint inner):
        # The map's entries from `pos` on as a copy of `layout`'s dict; _MISMATCH if its keys are not
        # the layout's, None if a value is not flat (or is malformed): msgspec's.
        cdef const uint8_t* known = <const uint8_t*>PyBytes_AS_STRING(layout.key_bytes)
        cdef dict d = PyDict_Copy(layout.template)
        cdef Py_ssize_t i, klen, after
        cdef uint8_t tag
        cdef double f
        cdef uint64_t u, last_u = 0
        cdef object v, last_int = None
        for i in range(layout.n):
            if pos >= end:
                return None
            klen = layout.offsets[i + 1] - layout.offsets[i]
            if p[pos] != 0xA0 + klen - 1 or pos + klen > end or not _equal(p + pos, known + layout.offsets[i], klen):
                return _MISMATCH
            pos += klen
            if pos + 9 > end:   # (room for the usual scalars; the others check for themselves)
                v = self._value(layout, i, p, pos, end, &after, inner)
            else:
                tag = p[pos]
                if tag == 0xCB:
                    u = _be64(p + pos + 1)
                    memcpy(&f, &u, 8)
                    v, after = PyFloat_FromDouble(f), pos + 9
                elif tag == 0xCF:   # (a time: a bar's open time is its "time" too, one int for both)
                    u = _be64(p + pos + 1)
                    if last_int is None or u != last_u:
                        last_int, last_u = PyLong_FromUnsignedLongLong(u), u
                    v, after = last_int, pos + 9
                else:
                    v = self._value(layout, i, p, pos, end, &after, inner)
            if v is _NOT_FLAT:
                return None
            PyDict_SetItem(d, layout.names[i], v)
            pos = after
        stop[0] = pos
        return d

    cdef object _value(self, _Layout layout, Py_ssize_t i, const uint8_t* p, Py_ssize_t pos, Py_ssize_t end,
                       Py_ssize_t* after, bint inner):
        # The scalar (or flat map) at `pos`, `after` just after it; _NOT_FLAT for anything else, or
        # for a value cut short or not UTF-8 (msgspec then decodes the event and says what is wrong).
        cdef uint8_t tag
        cdef Py_ssize_t n, slen
        cdef double f
        cdef float f32
        cdef uint64_t u
        cdef object last, v
        if pos >= end:
            return _NOT_FLAT
        tag = p[pos]
        if tag <= 0x7F:
            after[0] = pos + 1
            return PyLong_FromLongLong(tag)
        if tag >= 0xE0:
            after[0] = pos + 1
            return PyLong_FromLongLong(<int64_t>tag - 0x100)
        if tag == 0xC0 or tag == 0xC2 or tag == 0xC3:
            after[0] = pos + 1
            return None if tag == 0xC0 else tag == 0xC3
        if 0x80 <= tag <= 0x8F or tag == 0xDE:
            if inner:
                return _NOT_FLAT
            v = self._flat(p, pos, end, after, True)
            return _NOT_FLAT if v is None else v
        if 0xA0 <= tag <= 0xBF or 0xD9 <= tag <= 0xDB:   # a str
            if 0xA0 <= tag <= 0xBF:
                n, slen = 1, tag - 0xA0
            elif tag == 0xD9:
                n, slen = 2, (p[pos + 1] if pos + 2 <= end else -1)
            elif tag == 0xDA:
                n, slen = 3, (_be16(p + pos + 1) if pos + 3 <= end else -1)
            else:
                n, slen = 5, (<Py_ssize_t>_be32(p + pos + 1) if pos + 5 <= end else -1)
            if slen < 0 or slen > end - pos - n:
                return _NOT_FLAT
            pos += n
            after[0] = pos + slen
            last = layout.last_str[i]   # (one tuple: its bytes and str always agree)
            if last is not None and PyBytes_GET_SIZE((<tuple>last)[0]) == slen \
                    and _equal(<const uint8_t*>PyBytes_AS_STRING((<tuple>last)[0]), p + pos, slen):
                return (<tuple>last)[1]
            try:
                v = PyUnicode_DecodeUTF8(<const char*>p + pos, slen, NULL)
            except UnicodeDecodeError:
                return _NOT_FLAT
            if slen <= 64:    # (short strs repeat: a symbol, a feed, an event type)
                layout.last_str[i] = ((<const char*>p)[pos:pos + slen], v)
            return v
        n = _number_size(tag)
        if n == 0 or pos + n > end:
            return _NOT_FLAT   # an array, bin, ext, 0xC1, or cut short
        after[0] = pos + n
        if tag == 0xCB:
            u = _be64(p + pos + 1)
            memcpy(&f, &u, 8)
            return PyFloat_FromDouble(f)
        if tag == 0xCA:
            u = _be32(p + pos + 1)
            memcpy(&f32, &u, 4)
            return PyFloat_FromDouble(<double>f32)
        if tag == 0xCC:
            return PyLong_FromLongLong(p[pos + 1])
        if tag == 0xCD:
            return PyLong_FromLongLong(_be16(p + pos + 1))
        if tag == 0xCE:
            return PyLong_FromLongLong(_be32(p + pos + 1))
        if tag == 0xCF:
            return PyLong_FromUnsignedLongLong(_be64(p + pos + 1))
        if tag == 0xD0:
            return PyLong_FromLongLong(<signed char>p[pos + 1])
        if tag == 0xD1:
            return PyLong_FromLongLong(<short>_be16(p + pos + 1))
        if tag == 0xD2:
            return PyLong_FromLongLong(<int>_be32(p + pos + 1))
        return PyLong_FromLongLong(<int64_t>_be64(p + pos + 1))

    cdef object _layout(self, const uint8_t* p, Py_ssize_t* keys, Py_ssize_t size):
        # The known layout of these keys (FNV-1a of their bytes finds it), or a new one.
        cdef _Layout layout
        cdef Py_ssize_t i, j, klen
        cdef const uint8_t* known
        cdef uint64_t h = 1469598103934665603ULL
        for i in range(size):
            for j in range(keys[i], keys[i] + 1 + (p[keys[i]] - 0xA0)):
                h = (h ^ p[j]) * 1099511628211ULL
        candidates = self.layouts.get(h)
        if candidates is not None:
            for layout in candidates:
                if layout.n != size:
                    continue
                known = <const uint8_t*>PyBytes_AS_STRING(layout.key_bytes)
                for i in range(size):
                    klen = layout.offsets[i + 1] - layout.offsets[i]
                    if 1 + (p[keys[i]] - 0xA0) != klen or not _equal(p + keys[i], known + layout.offsets[i], klen):
                        break   # (lengths first: a longer known key must not be compared past the event's)
                else:
                    return layout
        if self.n_layouts >= _MAX_LAYOUTS:
            return None
        layout = _Layout()
        layout.n = size
        parts = []
        names = []
        layout.offsets[0] = 0
        for i in range(size):
            klen = 1 + (p[keys[i]] - 0xA0)
            parts.append((<const char*>p)[keys[i]:keys[i] + klen])
            layout.offsets[i + 1] = layout.offsets[i] + klen
            try:
                names.append(PyUnicode_DecodeUTF8(<const char*>p + keys[i] + 1, klen - 1, NULL))
            except UnicodeDecodeError:
                return None   # msgspec reports it
        layout.key_bytes = b"".join(parts)
        layout.names = tuple(names)
        layout.template = dict.fromkeys(layout.names)   # (a repeated key: first place, last value, as msgspec)
        layout.last_str = [None] * size
        self.layouts.setdefault(h, []).append(layout)
        self.n_layouts += 1
        return layout


cdef list _decode_all(bytes data, Py_ssize_t count):
    # msgspec decodes the block as an array of `count` values (and raises what is wrong with it).
    return _DECODER.decode(b"\xdd" + count.to_bytes(4, "big") + data)
