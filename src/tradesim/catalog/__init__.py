"""Local catalog of exchange bars (Parquet by venue/symbol/interval/month) and its REST downloader.

See docs/catalog.md. `Catalog` stores and loads bars; `Downloader` fills it
from Binance's ``/api/v3/klines``; `resolve_bars` turns the command-line choice
"--data FILE" or "--symbol S --interval I --from --to" into what
`tradesim.backtest.Backtest` and the replay feed take.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tradesim.catalog.store import (
    CATALOG_ENV,
    Catalog,
    CatalogError,
    Coverage,
    Gap,
    Problem,
    default_root,
)
from tradesim.data import Bars

__all__ = ["CATALOG_ENV", "Catalog", "CatalogError", "Coverage", "Gap", "Problem", "SourceChoiceError",
           "default_root", "resolve_bars"]


class SourceChoiceError(CatalogError):
    """Both or neither of ``--data`` and ``--symbol`` were given (a usage error)."""


def resolve_bars(data: Sequence[str | Path] | None, symbols: Sequence[str] | None, interval: str | None,
                 start: Any = None, end: Any = None, catalog: str | Path | None = None) -> list[str | Path | Bars]:
    """The bars a command runs on: the `data` files as given, or `symbols` loaded from the catalog.

    Exactly one of `data` and `symbols` must be given. With `symbols`, each is
    loaded with `Catalog.load` for `interval` (default ``1m``) and
    ``start <= open time < end``.

    Parameters
    ----------
    data : sequence of paths, optional
        Bar files (``--data``); returned unchanged (the caller loads them).
    symbols : sequence of str, optional
        Symbols to take from the catalog (``--symbol``).
    interval : str, optional
        Binance interval name (``--interval``), ``1m`` when None.
    start, end : int or str, optional
        ms since epoch UTC or ISO-8601 dates (``--from``, ``--to``); open-ended when None.
    catalog : path, optional
        Catalog folder (``--catalog``); default ``$TRADESIM_CATALOG`` or ``~/.local/share/tradesim``.

    Returns
    -------
    list of path or Bars

    Raises
    ------
    SourceChoiceError
        Both or neither of `data` and `symbols`, or `catalog` with `data`.
    CatalogError
        A bad time, or no stored bars for a symbol in the range (says how to download them).
    """
    from tradesim.timeframes import parse_time

    if data and symbols:
        raise SourceChoiceError("give either --data FILE or --symbol SYMBOL (bars from the catalog), not both")
    if not data and not symbols:
        raise SourceChoiceError("give --data FILE, or --symbol SYMBOL [--interval 1m --from DATE --to DATE] "
                           "to take bars from the catalog (`tradesim download` fills it)")
    if data:
        if catalog is not None:
            raise SourceChoiceError("--catalog applies to --symbol; --data names files")
        return list(data)
    try:
        lo, hi = parse_time(start), parse_time(end)
    except ValueError as exc:
        raise CatalogError(f"--from/--to: {exc}") from None
    cat = Catalog(catalog)
    return [cat.load(s, interval or "1m", lo, hi) for s in symbols or ()]
