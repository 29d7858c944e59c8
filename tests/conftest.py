"""Small fixtures built in code: tests never read ../shared."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthpm.data.store import Store


def price_panel(tickers=("AAA", "BBB"), days: int = 30, start: str = "2020-01-01", seed: int = 0):
    """A long OHLCV panel of business days with consistent bars."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=days)
    frames = []
    for ticker in tickers:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, days)))
        open_ = close * (1 + rng.normal(0, 0.003, days))
        high = np.maximum(open_, close) * 1.01
        low = np.minimum(open_, close) * 0.99
        volume = rng.integers(1_000, 10_000, days)
        frames.append(
            pd.DataFrame(
                {
                    "ticker": ticker,
                    "date": dates.strftime("%Y-%m-%d"),
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": volume,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store.duckdb")


@pytest.fixture
def priced_store(store: Store, tmp_path: Path) -> Store:
    from synthpm.data.importers import run_import

    path = tmp_path / "panel.csv"
    price_panel(("AAA", "BBB", "CCC")).to_csv(path, index=False)
    run_import(store, "csv", path)
    return store


def edgar_company(cik: int, ticker: str | None, filings: list[dict], name: str = "Co") -> dict:
    """A submissions JSON in EDGAR's `filings.recent` layout."""
    keys = ("accessionNumber", "filingDate", "reportDate", "acceptanceDateTime", "form", "items")
    recent = {k: [f.get(k, "") for f in filings] for k in keys}
    return {
        "cik": f"{cik:010d}",
        "name": name,
        "tickers": [ticker] if ticker else [],
        "sic": "3571",
        "sicDescription": "Electronic Computers",
        "filings": {"recent": recent, "files": []},
    }


def write_json(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path
