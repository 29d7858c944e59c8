"""Importers: each reads one kind of source into a validated `ImportBatch`.

`run_import` is the one entry point: parse and validate everything first, then write the
batch as a single all-or-nothing store transaction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args

from synthpm.data.errors import SynthpmError
from synthpm.data.store import ImportBatch, ImportReport, Store

Kind = Literal["stooq", "csv", "parquet", "edgar", "form4", "sectors", "market", "universe"]
KINDS: tuple[str, ...] = get_args(Kind)  # the one list every "choose from" names


def read_source(
    kind: str,
    path: str | Path,
    *,
    strict: bool = False,
    series: Literal["vix", "index"] = "vix",
    ticker: str | None = None,
    total_return: bool = False,
    from_prices: bool = False,
    store: Store | None = None,
) -> ImportBatch:
    """Parse and validate a source into a batch; nothing is written.

    `series`, `ticker` and `total_return` are for kind "market"; `from_prices` for kind
    "universe" (spells derived from a price file's own rows).
    """
    path = Path(path)
    if kind in ("csv", "parquet"):
        from synthpm.data.importers.panel import import_panel

        return import_panel(path, strict=strict, kind=kind)
    if kind == "stooq":
        from synthpm.data.importers.stooq import import_stooq

        return import_stooq(path, strict=strict)
    if kind == "edgar":
        from synthpm.data.importers.edgar import import_edgar

        known = store.companies() if store is not None and store.path.exists() else None
        return import_edgar(path, known_companies=known)
    if kind == "form4":
        from synthpm.data.importers.form4 import import_form4

        return import_form4(path)
    if kind == "sectors":
        from synthpm.data.importers.sectors import import_sectors

        return import_sectors(path)
    if kind == "market":
        from synthpm.data.importers.market import import_market

        return import_market(path, series=series, ticker=ticker, total_return=total_return)
    if kind == "universe":
        from synthpm.data.importers.universe import import_universe

        return import_universe(path, from_prices=from_prices)
    raise SynthpmError(f"unknown import kind {kind!r}; choose one of {', '.join(KINDS)}")


def run_import(store: Store, kind: str, path: str | Path, **options) -> ImportReport:
    """Validate a source, then store it in one transaction."""
    return store.write(read_source(kind, path, store=store, **options))


def init_embedded(store: Store) -> ImportReport:
    """Load the embedded default data (see `synthpm.data.embedded`) in one transaction."""
    from synthpm.data.embedded import embedded_batch

    return store.write(embedded_batch())
