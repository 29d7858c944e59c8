"""What every command group shares: consoles, the --store option, table printing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from synthpm.data.store import Store, default_store_path

console = Console()
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
    for key, row in frame.iterrows():
        keys = key if isinstance(key, tuple) else (key,)
        cells = [f"{v:,.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        table.add_row(*map(str, keys), *cells)
    console.print(table)
