"""`Context`: the typed key/value store a strategy keeps across bars."""

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar

_Value = float | int | str | bool

class Context:
    """Typed key-value store a strategy keeps across bars (str keys; float, int, str or bool values).

    Behaves like a small dict; writing a non-str key or a value of another
    type raises TypeError naming the key and the type (the store is unchanged).
    """
    __hash__: ClassVar[None]  # type: ignore[assignment]
    def __init__(self) -> None: ...
    def set(self, key: str, value: _Value) -> None:
        """Store `value` (float, int, str or bool) under the str `key`."""
    def __setitem__(self, key: str, value: _Value, /) -> None: ...
    def get(self, key: str, default: Any = ...) -> Any:
        """The value stored under `key`, or `default` when absent."""
    def __getitem__(self, key: str, /) -> _Value: ...
    def delete(self, key: str) -> None:
        """Remove `key`; raise KeyError naming it when absent."""
    def __delitem__(self, key: str, /) -> None: ...
    def __contains__(self, key: object, /) -> bool: ...
    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[str]: ...
    def keys(self) -> Iterable[str]:
        """A read-only view of the keys."""
    def values(self) -> Iterable[_Value]:
        """A read-only view of the values."""
    def items(self) -> Iterable[tuple[str, _Value]]:
        """A read-only view of the (key, value) pairs."""
    def update(self, other: Mapping[str, _Value] | Iterable[tuple[str, _Value]] = ...,
               **kwargs: _Value) -> None:
        """Store several values; all are checked first, so a bad one stores none."""
    def clear(self) -> None:
        """Remove every key."""
    def to_dict(self) -> dict[str, _Value]:
        """A copy of the contents as a plain dict."""
    def __eq__(self, other: object, /) -> bool: ...
