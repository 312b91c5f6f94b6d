"""`Context`: the typed key/value store a strategy keeps across bars.

A `StateMachine` owns one and clears it on returns to IDLE (unless
`keep_context`); it lives apart from the machine because it is a store, not a
rule of the trading cycle.
"""


cdef class Context:
    """Typed key-value store a strategy keeps across bars (what it found while analyzing).

    Keys are str; values are float, int, str or bool only, so the store is
    always JSON-serializable and safe to hand to Lua. Behaves like a small
    dict: ``ctx[key]``, ``ctx[key] = v``, ``del ctx[key]``, ``key in ctx``,
    ``len(ctx)``, iteration over keys, plus `get`, `set`, `delete`, `items`,
    `clear`, `update` and `to_dict`.

    Raises
    ------
    TypeError
        On writing a non-str key or a value of another type, naming the key
        and the type (the store is unchanged).
    """

    def __cinit__(self):
        self._data = {}

    def set(self, key, value):
        """Store `value` (float, int, str or bool) under the str `key`."""
        check_item(key, value)
        self._data[key] = value

    def __setitem__(self, key, value):
        check_item(key, value)
        self._data[key] = value

    def get(self, key, default=None):
        """The value stored under `key`, or `default` when absent."""
        return self._data.get(key, default)

    def __getitem__(self, key):
        try:
            return self._data[key]
        except KeyError:
            raise KeyError(f"context has no key {key!r}") from None

    def delete(self, key):
        """Remove `key`; raise KeyError naming it when absent."""
        try:
            del self._data[key]
        except KeyError:
            raise KeyError(f"context has no key {key!r}") from None

    def __delitem__(self, key):
        self.delete(key)

    def __contains__(self, key):
        return key in self._data

    def __len__(self):
        return len(self._data)

    def __iter__(self):
        return iter(self._data)

    def keys(self):
        """A read-only view of the keys."""
        return self._data.keys()

    def values(self):
        """A read-only view of the values."""
        return self._data.values()

    def items(self):
        """A read-only view of the (key, value) pairs."""
        return self._data.items()

    def update(self, other=(), **kwargs):
        """Store several values; all are checked first, so a bad one stores none."""
        new = dict(other, **kwargs)
        for key, value in new.items():
            check_item(key, value)
        self._data.update(new)

    def clear(self):
        """Remove every key."""
        self._data.clear()

    def to_dict(self):
        """A copy of the contents as a plain dict."""
        return dict(self._data)

    def __eq__(self, other):
        if isinstance(other, Context):
            return self._data == (<Context>other)._data
        if isinstance(other, dict):
            return self._data == other
        return NotImplemented

    def __repr__(self):
        return f"Context({self._data!r})"


cdef int check_item(object key, object value) except -1:
    if not isinstance(key, str):
        raise TypeError(f"context key {key!r} has type {type(key).__name__}: keys must be str")
    if not isinstance(value, (float, int, str)):  # bool is an int
        raise TypeError(f"context[{key!r}]: value of type {type(value).__name__} is not allowed; "
                        "use float, int, str or bool")
    return 0
