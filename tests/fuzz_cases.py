"""Generators for the fuzz tests: a well-formed input of each importer, with one defect.

Each `Source` builds a small well-formed frame of one importer's layout; `defective_table`
injects one defect drawn from the list the issue names (a renamed or missing column, wrong
types, NaN/inf/negative/huge values, duplicate keys, unsorted or far-past or future dates,
odd tickers, empty, header-only, truncated or binary files, a wrong encoding) and writes
the file as CSV or Parquet. `defective_edgar` does the same for EDGAR's JSON.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from conftest import edgar_company, price_panel
from hypothesis import strategies as st

ODD_TICKERS = ["aa pl", "AA PL;DROP", "", " ", "Ä", "X" * 40, "BRK/B", "$$", "nan", "1e5", "a\nb"]
ODD_NUMBERS = ["nan", "inf", "-inf", "-1", "0", "1e308", "-1e308", "1e-320", "abc", "", "1,5",
               "--", "9" * 400, "True"]  # fmt: skip
ODD_DATES = ["1850-01-02", "2999-01-01", "not a date", "", "2020-13-45", "20200101", "0",
             "1677-09-21", "2262-04-12", "9999-12-31", "2020-01-02T25:00"]  # fmt: skip
RENAMES = ["tick", "Date ", "clos", "x", "CLOSE", "", "date"]
# Defects of a value in one row and column: the error must name the row and the column.
ROW_DEFECTS = ("number", "ticker", "date")


@dataclass(frozen=True)
class Source:
    """One importer's input layout: a well-formed frame, and which columns hold what."""

    kind: str
    suffix: str
    frame: Callable[[int, int], pd.DataFrame]  # (seed, rows) -> a well-formed frame
    numbers: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    tickers: tuple[str, ...] = ("ticker",)
    options: dict = field(default_factory=dict)


def prices(seed: int, rows: int) -> pd.DataFrame:
    return price_panel(("AAA", "BBB"), days=max(1, rows // 2), seed=seed)


def market(seed: int, rows: int) -> pd.DataFrame:
    return prices(seed, rows).query("ticker == 'AAA'").drop(columns=["ticker", "volume"])


def form4(seed: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "ticker": rng.choice(["AAA", "BBB"], rows),
            "reporting_owner": "DOE JANE",
            "reporting_owner_cik": "0001",
            "reporting_owner_position": "CEO",
            "transaction_date": pd.bdate_range("2020-01-06", periods=rows).strftime("%Y-%m-%d"),
            "transaction_type": rng.choice(["P", "S"], rows),
            "transaction_shares": rng.integers(1, 1000, rows).astype(float),
            "transaction_price": rng.uniform(5, 50, rows).round(2),
            "shares_after_transaction": rng.integers(1000, 5000, rows).astype(float),
        }
    )


def sectors(seed: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "ticker": [f"T{i}" for i in range(rows)],
            "sector": rng.choice(["Energy", "Utilities", "Financials"], rows),
        }
    )


def spells(seed: int, rows: int) -> pd.DataFrame:
    start = pd.Timestamp("2005-01-03") + pd.Timedelta(days=seed % 400)
    return pd.DataFrame(
        {
            "ticker": [f"U{i}" for i in range(rows)],
            "start": [str((start + pd.Timedelta(days=i)).date()) for i in range(rows)],
            "end": [
                str((start + pd.Timedelta(days=100 + i)).date()) if i % 3 else ""
                for i in range(rows)
            ],
        }
    )


PRICE_NUMBERS = ("open", "high", "low", "close", "volume")
SOURCES = {
    "csv": Source("csv", ".csv", prices, PRICE_NUMBERS, ("date",)),
    "parquet": Source("parquet", ".parquet", prices, PRICE_NUMBERS, ("date",)),
    "stooq": Source("stooq", ".us.txt", prices, PRICE_NUMBERS, ("date",), ()),
    "form4": Source(
        "form4",
        ".csv",
        form4,
        ("transaction_shares", "transaction_price", "shares_after_transaction"),
        ("transaction_date",),
    ),
    "sectors": Source("sectors", ".csv", sectors),
    "market": Source(
        "market",
        ".csv",
        market,
        ("open", "high", "low", "close"),
        ("date",),
        (),
        {"series": "index", "total_return": True},
    ),
    "universe": Source("universe", ".csv", spells, (), ("start", "end")),
    "universe_prices": Source(
        "universe", ".parquet", prices, (), ("date",), options={"from_prices": True}
    ),
}


@st.composite
def defective_table(draw, source: Source) -> tuple[bytes, str]:
    """A file of `source`'s layout with one defect, and the defect's name."""
    seed = draw(st.integers(0, 10_000))
    frame = source.frame(seed, draw(st.integers(1, 12))).reset_index(drop=True).astype(object)
    if source.kind == "stooq":  # the ticker is the file's name; the header is Stooq's
        frame = frame[frame["ticker"] == "AAA"].drop(columns="ticker").reset_index(drop=True)
        frame.columns = [c.capitalize() for c in frame.columns]
    columns = list(frame.columns)
    numbers = [c for c in columns if c.lower() in source.numbers]
    dates = [c for c in columns if c.lower() in source.dates]
    tickers = [c for c in columns if c in source.tickers]
    choices = ["rename", "drop", "duplicate", "unsorted", "extra_column", "empty",
               "header_only", "truncate", "binary", "latin1", "blank_line", "types"]  # fmt: skip
    choices += ["number"] * bool(numbers) + ["date"] * bool(dates) + ["ticker"] * bool(tickers)
    defect = draw(st.sampled_from(choices))
    row = draw(st.integers(0, len(frame) - 1))
    if defect == "rename":
        frame = frame.rename(
            columns={draw(st.sampled_from(columns)): draw(st.sampled_from(RENAMES))}
        )
    elif defect == "drop":
        frame = frame.drop(columns=draw(st.sampled_from(columns)))
    elif defect == "number":
        frame.loc[row, draw(st.sampled_from(numbers))] = draw(st.sampled_from(ODD_NUMBERS))
    elif defect == "date":
        frame.loc[row, draw(st.sampled_from(dates))] = draw(st.sampled_from(ODD_DATES))
    elif defect == "ticker":
        frame.loc[row, draw(st.sampled_from(tickers))] = draw(st.sampled_from(ODD_TICKERS))
    elif defect == "duplicate":
        frame = pd.concat([frame, frame.iloc[[row]]], ignore_index=True)
    elif defect == "unsorted":
        frame = frame.sample(frac=1.0, random_state=seed)
    elif defect == "extra_column":
        frame["note"] = "x"
    elif defect == "types":  # a whole column of another type: numbers as words, words as numbers
        column = draw(st.sampled_from(columns))
        frame[column] = draw(st.sampled_from(["word", 1.5, True, None]))
    content = _write(frame, source.suffix)
    if defect == "empty":
        content = b""
    elif defect == "header_only":
        content = _write(frame.iloc[:0], source.suffix)
    elif defect == "truncate":
        content = content[: draw(st.integers(1, max(1, len(content) - 1)))]
    elif defect == "binary":
        content = np.random.default_rng(seed).bytes(draw(st.integers(1, 300)))
    elif defect == "latin1" and source.suffix != ".parquet":
        content = content.decode().replace("A", "Ä", 1).encode("latin-1")
    elif defect == "blank_line" and source.suffix != ".parquet":
        lines = content.decode().splitlines()
        lines.insert(draw(st.integers(1, len(lines))), "")
        content = "\n".join(lines).encode()
    return content, defect


def _write(frame: pd.DataFrame, suffix: str) -> bytes:
    if suffix != ".parquet":
        return frame.to_csv(index=False).encode()
    # Parquet columns are typed: a column is numeric where every value is, else text
    typed = frame.copy()
    seen: list[str] = []  # a Parquet file cannot hold two columns of one name
    for column in typed.columns:
        seen.append(column + "_" * seen.count(column))
    typed.columns = seen
    for column in typed:
        try:
            typed[column] = pd.to_numeric(typed[column])
        except (ValueError, TypeError):
            typed[column] = typed[column].astype("string")
    buffer = io.BytesIO()
    typed.to_parquet(buffer)
    return buffer.getvalue()


ODD_JSON = [None, 7, -1, "", "x", [], {}, [1, 2], "2020-13-45", "1850-01-02", 1e308, True]
FILING_KEYS = ("accessionNumber", "filingDate", "reportDate", "acceptanceDateTime", "form",
               "items")  # fmt: skip


@st.composite
def defective_edgar(draw) -> tuple[bytes, str]:
    """An EDGAR submissions file with one defect, and the defect's name."""
    n = draw(st.integers(1, 4))
    filings = [
        {
            "accessionNumber": f"0000-{i}",
            "filingDate": str(pd.Timestamp("2020-01-02") + pd.Timedelta(days=i))[:10],
            "reportDate": "2020-01-01",
            "acceptanceDateTime": "2020-01-02T17:05:00.000Z",
            "form": draw(st.sampled_from(["8-K", "4", "10-Q"])),
            "items": draw(st.sampled_from(["2.02", "2.02,9.01", ""])),
        }
        for i in range(n)
    ]
    doc = edgar_company(draw(st.integers(1, 10**9)), "AAA", filings)
    recent = doc["filings"]["recent"]
    defect = draw(st.sampled_from([
        "drop_key", "value", "array", "short_array", "cik", "tickers", "filings", "recent",
        "not_a_dict", "truncate", "binary", "empty", "latin1", "flat",
    ]))  # fmt: skip
    if defect == "drop_key":
        del recent[draw(st.sampled_from(FILING_KEYS))]
    elif defect == "value":
        recent[draw(st.sampled_from(FILING_KEYS))][draw(st.integers(0, n - 1))] = draw(
            st.sampled_from(ODD_JSON)
        )
    elif defect == "array":
        recent[draw(st.sampled_from(FILING_KEYS))] = draw(st.sampled_from(ODD_JSON))
    elif defect == "short_array":
        recent[draw(st.sampled_from(FILING_KEYS))].append("extra")
    elif defect == "cik":
        doc["cik"] = draw(st.sampled_from([*ODD_JSON, "abc", "-5", "00x1"]))
    elif defect == "tickers":
        doc["tickers"] = draw(st.sampled_from([[t] for t in ODD_TICKERS] + ODD_JSON))
    elif defect == "filings":
        doc["filings"] = draw(st.sampled_from(ODD_JSON))
    elif defect == "recent":
        doc["filings"]["recent"] = draw(st.sampled_from(ODD_JSON))
    elif defect == "not_a_dict":
        doc = draw(st.sampled_from([[doc], "text", 3, None]))
    elif defect == "flat":  # an older file: flat arrays, the CIK from the file's name
        doc = recent
    content = json.dumps(doc).encode()
    if defect == "truncate":
        content = content[: draw(st.integers(1, len(content) - 1))]
    elif defect == "binary":
        content = np.random.default_rng(n).bytes(draw(st.integers(1, 300)))
    elif defect == "empty":
        content = b""
    elif defect == "latin1":
        content = json.dumps(doc, ensure_ascii=False).replace("Co", "Çö").encode("latin-1")
    return content, defect
