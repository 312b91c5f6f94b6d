"""What every command module shares: the console they print to and ``--param NAME=VALUE`` parsing.

Below every concept (tradesim.cli and each package's own commands use it), so
a package's commands need not import `tradesim.cli`.
"""

from __future__ import annotations

import shutil
import sys

import click

__all__ = ["console", "parse_params"]


def console(stderr: bool = False):
    """A rich console; when output is not a terminal, wide enough that tables are not
    truncated (rich would fall back to 80 columns) and with no colour codes."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=max(shutil.get_terminal_size((200, 24)).columns, 200),
                   no_color=True, highlight=False)


def parse_params(values: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``("fast=12", "slow=26")`` -> ``{"fast": "12", "slow": "26"}`` (values stay text: the strategy
    converts them to its parameters' types).

    Raises
    ------
    click.BadParameter
        An item without ``=`` or with an empty name (``--param``).
    """
    params: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r}: expected name=value", param_hint="--param")
        params[name.strip()] = value.strip()
    return params
