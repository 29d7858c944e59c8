"""`synthpm data ...`: load, import, inspect and fetch into the point-in-time store."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from synthpm.cli.common import StoreOption, console
from synthpm.cli.common import store_at as _store
from synthpm.data.errors import SynthpmError
from synthpm.data.importers import KINDS, init_embedded, read_source
from synthpm.data.store import ImportReport, Store
from synthpm.data.validate import IsoDate

data_app = typer.Typer(help="The point-in-time store: load, import, inspect.", no_args_is_help=True)
fetch_app = typer.Typer(help="Live downloads (network; only when you ask).", no_args_is_help=True)
data_app.add_typer(fetch_app, name="fetch")


def _show_report(report: ImportReport) -> None:
    console.print(f"[bold]{report.kind} import[/] from {escape(report.source)}")
    table = Table()
    for col in ("table", "rows", "tickers"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for name, rows in report.rows.items():
        table.add_row(
            name, f"{rows:,}", f"{report.tickers.get(name, ''):,}" if name in report.tickers else ""
        )
    console.print(table)
    for key, value in report.notes.items():
        console.print(f"  {key.replace('_', ' ')}: {value:,}")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", soft_wrap=True)


@data_app.command("init")
def data_init(store: StoreOption = None) -> None:
    """Load the embedded default data: 20 US stocks + S&P 500, 1990-2022, sectors, VIX."""
    target = _store(store)
    started = time.perf_counter()
    with console.status("loading embedded default data (skfolio, arch)"):
        report = init_embedded(target)
    _show_report(report)
    console.print(f"store {target.path} ready in {time.perf_counter() - started:.1f}s")


@data_app.command("import")
def data_import(
    kind: Annotated[str, typer.Argument(help=f"one of: {', '.join(KINDS)}")],
    path: Annotated[Path, typer.Argument(help="file or folder to import")],
    store: StoreOption = None,
    strict: Annotated[
        bool,
        typer.Option(help="reject bars with high < low etc. instead of keeping them close-only"),
    ] = False,
    series: Annotated[str, typer.Option(help="market import: vix or index")] = "vix",
    ticker: Annotated[
        str | None, typer.Option(help="market import: take this ticker's rows from a long panel")
    ] = None,
    total_return: Annotated[
        bool,
        typer.Option(
            "--total-return", help="market import: the index includes dividends (an adjusted close)"
        ),
    ] = False,
    from_prices: Annotated[
        bool,
        typer.Option(
            "--from-prices",
            help="universe import: membership spells from a price file's own rows",
        ),
    ] = False,
) -> None:
    """Validate a source, then import it as one all-or-nothing transaction."""
    target = _store(store)
    started = time.perf_counter()
    if total_return and (kind != "market" or series != "index"):
        raise SynthpmError("--total-return applies to `market FILE --series index` only")
    if from_prices and kind != "universe":
        raise SynthpmError("--from-prices applies to `universe FILE` only")
    options: dict = {"strict": strict} if kind in ("csv", "parquet", "stooq") else {}
    if kind == "market":
        if series not in ("vix", "index"):
            raise SynthpmError(f"--series must be vix or index, not {series!r}")
        options = {"series": series, "ticker": ticker, "total_return": total_return}
    if kind == "universe":
        options = {"from_prices": from_prices}
    with console.status(f"reading and validating {path}"):
        batch = read_source(kind, path, store=target, **options)
    with console.status(
        f"writing {sum(len(f) for f in batch.frames.values()):,} rows to {target.path}"
    ):
        report = target.write(batch)
    _show_report(report)
    console.print(f"done in {time.perf_counter() - started:.1f}s (write {report.seconds:.1f}s)")


@data_app.command("info")
def data_info(
    store: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """Tickers, date ranges and row counts per table."""
    target = _store(store)
    info = target.info()
    covered = _coverage(target) if info.get("universe", {}).get("rows") else None
    if as_json:
        out = {"store": str(target.path), "tables": info}
        if covered is not None:
            out["universe_coverage"] = covered
        print(json.dumps(out, indent=2, default=str))
        return
    console.print(f"[bold]store[/] {escape(str(target.path))}")
    table = Table()
    for col in ("table", "rows", "tickers", "first", "last"):
        table.add_column(col, justify="right" if col in ("rows", "tickers") else "left")
    for name, entry in info.items():
        tickers = entry.get("tickers")
        table.add_row(
            name,
            f"{entry['rows']:,}",
            "" if tickers is None else f"{tickers:,}",
            str(entry.get("first") or ""),
            str(entry.get("last") or ""),
        )
    console.print(table)
    for kind, rows in info.get("market", {}).get("index_kinds", {}).items():
        console.print(f"  index kind {kind}: {rows:,} days")
    for source, span in info.get("market", {}).get("vix_sources", {}).items():
        console.print(
            f"  vix from {source}: {span['rows']:,} days, {span['first']} .. {span['last']}"
        )
    if covered is not None:
        _show_coverage(covered)


def _coverage(target: Store) -> dict:
    """Universe coverage by the stored prices; reads only (ticker, date) to stay cheap."""
    from synthpm.data.universe import coverage

    return coverage(target.universe(), target.prices(columns=["ticker", "date"]))


def _show_coverage(covered: dict) -> None:
    share = covered["share"]
    if share is None:
        console.print("  universe coverage: no member-days on the dates of the stored prices")
        return
    console.print(
        f"  universe coverage: {covered['priced_member_days']:,} of "
        f"{covered['member_days']:,} member-days have prices ({share:.1%})"
    )
    by_year = covered["by_year"].items()
    years = [f"{year} {v['share']:.0%}" for year, v in by_year if v["share"] is not None]
    if years:
        console.print(f"  by year: {', '.join(years)}", soft_wrap=True)
    unpriced = covered["unpriced_tickers"]
    if unpriced:
        shown = ", ".join(unpriced[:15]) + (" ..." if len(unpriced) > 15 else "")
        console.print(f"  {len(unpriced)} member ticker(s) without prices: {shown}", soft_wrap=True)


@fetch_app.command("prices")
def fetch_prices(
    tickers: Annotated[list[str], typer.Argument(help="tickers to download")],
    start: Annotated[IsoDate | None, typer.Option(help="first date, YYYY-MM-DD")] = None,
    end: Annotated[IsoDate | None, typer.Option(help="last date, YYYY-MM-DD")] = None,
    store: StoreOption = None,
) -> None:
    """Download adjusted daily prices from Yahoo (yfinance) and import them."""
    from synthpm.data.importers.live import yahoo_prices

    with console.status(f"downloading {len(tickers)} ticker(s) from Yahoo"):
        batch = yahoo_prices(tickers, start, end)
    _show_report(_store(store).write(batch))


@fetch_app.command("edgar")
def fetch_edgar_cmd(
    ciks: Annotated[list[str], typer.Argument(help="company CIKs, e.g. 320193 for Apple")],
    user_agent: Annotated[
        str,
        typer.Option(envvar="SYNTHPM_EDGAR_USER_AGENT", help="'Name email', required by the SEC"),
    ],
    out: Annotated[Path, typer.Option(help="folder for the JSON files")] = Path("edgar"),
    store: StoreOption = None,
) -> None:
    """Download EDGAR submissions (at most 10 requests/s) and import their 8-K and Form 4 events."""
    from synthpm.data.importers.live import fetch_edgar

    files = fetch_edgar(ciks, out, user_agent=user_agent)
    console.print(f"wrote {len(files)} file(s) to {out}")
    target = _store(store)
    _show_report(target.write(read_source("edgar", out, store=target)))
