"""A session's manifest: what the run was (version, config, strategies, data, seeds) and how it ended.

The manifest is ``manifest.json`` beside the event log (``log/``) in the
session's folder. It is the only place, with the live feeds' receive times,
that holds wall-clock times, so that two runs of one backtest write
byte-identical logs (docs/sessions.md).

Layout (format 1)::

    {"format": 1, "kind": "backtest" | "run", "id": ..., "tradesim": "0.1.0",
     "created": "2026-12-04T06:35:00Z", "command": [...argv...],
     "config": {...},                           # execution, window size, feeds ...
     "runners": [{"key", "symbol", "strategy", "script", "sha256", "params",
                  "execution", "window_size", "feed", "options"}],
     "strategies": {sha256: source text},       # every script any runner ran
     "data": [{"symbol", "bars", "first", "last"}],   # a backtest's bars per symbol
     "files": [{"path", "sha256"}],                   # input files
     "seeds": {...},
     "status": "recording" | "completed" | "failed" | "interrupted",
     "ended": "...", "result": {...}, "log": {...writer stats...}, "error": "..."}
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "LOG_DIR", "MANIFEST_NAME", "ManifestError", "file_sha256", "load_manifest",
           "write_manifest"]

#: 3: a live ``bar`` event has ``bid`` and ``ask`` only when they are known (docs/sessions.md).
FORMAT = 3
#: Formats this version reads (1: every outcome its own event; 2: a backtest's outcomes are logged as
#: one ``outcomes`` event per chunk, a live bar's bid and ask always, NaN when unknown).
READABLE_FORMATS = (1, 2, 3)
MANIFEST_NAME = "manifest.json"
LOG_DIR = "log"


class ManifestError(ValueError):
    """A session folder has no readable manifest."""


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path, manifest: dict[str, Any], *, fsync: bool = True) -> None:
    """Write ``manifest.json`` atomically (temporary file, fsync, rename, fsync of the folder).

    `fsync` False (a log written with ``fsync="never"``: a backtest) skips both fsyncs: the
    rename keeps it atomic for a process crash, and after a power loss the run is redone.
    """
    tmp = folder / (MANIFEST_NAME + ".tmp")
    data = json.dumps(manifest, indent=1, sort_keys=False, allow_nan=False, default=str).encode()
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())
    os.replace(tmp, folder / MANIFEST_NAME)
    if not fsync:
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of the session in `folder`.

    Raises
    ------
    ManifestError
        No ``manifest.json``, or it is not a format this version reads.
    """
    path = Path(folder) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ManifestError(f"{folder}: not a recorded session (no {MANIFEST_NAME})") from None
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") not in READABLE_FORMATS:
        raise ManifestError(f"{path}: format {manifest.get('format') if isinstance(manifest, dict) else '?'!r}"
                            f" is not one of {READABLE_FORMATS}")
    return manifest
