"""Dated text about a ticker (posts, filing descriptions) into the `texts` table.

A file (.csv, .tsv, .parquet, .jsonl or .ndjson) has a row per text: `ticker`, `time`
(`created_at`, `timestamp` and `datetime` are accepted for it) and `text`, and optionally
`source` and `author` (`user_id` and `user` are accepted for it); other columns are ignored.
A row's source is its `source` value, else the `source` argument, else the file's stem.

`time` is stored in UTC: a value with a zone or offset is converted, a value without one is
taken as UTC already. `date_known` is the first session the market could act on the text:
its New York date when posted before the 16:00 close on a business day, otherwise the next
business day (the calendar of `synthpm.data.calendar`, the same as for filings).

`text_id` digests ticker, time, source, author and text, so a re-import replaces rows
instead of adding them, and a text listed twice is stored once (two authors posting the same
words at the same second are two posts: attention counts both).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from synthpm.data.calendar import known_from_new_york
from synthpm.data.errors import DataError
from synthpm.data.importers.tabular import read_table, with_provenance
from synthpm.data.schema import TEXTS
from synthpm.data.store import ImportBatch, Store
from synthpm.data.taxonomy import ITEMS_8K, LEGACY_ITEMS_8K
from synthpm.data.validate import FIRST_DATE, check_tickers, fail_where, normalise_columns

ALIASES = {
    "created_at": "time",
    "timestamp": "time",
    "datetime": "time",
    "user_id": "author",
    "user": "author",
}
NEW_YORK = "America/New_York"
EVENTS_SOURCE = "8-K"
# event type -> the SEC's item title, as contexts show it (synthpm.context.MEANING)
MEANING = {etype: meaning for etype, meaning in (*LEGACY_ITEMS_8K.values(), *ITEMS_8K.values())}


def import_text(path: Path, source: str | None = None) -> ImportBatch:
    """A text file as a batch for the `texts` table; nothing is written."""
    path = Path(path)
    df = normalise_columns(_read(path), ["ticker", "time", "text"], str(path), ALIASES)
    text = df["text"].astype("string").str.strip()
    empty = (text.isna() | (text == "")).to_numpy()
    warnings = []
    if empty.all():
        raise DataError("no row has text", source=str(path), column="text")
    if empty.any():
        warnings.append(f"{int(empty.sum())} row(s) with empty text dropped")
        df, text = df[~empty], text[~empty]
    df = df.reset_index(drop=True)
    default = source or path.stem
    if "source" in df:
        sources = df["source"].astype("string").str.strip().replace("", pd.NA)
        sources = sources.fillna(default).astype(object)
    else:
        sources = default
    frame = pd.DataFrame(
        {
            "ticker": check_tickers(df),
            "time": _utc_times(df),
            "source": sources,
            "text": text.reset_index(drop=True).astype(object),
            "author": df["author"].astype("string").str.strip().replace("", pd.NA).astype(object)
            if "author" in df
            else None,
        }
    )
    frame["date_known"] = known_from_post(frame["time"])
    texts, dropped = _identified(frame)
    if dropped:
        warnings.append(f"{dropped} repeated text row(s) stored once")
    return ImportBatch("text", str(path), {"texts": texts}, warnings)


def known_from_post(times: pd.Series) -> pd.Series:
    """First business day on which a text posted at `times` (UTC, naive) could be acted on
    at the close: its New York date before 16:00 on a business day, else the next one."""
    return known_from_new_york(
        times.dt.tz_localize("UTC").dt.tz_convert(NEW_YORK).dt.tz_localize(None)
    )


def events_as_text(store: Store) -> ImportBatch:
    """The store's 8-K events as texts (source "8-K"): "8-K item 2.02 results: Results of
    operations and financial condition", timed at noon New York on the event's date_known
    (so its date_known is the event's). Events without an item are skipped."""
    events = store.events() if store.has_table("events") else pd.DataFrame()
    if not events.empty:
        item = events["item"].astype("string").str.strip()
        events = events[(item.notna() & (item != "")).to_numpy()]
    if events.empty:
        raise DataError(
            "no 8-K events with items to turn into text: import EDGAR submissions first "
            "(`synthpm data import edgar FOLDER`)",
            source=str(store.path),
        )
    item = events["item"].astype(str).str.strip()
    kind = events["event_type"].astype(str)
    meaning = kind.map(MEANING).fillna(events["detail"]).fillna("")
    noon = events["date_known"].dt.normalize() + pd.Timedelta(hours=12)
    time = noon.dt.tz_localize(NEW_YORK).dt.tz_convert("UTC").dt.tz_localize(None)
    frame = pd.DataFrame(
        {
            "ticker": events["ticker"].astype(object),
            "time": time,
            "source": EVENTS_SOURCE,
            "text": ("8-K item " + item + " " + kind + ": " + meaning).astype(object),
            "date_known": events["date_known"].dt.normalize(),
        }
    ).reset_index(drop=True)
    texts, dropped = _identified(frame)
    warnings = [f"{dropped} repeated 8-K item(s) on the same day stored once"] if dropped else []
    return ImportBatch("text", f"{store.path} (8-K events)", {"texts": texts}, warnings)


def _read(path: Path) -> pd.DataFrame:
    """CSV, TSV and Parquet through `read_table`; JSON lines here, with the same provenance
    and errors."""
    if path.suffix.lower() not in (".jsonl", ".ndjson"):
        return read_table(path)
    if not path.exists():
        raise DataError("file not found", source=str(path))
    try:
        # dtype=False: values stay as written (a ticker "TRUE", a time string, no dates guessed)
        df = pd.read_json(path, lines=True, dtype=False)
    except Exception as exc:  # parser errors: name the file, keep the parser's words
        raise DataError(f"cannot read: {exc}", source=str(path)) from exc
    if df.empty:
        raise DataError("no rows", source=str(path))
    return with_provenance(df.reset_index(drop=True), str(path))


def _utc_times(df: pd.DataFrame) -> pd.Series:
    """`time` as naive UTC to the microsecond (the store's TIMESTAMP); a missing,
    unparseable or numeric value raises naming its row."""
    raw = df["time"]
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw.dt.tz_convert("UTC") if raw.dt.tz is not None else raw.dt.tz_localize("UTC")
        fail_where(df, parsed.isna(), "missing time", "time")
    else:
        text = raw.astype("string").str.strip()
        fail_where(df, text.isna() | (text == ""), "missing time", "time")
        if pd.api.types.is_bool_dtype(raw):
            numeric = np.zeros(len(raw), dtype=bool)
        elif pd.api.types.is_numeric_dtype(raw):
            numeric = np.ones(len(raw), dtype=bool)
        else:  # JSON values keep their type: a number among strings
            numeric = raw.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool))
            numeric = numeric.to_numpy(dtype=bool)
        if numeric.any():
            fail_where(df, numeric, f"time {text[numeric].iloc[0]} is a number, not a date-time "
                       "(e.g. 2014-01-02T15:30:00Z)", "time")  # fmt: skip
        parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
        retry = parsed.isna().to_numpy()
        if retry.any():  # other layouts ("01/02/2014 3:30 PM"), parsed one by one
            parsed[retry] = pd.to_datetime(text[retry], utc=True, format="mixed", errors="coerce")
        bad = parsed.isna().to_numpy()
        if bad.any():
            fail_where(df, bad, f"unparseable time {text[bad].iloc[0]!r}", "time")
    early = (parsed < FIRST_DATE.tz_localize("UTC")).to_numpy()
    fail_where(df, early, f"time before {FIRST_DATE.date()}", "time")
    late = (parsed > pd.Timestamp.now(tz="UTC")).to_numpy()
    fail_where(df, late, "time in the future: a text is known only once it is posted", "time")
    return parsed.dt.tz_localize(None).dt.floor("us").astype("datetime64[us]")


def _identified(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The frame with `text_id`, in the table's columns, each text once; and how many rows
    repeated one."""
    stamps = frame["time"].dt.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    if "author" not in frame:
        frame = frame.assign(author=None)
    authors = frame["author"].fillna("")
    keys = zip(frame["ticker"], stamps, frame["source"], authors, frame["text"], strict=True)
    frame = frame.assign(
        text_id=[hashlib.sha256("\x1f".join(k).encode()).hexdigest()[:16] for k in keys]
    )
    unique = frame.drop_duplicates(["ticker", "text_id"])
    out = unique[list(TEXTS.columns)].sort_values(["ticker", "time", "text_id"])
    return out.reset_index(drop=True), len(frame) - len(unique)
