"""What every command group shares: consoles, the --store option, table printing."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from synthpm.data.store import Store, default_store_path

# A pipe or a file gets wide tables instead of rich's 80-column default, which would cut them.
console = Console() if sys.stdout.isatty() else Console(width=160)
err = Console(stderr=True)

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store",
        envvar="SYNTHPM_STORE",
        show_envvar=True,
        help="DuckDB store file [default: ./synthpm.duckdb]",
    ),
]


def store_at(path: Path | None) -> Store:
    return Store(path or default_store_path())


def print_frame(frame: pd.DataFrame, title: str | None = None, digits: int = 4) -> None:
    """A DataFrame as a rich table, index included, floats rounded."""
    table = Table(title=title)
    index_names = [n or "" for n in frame.index.names]
    for name in [*index_names, *map(str, frame.columns)]:
        table.add_column(name, justify="left" if name in index_names else "right")
    for key, *values in frame.itertuples(name=None):
        keys = key if isinstance(key, tuple) else (key,)
        table.add_row(*map(str, keys), *(_cell(v, digits) for v in values))
    console.print(table)


def _cell(value, digits: int) -> str:
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:,.{digits}f}"
    return str(value)
