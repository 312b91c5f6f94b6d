"""A block's MessagePack events decoded, flat ones (a map of str keys to scalars, or to such maps)
without msgspec.

Most events of a live session's log are ``bar`` events: a map of 14 str keys
to ints, floats, strs and nils. msgspec decodes one in ~0.45 µs, most of it
looking up its keys, growing a new dict and making a str of each str value
(docs/event-log.md, Speed). Events of one kind repeat the same keys in the
same order, so this decoder remembers each key layout it meets: a flat event
whose keys match a known layout byte for byte becomes a copy of that layout's
dict with its values set (no key lookup, no dict growth), and a str value
equal to the last one at its position is the same str object (strs are
immutable); a value that is a flat map (a decision's indicator values, a
closed position's trade) is decoded the same way. Any other value (an array, a
map deeper down, bin, ext), a key that is
not a short str, a layout never met before once `_MAX_LAYOUTS` are known, or
anything malformed, is decoded by msgspec, which remains the codec: the two
give equal dicts, with equal types and key order (tested).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Copy, PyDict_SetItem
from cpython.float cimport PyFloat_FromDouble
from cpython.long cimport PyLong_FromLongLong, PyLong_FromUnsignedLongLong
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcmp, memcpy

import msgspec

cdef object _DECODER = msgspec.msgpack.Decoder()

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
    # (short strings: a loop beats a call to memcmp)
    cdef Py_ssize_t i
    for i in range(n):
        if a[i] != b[i]:
            return False
    return True


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
    """Decodes blocks of MessagePack events (see the module docstring); one per reader (it learns
    the layouts of that reader's log). Not thread-safe."""
    cdef dict layouts        # hash of a layout's key bytes -> the _Layouts with that hash
    cdef Py_ssize_t n_layouts
    cdef list by_size        # per number of keys: the layout of that size used last

    def __init__(self):
        self.layouts = {}
        self.n_layouts = 0
        self.by_size = [None] * (MAX_KEYS + 1)

    def decode_block(self, raw, Py_ssize_t count):
        """The `count` MessagePack values back to back in `raw` (bytes), as a list.

        Raises
        ------
        msgspec.DecodeError
            `raw` is not exactly `count` values (raised by msgspec, which then decodes the block).
        """
        cdef bytes data = raw
        cdef const uint8_t* p = <const uint8_t*>PyBytes_AS_STRING(data)
        cdef Py_ssize_t end = PyBytes_GET_SIZE(data), pos = 0, stop, _k
        cdef list out = []
        cdef object value, view = None
        for _k in range(count):
            value = self._flat(p, pos, end, &stop, False)
            if value is None:
                stop = _skip(p, pos, end, 0)
                if stop < 0:
                    return _decode_all(data, count)   # malformed: msgspec raises (or decodes) it
                if view is None:
                    view = memoryview(data)
                value = _DECODER.decode(view[pos:stop])
            out.append(value)
            pos = stop
        if pos != end:
            return _decode_all(data, count)
        return out

    cdef object _flat(self, const uint8_t* p, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t* stop, bint inner):
        # A flat map at `pos` as a dict (and `stop` just after it), or None to leave it to msgspec. A
        # value may be a flat map itself (`inner`: this is one), as a decision's indicator values are.
        cdef Py_ssize_t size, i, klen
        cdef Py_ssize_t keys[MAX_KEYS]
        cdef Py_ssize_t values[MAX_KEYS]
        cdef uint8_t tag
        cdef _Layout last
        cdef const uint8_t* known = NULL
        cdef bint same
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
        # (most events have the layout of the last event of their kind, and kinds differ in their
        # number of keys: the last layout of this size is compared while the keys are scanned, and a
        # hash is taken only when it differs)
        last = <_Layout>self.by_size[size]
        same = last is not None
        if same:
            known = <const uint8_t*>PyBytes_AS_STRING(last.key_bytes)
        for i in range(size):
            if pos >= end or not (0xA0 <= p[pos] <= 0xBF):
                return None
            klen = 1 + (p[pos] - 0xA0)
            if pos + klen > end:
                return None
            if same and (last.offsets[i + 1] - last.offsets[i] != klen
                         or not _equal(p + pos, known + last.offsets[i], klen)):
                same = False
            keys[i] = pos
            pos += klen
            values[i] = pos
            if pos >= end:
                return None
            tag = p[pos]
            if tag == 0xCB or tag == 0xD3 or tag == 0xCF:   # the usual scalars, skipped here
                pos += 9
            elif tag <= 0x7F or tag >= 0xE0 or tag == 0xC0 or tag == 0xC2 or tag == 0xC3:
                pos += 1
            elif 0xA0 <= tag <= 0xBF:
                pos += 1 + (tag - 0xA0)
            elif (0x80 <= tag <= 0x8F or tag == 0xDE) and not inner:   # a map: checked when it is built
                pos = _skip(p, pos, end, 0)
                if pos < 0:
                    return None
            elif 0xDC <= tag <= 0xDF or 0x80 <= tag <= 0x9F or 0xC4 <= tag <= 0xC9 or 0xD4 <= tag <= 0xD8:
                return None   # an array, a map in a map, bin or ext: msgspec's
            else:
                pos = _skip(p, pos, end, 0)
                if pos < 0:
                    return None
        if pos > end:
            return None
        if same:
            return self._build(last, p, values, size, end, pos, stop)
        layout = self._layout(p, keys, size)
        if layout is None:
            return None
        self.by_size[size] = layout
        return self._build(<_Layout>layout, p, values, size, end, pos, stop)

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
                    if memcmp(p + keys[i], known + layout.offsets[i], klen) != 0:
                        break
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

    cdef object _build(self, _Layout layout, const uint8_t* p, Py_ssize_t* values, Py_ssize_t size,
                       Py_ssize_t end, Py_ssize_t end_pos, Py_ssize_t* stop):
        cdef dict d = PyDict_Copy(layout.template)
        cdef Py_ssize_t i, pos, slen, inner_stop
        cdef uint8_t tag
        cdef double f
        cdef float f32
        cdef uint64_t u, last_u = 0
        cdef object v, last, last_int = None
        for i in range(size):
            pos = values[i]
            tag = p[pos]
            if tag == 0xCF:   # (a time: a bar's open time is its "time" too, one int object for both)
                u = _be64(p + pos + 1)
                if last_int is not None and u == last_u:
                    v = last_int
                else:
                    v = last_int = PyLong_FromUnsignedLongLong(u)
                    last_u = u
            elif tag <= 0x7F:
                v = PyLong_FromLongLong(tag)
            elif tag >= 0xE0:
                v = PyLong_FromLongLong(<int64_t>tag - 0x100)
            elif tag == 0xCB:
                u = _be64(p + pos + 1)
                memcpy(&f, &u, 8)
                v = PyFloat_FromDouble(f)
            elif tag == 0xC0:
                v = None
            elif 0x80 <= tag <= 0x8F or tag == 0xDE:
                v = self._flat(p, pos, end, &inner_stop, True)
                if v is None:
                    return None
            elif tag == 0xC2:
                v = False
            elif tag == 0xC3:
                v = True
            elif tag == 0xCA:
                u = _be32(p + pos + 1)
                memcpy(&f32, &u, 4)
                v = PyFloat_FromDouble(<double>f32)
            elif tag == 0xCC:
                v = PyLong_FromLongLong(p[pos + 1])
            elif tag == 0xCD:
                v = PyLong_FromLongLong(_be16(p + pos + 1))
            elif tag == 0xCE:
                v = PyLong_FromLongLong(_be32(p + pos + 1))
            elif tag == 0xD0:
                v = PyLong_FromLongLong(<signed char>p[pos + 1])
            elif tag == 0xD1:
                v = PyLong_FromLongLong(<short>_be16(p + pos + 1))
            elif tag == 0xD2:
                v = PyLong_FromLongLong(<int>_be32(p + pos + 1))
            elif tag == 0xD3:
                v = PyLong_FromLongLong(<int64_t>_be64(p + pos + 1))
            else:   # a str (fixstr, str8, str16, str32)
                if 0xA0 <= tag <= 0xBF:
                    slen, pos = tag - 0xA0, pos + 1
                elif tag == 0xD9:
                    slen, pos = p[pos + 1], pos + 2
                elif tag == 0xDA:
                    slen, pos = _be16(p + pos + 1), pos + 3
                else:
                    slen, pos = _be32(p + pos + 1), pos + 5
                last = layout.last_str[i]   # (one tuple: its bytes and str always agree)
                if last is not None and PyBytes_GET_SIZE((<tuple>last)[0]) == slen \
                        and _equal(<const uint8_t*>PyBytes_AS_STRING((<tuple>last)[0]), p + pos, slen):
                    v = (<tuple>last)[1]
                else:
                    try:
                        v = PyUnicode_DecodeUTF8(<const char*>p + pos, slen, NULL)
                    except UnicodeDecodeError:
                        return None   # msgspec reports it
                    if slen <= 64:    # (short strs repeat: a symbol, a feed, an event type)
                        layout.last_str[i] = ((<const char*>p)[pos:pos + slen], v)
            PyDict_SetItem(d, layout.names[i], v)
        stop[0] = end_pos
        return d


cdef list _decode_all(bytes data, Py_ssize_t count):
    # msgspec decodes the block as an array of `count` values (and raises what is wrong with it).
    return _DECODER.decode(b"\xdd" + count.to_bytes(4, "big") + data)
