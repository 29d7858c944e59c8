"""The point-in-time store: one DuckDB file holding the tables of `synthpm.data.schema`.

Writes. An import is one transaction in the strongest sense: it is applied to a shadow copy
of the database file, checkpointed, and swapped in with an atomic rename. A failure at any
point (bad data, a crash, kill -9) leaves the store file byte-for-byte as it was, which a
DuckDB rollback alone does not promise (large appends write blocks to the file before
commit). The copy costs well under a second for stores of this size. Rows replace stored
rows with the same natural key (or the table's `replace_by` columns), so re-importing a file
is idempotent. Writers take an exclusive lock on `<store>.lock` for the whole transaction, so
two processes writing at once (an import and the journal, two journal writers) queue instead
of one rename dropping the other's rows; readers take no lock and see the last committed file.

Reads. Every read opens the file read-only and returns a pandas DataFrame. Event, insider
and text reads take `as_of`: only rows whose `date_known` is on or before it, so code that
asks "what was known at t" cannot see later filings.

Schema changes. Every write creates missing tables and adds missing columns (a column added
to `synthpm.data.schema` appears in older stores on their next import, null in old rows);
reads of an older store fill absent columns with nulls and treat an absent table as empty.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import pandas as pd

from synthpm.data.errors import ConfigError, DataError, SynthpmError, UnknownTickerError
from synthpm.data.schema import (
    IMPORTS,
    MARKET,
    TABLES,
    TEXT_FACTORS,
    TEXT_QUOTES,
    TEXTS,
    UNIVERSE,
    Table,
)

DEFAULT_STORE = Path("synthpm.duckdb")
DateLike = str | date | datetime | pd.Timestamp


def default_store_path() -> Path:
    """`$SYNTHPM_STORE`, else ./synthpm.duckdb."""
    return Path(os.environ.get("SYNTHPM_STORE") or DEFAULT_STORE)


@dataclass
class ImportBatch:
    """Validated frames ready to store, one per table, with the importer's warnings."""

    kind: str
    source: str
    frames: dict[str, pd.DataFrame]
    warnings: list[str] = field(default_factory=list)
    notes: dict[str, int] = field(default_factory=dict)  # importer's own counts, for the report


@dataclass
class ImportReport:
    kind: str
    source: str
    rows: dict[str, int]
    tickers: dict[str, int]
    warnings: list[str]
    notes: dict[str, int]
    seconds: float


class Store:
    """A synthpm store at `path` (created on first write)."""

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_store_path()
        if self.path.is_dir():  # `--store ''` or `--store runs/`: name it, before DuckDB fails
            raise ConfigError(
                f"the store {str(self.path)!r} is a folder, not a store file "
                f"(e.g. {self.path / 'store.duckdb'})"
            )

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ------------------------------------------------------------------ writing
    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _writer_lock(self.path), self._shadow() as con:
            yield con

    @contextmanager
    def _shadow(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if _wal(self.path).exists():  # left by another client: fold it in before copying
            _connect(self.path).close()
        shadow = self.path.with_name(self.path.name + ".importing")
        _remove(shadow)
        if self.path.exists():
            shutil.copyfile(self.path, shadow)
        try:
            con = _connect(shadow)
        except SynthpmError:
            _remove(shadow)
            raise
        try:
            _create_or_migrate(con)
            yield con
            con.execute("CHECKPOINT")
            con.close()
            os.replace(shadow, self.path)
        except BaseException:
            con.close()
            _remove(shadow)
            raise

    def write(
        self,
        batch: ImportBatch,
        check: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
    ) -> ImportReport:
        """Store a validated batch as one all-or-nothing transaction. `check` runs first,
        inside it (under the writer lock, on the store as it is then): raising there writes
        nothing, so a condition read earlier cannot go stale between the read and the write."""
        started = time.perf_counter()
        rows, tickers, warnings = {}, {}, list(batch.warnings)
        with self._transaction() as con:
            if check is not None:
                check(con)
            for name, frame in batch.frames.items():
                table = TABLES[name]
                frame = _conform(frame, table)
                con.register("staged", frame)
                if table is MARKET:
                    _merge_columns(con, table, frame.columns)
                else:
                    _replace_by_key(con, table)
                if "ticker" in frame:
                    tickers[name] = int(frame["ticker"].nunique())
                    if name in ("events", "insider", "texts"):
                        warnings += _unpriced(con, name)
                con.unregister("staged")
                rows[name] = len(frame)
                con.execute(
                    f"INSERT INTO {IMPORTS.name} VALUES (?, ?, ?, ?, ?)",
                    [datetime.now(), batch.kind, batch.source, name, len(frame)],
                )
        return ImportReport(
            batch.kind,
            batch.source,
            rows,
            tickers,
            warnings,
            batch.notes,
            time.perf_counter() - started,
        )

    # ------------------------------------------------------------------ reading
    @contextmanager
    def _reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if not self.path.exists():
            raise SynthpmError(
                f"no store at {self.path}: run `synthpm data init` (embedded default data) "
                "or `synthpm data import ...` first, or point --store / SYNTHPM_STORE at one"
            )
        con = _connect(self.path, read_only=True)
        try:
            yield con
        finally:
            con.close()

    def query(self, sql: str, params: Sequence = ()) -> pd.DataFrame:
        """A read-only SQL query on the store (the file opened read-only: nothing it runs
        can write)."""
        with self._reader() as con:
            return con.execute(sql, list(params)).df()

    def has_table(self, name: str) -> bool:
        """Whether the store holds the table (an older store may lack a newer one)."""
        with self._reader() as con:
            return name in _stored_columns(con)

    def tickers(self) -> list[str]:
        """Tickers with prices, sorted."""
        return self.query("SELECT DISTINCT ticker FROM prices ORDER BY ticker")["ticker"].tolist()

    def _check_tickers(self, tickers: str | Iterable[str] | None) -> list[str] | None:
        if tickers is None:
            return None
        wanted = [tickers] if isinstance(tickers, str) else list(tickers)
        wanted = [t.strip().upper() for t in wanted]
        known = set(self.tickers())
        unknown = sorted(set(wanted) - known)
        if unknown:
            raise UnknownTickerError(unknown, len(known))
        return wanted

    def _select(
        self,
        table: str,
        *,
        tickers: str | Iterable[str] | None = None,
        date_column: str = "date",
        start: DateLike | None = None,
        end: DateLike | None = None,
        order: str = "ticker, date",
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        where, params = [], []
        wanted = self._check_tickers(tickers) if table == "prices" else _upper(tickers)
        if wanted is not None:
            where.append("ticker IN (SELECT unnest(?))")
            params.append(wanted)
        if start is not None:
            where.append(f"{date_column} >= ?")
            params.append(pd.Timestamp(start).date())
        if end is not None:
            where.append(f"{date_column} <= ?")
            params.append(pd.Timestamp(end).date())
        selected = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        sql = f"SELECT {selected} FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        frame = self.query(f"{sql} ORDER BY {order}", params)
        for col in TABLES[table].columns if columns is None else ():
            if col not in frame:  # a store written before the column existed
                frame[col] = None
        return _dates(frame)

    def prices(
        self,
        tickers: str | Iterable[str] | None = None,
        start: DateLike | None = None,
        end: DateLike | None = None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """Daily bars `ticker, date, open, high, low, close, volume`, start/end inclusive.

        `columns` reads only those (e.g. `["ticker", "date"]`, cheap for coverage counts).
        Unknown tickers raise `UnknownTickerError`.
        """
        return self._select("prices", tickers=tickers, start=start, end=end, columns=columns)

    def closes(
        self,
        tickers: str | Iterable[str] | None = None,
        start: DateLike | None = None,
        end: DateLike | None = None,
    ) -> pd.DataFrame:
        """Closes as a wide frame: one row per date, one column per ticker."""
        long = self.prices(tickers, start, end)
        return long.pivot(index="date", columns="ticker", values="close").rename_axis(None, axis=1)

    def _known_by(
        self, table: str, tickers, as_of, start, order: str = "ticker, date_known, source_id"
    ) -> pd.DataFrame:
        """Rows of a `date_known` table known by `as_of`, from `start` on."""
        return self._select(
            table,
            tickers=tickers,
            date_column="date_known",
            start=start,
            end=as_of,
            order=order,
        )

    def events(
        self,
        tickers: str | Iterable[str] | None = None,
        as_of: DateLike | None = None,
        start: DateLike | None = None,
    ) -> pd.DataFrame:
        """Filing events known by `as_of` (date_known <= as_of), from `start` on."""
        return self._known_by("events", tickers, as_of, start)

    def insider(
        self,
        tickers: str | Iterable[str] | None = None,
        as_of: DateLike | None = None,
        start: DateLike | None = None,
    ) -> pd.DataFrame:
        """Insider transactions known by `as_of` (date_known <= as_of), from `start` on."""
        return self._known_by("insider", tickers, as_of, start)

    def texts(
        self,
        tickers: str | Iterable[str] | None = None,
        as_of: DateLike | None = None,
        start: DateLike | None = None,
    ) -> pd.DataFrame:
        """Dated texts (posts, filing descriptions) known by `as_of` (date_known <= as_of),
        from `start` on, sorted by ticker and time; `time` is UTC. Empty when none are
        stored."""
        if not self.has_table(TEXTS.name):  # a store from before the table
            return _empty(TEXTS)
        return self._known_by("texts", tickers, as_of, start, order="ticker, time, text_id")

    def text_factors(
        self, tickers: str | Iterable[str] | None = None, end: DateLike | None = None
    ) -> pd.DataFrame:
        """Daily text factors, long (ticker, date, name, value), up to `end`; a value on a
        date read only texts known by its close (`synthpm.text.factors`)."""
        return self._derived(TEXT_FACTORS, tickers, end, "ticker, date, name")

    def text_quotes(
        self, tickers: str | Iterable[str] | None = None, end: DateLike | None = None
    ) -> pd.DataFrame:
        """Each date's quoted post per ticker, up to `end`."""
        return self._derived(TEXT_QUOTES, tickers, end, "ticker, date")

    def _derived(self, table: Table, tickers, end, order: str) -> pd.DataFrame:
        if not self.has_table(table.name):  # no text factors made, or an older store
            return _empty(table)
        return self._select(table.name, tickers=tickers, end=end, order=order)

    def market(self, start: DateLike | None = None, end: DateLike | None = None) -> pd.DataFrame:
        """Market context per date: index OHLC, VIX, and where each came from."""
        return self._select("market", start=start, end=end, order="date")

    def sectors(self) -> pd.DataFrame:
        """`ticker, sector` for every labelled ticker."""
        return self.query("SELECT * FROM sectors ORDER BY ticker")

    def universe(self, tickers: str | Iterable[str] | None = None) -> pd.DataFrame:
        """Membership spells `ticker, start, end` (datetime64; `end` exclusive, NaT while still
        a member), sorted by ticker and start; empty when no universe is stored.

        `synthpm.data.universe.membership` reads an empty frame as "everything is a member".
        A `tickers` filter that matches no stored spell also returns an empty frame, so to
        restrict a universe to some tickers, read it whole (about a thousand rows) and pass the
        tickers to `membership`, which makes tickers without spells non-members.
        """
        with self._reader() as con:
            if UNIVERSE.name not in _stored_columns(con):
                frame = pd.DataFrame(columns=list(UNIVERSE.columns))
            else:
                wanted = _upper(tickers)
                sql = 'SELECT ticker, "start", "end" FROM universe'
                if wanted is not None:
                    sql += " WHERE ticker IN (SELECT unnest(?))"
                sql += ' ORDER BY ticker, "start"'
                frame = con.execute(sql, [] if wanted is None else [wanted]).df()
        return frame.astype({"start": "datetime64[ns]", "end": "datetime64[ns]"})

    def companies(self) -> pd.DataFrame:
        """EDGAR filers seen by imports: CIK, primary ticker, name, SIC."""
        return self.query("SELECT * FROM companies ORDER BY cik")

    def info(self) -> dict[str, dict]:
        """Per table: rows, distinct tickers, first and last date; sources for market."""
        spans = {
            "prices": "date",
            "events": "date_known",
            "insider": "date_known",
            "sectors": None,
            "market": "date",
            "companies": None,
            "texts": "date_known",
        }
        out: dict[str, dict] = {}
        with self._reader() as con:
            columns = _stored_columns(con)
            present = set(columns)
            for name, date_col in spans.items():
                if name not in present:
                    continue
                cols = ["count(*) AS rows"]
                if "ticker" in TABLES[name].columns:
                    cols.append("count(DISTINCT ticker) AS tickers")
                if date_col:
                    cols += [f"min({date_col}) AS first", f"max({date_col}) AS last"]
                row = con.execute(f"SELECT {', '.join(cols)} FROM {name}").fetchone()
                entry = dict(zip([c.split(" AS ")[1] for c in cols], row, strict=True))
                out[name] = {
                    k: (v.isoformat() if isinstance(v, date) else v) for k, v in entry.items()
                }
            if UNIVERSE.name in present:
                out["universe"] = _universe_info(con)
            if "market" in columns and "index_kind" in columns["market"]:
                kinds = con.execute(
                    "SELECT coalesce(index_kind, 'unknown'), count(*) FROM market "
                    "WHERE index_close IS NOT NULL GROUP BY 1 ORDER BY 1"
                ).fetchall()
                out["market"]["index_kinds"] = dict(kinds)
            if "market" in present:
                sources = con.execute(
                    "SELECT vix_source, count(*), min(date), max(date) FROM market "
                    "WHERE vix IS NOT NULL GROUP BY 1 ORDER BY 3"
                ).fetchall()
                out["market"]["vix_sources"] = {
                    s: {"rows": n, "first": a.isoformat(), "last": b.isoformat()}
                    for s, n, a, b in sources
                }
        return out


def open_store(path: str | os.PathLike | None = None) -> Store:
    """The store at `path`, `$SYNTHPM_STORE` or ./synthpm.duckdb."""
    return Store(path)


# ---------------------------------------------------------------------- helpers
def _connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """DuckDB's connection, or an error naming the file when it is not a DuckDB store (the
    shadow copy names the store it was copied from)."""
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        store = str(path).removesuffix(".importing")
        raise DataError(
            f"not a synthpm store (DuckDB cannot open it: {exc})", source=store
        ) from None


@contextmanager
def _writer_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `<store>.lock`; the kernel drops it when the holder
    dies, kill -9 included, so a crashed writer never blocks the next."""
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    _wal(path).unlink(missing_ok=True)


def _upper(tickers: str | Iterable[str] | None) -> list[str] | None:
    if tickers is None:
        return None
    return [t.strip().upper() for t in ([tickers] if isinstance(tickers, str) else tickers)]


def _conform(frame: pd.DataFrame, table: Table) -> pd.DataFrame:
    """The frame's table columns in storage order; bookkeeping columns dropped."""
    unknown = [c for c in frame.columns if c not in table.columns and not c.startswith("_")]
    if unknown:
        raise SynthpmError(f"internal: columns {unknown} are not in table {table.name}")
    cols = [c for c in table.columns if c in frame.columns]
    if table is not MARKET:  # absent columns are null; market merges only what it is given
        missing = [c for c in table.columns if c not in frame.columns]
        frame = frame.assign(**{c: None for c in missing})
        cols = list(table.columns)
    return frame[cols]


def _stored_columns(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Stored tables and their columns (a store written by an older version may lack some)."""
    rows = con.execute("SELECT table_name, column_name FROM duckdb_columns()").fetchall()
    out: dict[str, set[str]] = {}
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    return out


def _create_or_migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Create missing tables and add the columns an older store lacks (null in old rows)."""
    stored = _stored_columns(con)
    for table in TABLES.values():
        if table.name not in stored:
            con.execute(table.ddl())
            continue
        for column, kind in table.columns.items():
            if column not in stored[table.name]:
                con.execute(f'ALTER TABLE {table.name} ADD COLUMN "{column}" {kind}')


def _replace_by_key(con: duckdb.DuckDBPyConnection, table: Table) -> None:
    """Delete the stored rows that share the table's `replace_by` (else its key) with a
    staged row, then insert the staged rows."""
    key = table.replace_by or table.key
    if key:
        match = " AND ".join(f'{table.name}."{k}" = staged."{k}"' for k in key)
        con.execute(f"DELETE FROM {table.name} USING staged WHERE {match}")
    con.execute(f"INSERT INTO {table.name} BY NAME SELECT * FROM staged")


def _merge_columns(con: duckdb.DuckDBPyConnection, table: Table, columns: Iterable[str]) -> None:
    """Upsert by key, touching only the given columns (a VIX file keeps the stored index)."""
    values = [c for c in columns if c not in table.key]
    key = " AND ".join(f'{table.name}."{k}" = staged."{k}"' for k in table.key)
    if values:
        sets = ", ".join(f'"{c}" = staged."{c}"' for c in values)
        con.execute(f"UPDATE {table.name} SET {sets} FROM staged WHERE {key}")
    con.execute(
        f"INSERT INTO {table.name} BY NAME SELECT * FROM staged "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table.name} WHERE {key})"
    )


def _universe_info(con: duckdb.DuckDBPyConnection) -> dict:
    """Spells, tickers, first start, last change (a start or an end), spells still open."""
    rows, tickers, first, last, current = con.execute(
        'SELECT count(*), count(DISTINCT ticker), min("start"), '
        'greatest(max("start"), max("end")), count(*) FILTER (WHERE "end" IS NULL) '
        "FROM universe"
    ).fetchone()
    iso = [d.isoformat() if isinstance(d, date) else d for d in (first, last)]
    return {
        "rows": rows,
        "tickers": tickers,
        "first": iso[0],
        "last": iso[1],
        "open_spells": current,
    }


def _unpriced(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    rows = con.execute(
        "SELECT ticker, count(*) FROM staged "
        "WHERE ticker NOT IN (SELECT DISTINCT ticker FROM prices) "
        "GROUP BY 1 ORDER BY 2 DESC"
    ).fetchall()
    if not rows:
        return []
    total = sum(n for _, n in rows)
    shown = ", ".join(f"{t} ({n})" for t, n in rows[:10])
    return [
        f"{total} {name} row(s) for {len(rows)} ticker(s) with no prices in the store "
        f"(kept; import their prices to use them): {shown}{' ...' if len(rows) > 10 else ''}"
    ]


def _empty(table: Table) -> pd.DataFrame:
    """A table's columns with no rows, typed as its reads are."""
    stamps = {c: "datetime64[us]" for c, kind in table.columns.items() if kind == "TIMESTAMP"}
    return _dates(pd.DataFrame(columns=list(table.columns)).astype(stamps))


def _dates(df: pd.DataFrame) -> pd.DataFrame:
    """DATE columns as datetime64 (DuckDB may hand back python dates)."""
    for col in ("date", "date_known", "filing_date", "transaction_date"):
        if col in df and not pd.api.types.is_datetime64_any_dtype(df[col]):
            df[col] = pd.to_datetime(df[col])
    return df
