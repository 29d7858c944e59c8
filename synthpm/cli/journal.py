"""`synthpm decide` and `synthpm journal ...`: the live loop and the trading journal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.markup import escape

from synthpm.backtest.broker import Broker
from synthpm.backtest.engine import BacktestConfig
from synthpm.backtest.run import model_dates
from synthpm.cli.backtest import _limits, source_of, strategy_named
from synthpm.cli.common import StoreOption, console, options, print_frame, store_at
from synthpm.data.errors import ConfigError, SynthpmError
from synthpm.data.validate import IsoDate, date_option
from synthpm.folders import write_atomic
from synthpm.journal import stats
from synthpm.journal.human import add_entry, import_trades
from synthpm.journal.live import as_of, decide, parse_book, write_decided
from synthpm.journal.outcomes import update_journal
from synthpm.journal.records import read_account, read_journal, with_updates, write_entries

journal_app = typer.Typer(help="The trading journal: entries, outcomes, statistics, export.")

Forecasts = Annotated[
    Path, typer.Option(help="a `forecast train` folder: its saved fold models forecast D")
]


def read_book(path: Path, market, config: BacktestConfig) -> Broker:
    """`--book`: a JSON file of the book (`journal.live.parse_book`)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SynthpmError(f"{path}: not a book ({exc}); see `synthpm decide --help`") from exc
    return parse_book(doc, market, config, str(path))


def decide_command(
    *,
    date: Annotated[IsoDate, typer.Option(help="the decision date (YYYY-MM-DD), a stored bar")],
    strategy: Annotated[str, typer.Option(help="lm or a baseline's name")] = "lm",
    model: Annotated[Path, typer.Option(help="the lm strategy's model folder")] = Path("runs/lm"),
    param: Annotated[list[str] | None, typer.Option(help="STRATEGY.KEY=VALUE")] = None,
    forecasts: Forecasts = Path("runs/forecast"),
    store: StoreOption = None,
    account: Annotated[str, typer.Option(help="the paper account the journal replays")] = "paper",
    book: Annotated[
        Path | None,
        typer.Option(
            help='decide on this book instead of the account\'s: JSON {"cash": 1e5, '
            '"positions": [{"ticker", "shares", "cost_basis", "entry_date"}]}'
        ),
    ] = None,
    config: Annotated[
        BacktestConfig,
        options("initial_cash", "commission_bps", "slippage_bps", "idle_cash", "fill"),
    ],
    max_positions: Annotated[int | None, typer.Option(help="portfolio limit")] = None,
    dry_run: Annotated[bool, typer.Option(help="print, journal nothing")] = False,
    allow_in_sample: Annotated[
        bool, typer.Option(help="let the lm decide on a date its model trained on (noted)")
    ] = False,
) -> None:
    """Decide on one date from what the store knows at its close; journal the decisions.

    The account's book is the replay of its journal (its first decide fixes its cash, costs
    and limits); the orders printed fill at the next bar. The lm writes its whole answer,
    reasoning included, unless `--param lm.mode=signal`."""
    date = date_option(date)
    target = store_at(store)
    if not any(p.startswith("lm.mode=") for p in param or []):  # one date: read by a person
        param = [*(param or []), "lm.mode=full"]
    chosen = strategy_named(strategy, param, model)
    sample = model_dates(chosen, date, allow_in_sample)  # refuses a model's own dates
    config = config.model_copy(update={"limits": _limits([chosen], max_positions)})
    with console.status(f"reading {target.path} as of {date}"):
        today = as_of(target, date, forecasts)
    broker = None
    if book is not None:
        broker = read_book(book, today.market, config)
    source = source_of(chosen, model)
    known = read_account(target, account) if book is None else None
    if known is not None:
        console.print(
            f"account {account!r} (from {known['start'].date()}): its own cash, costs and "
            "limits, fixed by its first decide"
        )
    decided = decide(
        target, chosen, today, source=source, account=account, config=config, book=broker
    )
    if not decided.rows:
        console.print(f"{today.date.date()}: no decision points (not a review day, no filings)")
        return
    if sample and sample["in_sample"]:
        for row in decided.rows:
            row["notes"] = sample["note"]
        console.print(sample["note"])
    frame = pd.DataFrame(decided.rows)
    acted = frame[frame["decision"] != "SKIP"]
    shown = acted[["ticker", "decision", "conviction", "status", "size", "reason"]]
    print_frame(shown.set_index("ticker"), f"{source} on {today.date.date()}: signals acted on")
    for row in acted.itertuples():
        reasoning = escape(json.loads(row.signal)["reasoning"])  # model text, not markup
        console.print(f"[bold]{row.ticker}[/] {row.decision}: {reasoning}")
    if len(decided.orders):
        print_frame(decided.orders.set_index("ticker"), "orders for the next bar")
    skipped = len(frame) - len(acted)
    console.print(f"{len(frame)} decisions ({skipped} SKIP); account {account!r}")
    if dry_run:
        console.print("dry run: nothing journaled")
        return
    written = write_decided(target, decided, account, source, config, book is not None)
    console.print(f"journaled {written} entries in {target.path}")


@journal_app.command("add")
def journal_add(
    ticker: Annotated[str, typer.Option()],
    date: Annotated[IsoDate, typer.Option()],
    decision: Annotated[str, typer.Option(help="BUY, SELL or SKIP")],
    conviction: Annotated[float, typer.Option(min=0.0, max=1.0)],
    rationale: Annotated[str, typer.Option()] = "",
    name: Annotated[str, typer.Option(help="who decided (source human:<name>)")] = "me",
    hold_days: Annotated[int, typer.Option(min=1, max=365)] = 30,
    forecasts: Annotated[Path | None, typer.Option(help="forecast run for the context")] = None,
    store: StoreOption = None,
) -> None:
    """Journal a person's decision, with the context the store gives its date."""
    date = date_option(date)
    row = add_entry(
        store_at(store), ticker=ticker, date=date, decision=decision, conviction=conviction,
        rationale=rationale, name=name, hold_days=hold_days, forecasts=forecasts,
    )  # fmt: skip
    console.print(f"journaled {row['id']}: {row['source']} {row['decision']} {row['ticker']}")


@journal_app.command("import")
def journal_import(
    path: Annotated[Path, typer.Argument(help="trades CSV/Parquet (see docs/usage.md)")],
    name: Annotated[str, typer.Option(help="who traded (source human:<name>)")] = "me",
    forecasts: Annotated[Path | None, typer.Option(help="forecast run for the context")] = None,
    store: StoreOption = None,
) -> None:
    """Journal a file of a person's trades; a bad file writes nothing."""
    n = import_trades(store_at(store), path, name, forecasts)
    console.print(f"journaled {n} trades from {path} as human:{name}")


@journal_app.command("note")
def journal_note(
    entry_id: Annotated[str, typer.Argument(help="the entry's id (journal show --ids)")],
    text: Annotated[str, typer.Argument(help="the note; replaces the entry's note")],
    store: StoreOption = None,
) -> None:
    """Write a free-text note on an entry (the rest of it is never edited)."""
    target = store_at(store)
    found = read_journal(target, ids=[entry_id], columns=["id"])
    if found.empty:
        raise ConfigError(f"no journal entry with id {entry_id!r} in {target.path}")
    write_entries(target, with_updates(target, pd.DataFrame({"id": [entry_id], "notes": [text]})),
                  "journal note")  # fmt: skip
    console.print(f"noted {entry_id}")


@journal_app.command("update")
def journal_update(store: StoreOption = None) -> None:
    """Fill in the outcomes (excess returns, fills, realised P&L) the store now allows."""
    counts = update_journal(store_at(store))
    console.print(f"{counts['updated']:,} of {counts['rows']:,} entries updated")


@journal_app.command("show")
def journal_show(
    source: Annotated[str | None, typer.Option()] = None,
    account: Annotated[str | None, typer.Option()] = None,
    ticker: Annotated[str | None, typer.Option()] = None,
    since: Annotated[IsoDate | None, typer.Option(help="first date")] = None,
    last: Annotated[int, typer.Option(help="rows to print")] = 30,
    ids: Annotated[bool, typer.Option(help="show the entries' ids")] = False,
    store: StoreOption = None,
) -> None:
    """The latest entries, filtered."""
    rows = read_journal(
        store_at(store), source=source, account=account,
        tickers=[ticker] if ticker else None, start=since,
    )  # fmt: skip
    columns = ["date", "ticker", "source", "decision", "conviction", "status", "reason",
               "excess_21d", "pnl", "notes", *(["id"] if ids else [])]  # fmt: skip
    print_frame(rows[columns].tail(last).set_index("date"), f"journal: {len(rows):,} entries")


@journal_app.command("stats")
def journal_stats(
    source: Annotated[str | None, typer.Option()] = None,
    out: Annotated[Path | None, typer.Option(help="also write the tables as CSV here")] = None,
    store: StoreOption = None,
) -> None:
    """Per source: hit rate, the conviction's reliability, outcomes by reason."""
    rows = read_journal(store_at(store), source=source)
    if rows.empty:
        raise ConfigError("the journal is empty" + (f" for source {source!r}" if source else ""))
    tables = {
        "hit_rates": stats.hit_rates(rows),
        "reliability": stats.reliability(rows),
        "by_reason": stats.by_reason(rows),
    }
    titles = {
        "hit_rates": "hit rate (21 trading days, against the benchmark)",
        "reliability": "calibration: conviction against the share that beat the benchmark",
        "by_reason": "decisions by the manager's status and reason",
    }
    for name, table in tables.items():
        print_frame(table, titles[name], 3)
        if out:
            write_atomic(out / f"{name}.csv", table.to_csv())


@journal_app.command("export")
def journal_export(
    out: Annotated[Path, typer.Option(help="dataset folder to write")],
    relabel: Annotated[str, typer.Option(help="none (as taken) or hindsight")] = "none",
    source: Annotated[str | None, typer.Option()] = None,
    account: Annotated[str | None, typer.Option()] = None,
    store: StoreOption = None,
) -> None:
    """Journal entries as training conversations, in the dataset's format and splits."""
    from synthpm.journal.export import export_conversations

    if relabel not in ("none", "hindsight"):
        raise ConfigError(f"--relabel must be none or hindsight, not {relabel!r}")
    found = export_conversations(
        store_at(store), out, relabel=relabel, source=source, account=account, log=console.print
    )
    console.print(json.dumps(found, indent=1, default=str))
