"""The store's tables, defined once.

Every table is declared here with its columns, DuckDB types, natural key and non-null
columns; the store creates tables, validation checks frames and imports replace rows by key
(or by `replace_by` where a table names it) from these definitions, so a column is added in
one place.

Point in time: a price row is known at the close of its `date`; an event, insider or text row
is known from `date_known`, the first trading day the market could act on it (see
`synthpm.data.calendar`). Readers filter on those columns, never on filing, report or post
times.
A universe row is a membership spell: the ticker is a member from `start` until the day
before `end`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, str]  # column -> DuckDB type, in storage order
    key: tuple[str, ...]  # natural key: an import replaces stored rows with the same key
    required: tuple[str, ...]  # columns that may never be null
    # The columns an import replaces stored rows by, where not `key`: every stored row that
    # shares these values with an imported row goes (a ticker's universe spells as a set).
    replace_by: tuple[str, ...] | None = None

    def ddl(self) -> str:
        # Quoted: `end` (universe) is a reserved word in DuckDB.
        cols = ", ".join(f'"{c}" {t}' for c, t in self.columns.items())
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({cols})"


PRICES = Table(
    "prices",
    {
        "ticker": "VARCHAR",
        "date": "DATE",
        "open": "DOUBLE",
        "high": "DOUBLE",
        "low": "DOUBLE",
        "close": "DOUBLE",
        "volume": "DOUBLE",
    },
    key=("ticker", "date"),
    # open/high/low/volume may be null: close-only sources (adjusted closes, wide panels)
    # are common, and a bar whose range contradicts itself is kept as close-only.
    required=("ticker", "date", "close"),
)

EVENTS = Table(
    "events",
    {
        "ticker": "VARCHAR",
        "cik": "VARCHAR",
        "date_known": "DATE",
        "filing_date": "DATE",
        "form": "VARCHAR",
        "item": "VARCHAR",  # 8-K item number ("2.02"); null for forms without items
        "event_type": "VARCHAR",  # taxonomy name, see synthpm.data.taxonomy
        "detail": "VARCHAR",
        "source_id": "VARCHAR",  # accession number, plus "#item" for 8-K items
    },
    key=("ticker", "source_id"),
    required=("ticker", "date_known", "form", "event_type", "source_id"),
)

INSIDER = Table(
    "insider",
    {
        "ticker": "VARCHAR",
        "date_known": "DATE",
        "transaction_date": "DATE",
        "owner": "VARCHAR",
        "owner_cik": "VARCHAR",
        "role": "VARCHAR",
        "code": "VARCHAR",  # Form 4 transaction code: P buy, S sale, A award, M exercise, F tax
        "shares": "DOUBLE",
        "price": "DOUBLE",
        "value": "DOUBLE",  # shares x price; null when the price is unknown
        "shares_after": "DOUBLE",
        "source_id": "VARCHAR",
    },
    key=("ticker", "source_id"),
    required=("ticker", "date_known", "transaction_date", "code", "source_id"),
)

SECTORS = Table(
    "sectors",
    {"ticker": "VARCHAR", "sector": "VARCHAR"},
    key=("ticker",),
    required=("ticker", "sector"),
)

MARKET = Table(
    "market",
    {
        "date": "DATE",
        "index_open": "DOUBLE",
        "index_high": "DOUBLE",
        "index_low": "DOUBLE",
        "index_close": "DOUBLE",
        "vix": "DOUBLE",
        # Where each value came from, per row, so a proxy is never mistaken for the real
        # series: e.g. "skfolio:SP500", "arch:vix", "proxy:realised_vol_21d".
        "index_source": "VARCHAR",
        "vix_source": "VARCHAR",
        # "price" or "total_return": whether the stored index includes dividends. A benchmark
        # of dividend-adjusted stock returns must be compared with a total-return index.
        "index_kind": "VARCHAR",
    },
    key=("date",),
    required=("date",),
)

UNIVERSE = Table(
    "universe",
    {"ticker": "VARCHAR", "start": "DATE", "end": "DATE"},
    key=("ticker", "start"),
    # `end` is exclusive and null while the ticker is still a member: the universe on date t
    # is the tickers with start <= t < end (see synthpm.data.universe).
    required=("ticker", "start"),
    # A ticker's spells are replaced as a set: replacing by (ticker, start) alone could keep
    # an old spell that overlaps a corrected one.
    replace_by=("ticker",),
)

# Dated text about a ticker: posts, filing descriptions (`synthpm.data.importers.text`).
TEXTS = Table(
    "texts",
    {
        "ticker": "VARCHAR",
        "time": "TIMESTAMP",  # when it was posted, UTC (stored without a zone)
        "date_known": "DATE",  # first session the market could act on it (16:00 New York)
        "source": "VARCHAR",  # e.g. "stocknet", "8-K"
        "text": "VARCHAR",
        # sha256 of ticker, time, source, author and text, 16 hex digits: a re-import replaces
        "text_id": "VARCHAR",
        "author": "VARCHAR",  # a user id where the source has one; null otherwise
    },
    key=("ticker", "text_id"),
    required=("ticker", "time", "date_known", "source", "text", "text_id"),
)

# Daily factors made from the texts (`synthpm.text.factors`), long: concepts are a user's
# choice. Derived data, replaced per ticker by `synthpm text factors`; a value on `date`
# reads only texts known by its close.
TEXT_FACTORS = Table(
    "text_factors",
    {"ticker": "VARCHAR", "date": "DATE", "name": "VARCHAR", "value": "DOUBLE"},
    key=("ticker", "date", "name"),
    required=("ticker", "date", "name", "value"),
    replace_by=("ticker",),
)

# Each day's most representative post of the window, quoted in the prompt's SOCIAL section.
TEXT_QUOTES = Table(
    "text_quotes",
    {
        "ticker": "VARCHAR",
        "date": "DATE",
        "date_known": "DATE",  # the quoted text's
        "text_id": "VARCHAR",
        "text": "VARCHAR",  # one line, cut to the configured length
    },
    key=("ticker", "date"),
    required=("ticker", "date", "date_known", "text_id", "text"),
    replace_by=("ticker",),
)

COMPANIES = Table(
    "companies",
    {
        "cik": "VARCHAR",
        "ticker": "VARCHAR",  # primary (first listed) ticker; null for filers without one
        "name": "VARCHAR",
        "sic": "VARCHAR",
        "sic_description": "VARCHAR",
        "tickers": "VARCHAR",  # every listed ticker, comma separated
    },
    key=("cik",),
    required=("cik",),
)

IMPORTS = Table(
    "imports",
    {
        "imported_at": "TIMESTAMP",
        "kind": "VARCHAR",
        "source": "VARCHAR",
        "table_name": "VARCHAR",
        "rows": "BIGINT",
    },
    key=(),
    required=("imported_at", "kind", "table_name", "rows"),
)

# The trading journal (`synthpm.journal`): one row per decision by any source, written with
# everything known at the decision, its outcomes filled in once the market reveals them.
JOURNAL = Table(
    "journal",
    {
        "id": "VARCHAR",  # uuid4 hex
        "created_at": "TIMESTAMP",
        "source": "VARCHAR",  # "lm:<model>@<weights hash>", a strategy's name, "human:<name>"
        "account": "VARCHAR",  # the book it was decided in (a paper account, a backtest run)
        "ticker": "VARCHAR",
        "date": "DATE",  # decided at this date's close; orders fill at the next bar
        "trigger": "VARCHAR",  # scheduled | filing | human
        "context_id": "VARCHAR",  # sha256 of `context`, 16 hex digits
        "context": "VARCHAR",  # the `Context` as JSON, its portfolio state included
        "prompt": "VARCHAR",  # the user prompt exactly as rendered for the model
        "signal": "VARCHAR",  # the `Signal` as JSON
        "decision": "VARCHAR",  # BUY | SELL | SKIP (the signal's, for queries)
        "conviction": "DOUBLE",
        "hold_days": "INTEGER",
        "status": "VARCHAR",  # the manager's: executed | resized | rejected | skipped | human
        "size": "DOUBLE",  # dollars at the decision close
        "reason": "VARCHAR",
        "fills": "VARCHAR",  # JSON list of the fills the decision's order got
        "excess_5d": "DOUBLE",  # outcomes: excess return over the benchmark, from the close
        "excess_21d": "DOUBLE",  # of the next bar (the fill) over 5/21/63 trading days
        "excess_63d": "DOUBLE",
        "pnl": "DOUBLE",  # realised P&L of the position the decision opened (or closed)
        "updated_at": "TIMESTAMP",  # when outcomes were last filled in
        "notes": "VARCHAR",
    },
    key=("id",),
    required=("id", "created_at", "source", "account", "ticker", "date", "decision"),
)

# A journal account: the settings its book is replayed with (`synthpm.journal.live`).
ACCOUNTS = Table(
    "accounts",
    {
        "name": "VARCHAR",
        "source": "VARCHAR",
        "created_at": "TIMESTAMP",
        "start": "DATE",  # its first decision date
        "config": "VARCHAR",  # the `BacktestConfig` as JSON: cash, costs, limits
    },
    key=("name",),
    required=("name", "source", "created_at", "start", "config"),
)

# A bearer token of the HTTP service (`synthpm serve token`): only its sha256 is stored, so a
# copy of the store gives no one access.
TOKENS = Table(
    "tokens",
    {
        "name": "VARCHAR",
        "hash": "VARCHAR",  # sha256 hex of the token
        "created_at": "TIMESTAMP",
        "revoked_at": "TIMESTAMP",  # null while the token is valid
    },
    key=("name",),
    required=("name", "hash", "created_at"),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        PRICES, EVENTS, INSIDER, SECTORS, MARKET, UNIVERSE, COMPANIES, IMPORTS, JOURNAL, ACCOUNTS,
        TOKENS, TEXTS, TEXT_FACTORS, TEXT_QUOTES,
    )
}  # fmt: skip
