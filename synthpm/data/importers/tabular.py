"""Reading tabular files (CSV, Parquet) into frames that carry their provenance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from synthpm.data.errors import DataError


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a frame with `_source` and `_row` (1-based, after the header)."""
    if not path.exists():
        raise DataError("file not found", source=str(path))
    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if suffix.endswith(".parquet") or suffix.endswith(".pq"):
            df = pd.read_parquet(path)
        elif any(s in suffix for s in (".csv", ".txt", ".tsv")):
            df = pd.read_csv(path, sep="\t" if ".tsv" in suffix else ",", low_memory=False)
        else:
            raise DataError(
                "unknown file type (expected .csv, .txt, .tsv or .parquet)", source=str(path)
            )
    except DataError:
        raise
    except Exception as exc:  # parser errors: name the file, keep the parser's words
        raise DataError(f"cannot read: {exc}", source=str(path)) from exc
    if df.empty:
        raise DataError("no rows", source=str(path))
    return with_provenance(df.reset_index(drop=True), str(path))


def with_provenance(df: pd.DataFrame, source: str, first_row: int = 1) -> pd.DataFrame:
    """Add `_source` (categorical, cheap for millions of rows) and `_row` columns."""
    df = df.copy()
    df["_source"] = pd.Categorical.from_codes(np.zeros(len(df), dtype=np.int8), categories=[source])
    df["_row"] = np.arange(first_row, first_row + len(df), dtype=np.int64)
    return df
