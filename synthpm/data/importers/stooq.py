"""Stooq text files: one `<ticker>.<market>.txt` per ticker.

The header is `Date,Open,High,Low,Close,Volume,OpenInt`.

Also reads Stooq's bulk layout (`<TICKER>,<PER>,<DATE>,<TIME>,<OPEN>,...`, dates as
YYYYMMDD). Empty files (common in the bulk archives: delisted tickers) are skipped and
counted, not errors.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from synthpm.data.errors import DataError
from synthpm.data.importers.tabular import with_provenance
from synthpm.data.store import ImportBatch
from synthpm.data.validate import normalise_columns, validate_prices
from synthpm.progress import track


def ticker_from_filename(path: Path) -> str:
    """`brk-b.us.txt` -> `BRK-B`."""
    return path.name.split(".")[0].upper()


def import_stooq(path: Path, *, strict: bool = False) -> ImportBatch:
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise DataError("no Stooq .txt files in folder", source=str(path))
    frames, empty = [], []
    for file in track(files, "reading Stooq files", total=len(files)):
        if file.stat().st_size == 0:
            empty.append(file.name)
            continue
        try:
            raw = pd.read_csv(file, dtype=str)
        except pd.errors.EmptyDataError:
            empty.append(file.name)
            continue
        except (ValueError, UnicodeDecodeError) as exc:  # parser errors: name the file
            raise DataError(f"cannot read: {exc}", source=str(file)) from exc
        raw.columns = [str(c).strip().strip("<>") for c in raw.columns]
        if raw.empty:
            empty.append(file.name)
            continue
        df = normalise_columns(with_provenance(raw, str(file)), ["date", "close"], str(file))
        ticker = (
            df["ticker"].str.split(".").str[0] if "ticker" in df else ticker_from_filename(file)
        )
        keep = [
            c
            for c in ("date", "open", "high", "low", "close", "volume", "_source", "_row")
            if c in df
        ]
        frames.append(df[keep].assign(ticker=ticker))
    if not frames:
        raise DataError(f"all {len(files)} Stooq files are empty", source=str(path))
    df = pd.concat(frames, ignore_index=True)
    df["_source"] = df["_source"].astype("category")
    df["date"] = df["date"].str.replace(r"^(\d{4})(\d{2})(\d{2})$", r"\1-\2-\3", regex=True)
    prices, warnings = validate_prices(df, strict=strict)
    if empty:
        warnings.append(f"{len(empty)} empty file(s) skipped: {', '.join(empty[:10])}")
    return ImportBatch(
        "stooq",
        str(path),
        {"prices": prices},
        warnings,
        notes={"files": len(files), "empty_files": len(empty)},
    )
