"""Journal rows: written once per decision with everything known at its close, read back by
filters, and updated in place when outcomes become known.

The table is `journal` in the store (`synthpm.data.schema.JOURNAL`, whose comments define
each column); `accounts` holds the settings each paper book is replayed with. Every write
is one store transaction (`Store.write`): a shadow copy swapped in by an atomic rename,
under the store's writer lock, so a kill -9 mid-write leaves every committed row and no
half row, and two writing processes queue rather than lose each other's rows.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from synthpm.context import Context
from synthpm.data.schema import ACCOUNTS, JOURNAL
from synthpm.data.store import DateLike, ImportBatch, ImportReport, Store
from synthpm.dataset.prompt import render_prompt
from synthpm.limits import Limits
from synthpm.signals import Signal


def context_id(context_json: str) -> str:
    return hashlib.sha256(context_json.encode()).hexdigest()[:16]


def entry(
    context: Context,
    signal: Signal,
    *,
    source: str,
    account: str,
    limits: Limits,
    status: str,
    size: float = 0.0,
    reason: str = "",
    trigger: str | None = None,
    fills: Sequence[dict] = (),
) -> dict:
    """One journal row: the context and the prompt rendered from it (under `limits`, as the
    model read it: the same `render_prompt` for every source, so any entry can become
    training data), the signal, and the manager's outcome. Outcomes start empty."""
    shown = context.model_dump_json()
    return {
        "id": uuid.uuid4().hex,
        "created_at": datetime.now(),
        "source": source,
        "account": account,
        "ticker": context.ticker,
        "date": pd.Timestamp(context.date),
        "trigger": trigger or context.trigger,
        "context_id": context_id(shown),
        "context": shown,
        "prompt": render_prompt(context, limits),
        "signal": signal.model_dump_json(),
        "decision": signal.decision,
        "conviction": float(signal.conviction),
        "hold_days": int(signal.hold_duration_days),
        "status": status,
        "size": float(size),
        "reason": reason,
        "fills": json.dumps(list(fills), default=str),
        "notes": None,
    }


def write_entries(store: Store, rows: list[dict] | pd.DataFrame, source: str) -> ImportReport:
    """Append rows (or replace those with the same id) in one transaction."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    frame = frame.astype({"date": "datetime64[ns]"}) if len(frame) else frame
    return store.write(ImportBatch("journal", source, {JOURNAL.name: frame}))


def read_journal(
    store: Store,
    *,
    source: str | None = None,
    account: str | None = None,
    tickers: Sequence[str] | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    ids: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Journal rows matching every filter given, by (date, ticker, created_at); empty (with
    the table's columns) when nothing was journaled yet."""
    cols = list(columns or JOURNAL.columns)
    if not store.has_table(JOURNAL.name) or (ids is not None and not len(ids)):
        return pd.DataFrame({c: [] for c in cols}).astype(
            {"date": "datetime64[ns]"} if "date" in cols else {}
        )
    where, params = [], []
    if ids is not None:
        where.append("id IN (SELECT unnest(?))")
        params.append(list(ids))
    for column, value in (("source", source), ("account", account)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if tickers is not None:
        where.append("ticker IN (SELECT unnest(?))")
        params.append([t.upper() for t in tickers])
    if start is not None:
        where.append("date >= ?")
        params.append(pd.Timestamp(start).date())
    if end is not None:
        where.append("date <= ?")
        params.append(pd.Timestamp(end).date())
    quoted = ", ".join(f'"{c}"' for c in cols)
    sql = f"SELECT {quoted} FROM journal"
    if where:
        sql += " WHERE " + " AND ".join(where)
    frame = store.query(sql + " ORDER BY date, ticker, created_at", params)
    if "date" in frame:
        frame["date"] = pd.to_datetime(frame["date"])
    return frame


def with_updates(store: Store, updates: pd.DataFrame) -> pd.DataFrame:
    """The stored rows with the ids of `updates`, its other columns set from it: whole rows,
    ready to replace the stored ones (`write_entries`)."""
    if updates.empty:
        return read_journal(store, ids=[])
    current = read_journal(store, ids=list(updates["id"])).set_index("id")
    changed = updates.set_index("id")
    current.loc[changed.index, list(changed.columns)] = changed
    return current.reset_index()


def read_account(store: Store, name: str) -> dict | None:
    """An account's row (`config` parsed), None when there is none."""
    if not store.has_table(ACCOUNTS.name):
        return None
    found = store.query("SELECT * FROM accounts WHERE name = ?", [name])
    if found.empty:
        return None
    row = found.iloc[0].to_dict()
    row["config"] = json.loads(row["config"])
    return row


def account_row(name: str, source: str, start: DateLike, config_json: str) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "name": name,
                "source": source,
                "created_at": datetime.now(),
                "start": pd.Timestamp(start),
                "config": config_json,
            }
        ]
    )
