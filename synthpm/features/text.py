"""The `text` family: the store's daily text factors (`synthpm.text.factors`) on the panel.

The factors are stored long (ticker, date, name, value) and only while a ticker has text in
its baseline window; here they are laid on the panel's rows: a missing row means no recent
text (counts 0, concepts NaN), and `text_covered` says whether the ticker has any text known
by the date at all, so a model can tell "nobody posts about it" from "no text source". The
family is built only when the store has factors, so a store without text gets the panel it
had before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synthpm.text.concepts import BUILTIN
from synthpm.text.factors import COUNTS, factor_names

TEXT_COVERED = "text_covered"
TEXT_FEATURES: dict[str, str] = {
    name: "text" for name in (*factor_names([c.name for c in BUILTIN]), TEXT_COVERED)
}


def wide_factors(long: pd.DataFrame) -> pd.DataFrame:
    """(date, ticker)-indexed columns from the stored long rows (any concepts, built-in or
    a user's)."""
    if long.empty:
        return pd.DataFrame(index=pd.MultiIndex.from_arrays([[], []], names=["date", "ticker"]))
    wide = long.pivot_table(index=["date", "ticker"], columns="name", values="value")
    wide.columns.name = None
    return wide


def text_features(index: pd.MultiIndex, wide: pd.DataFrame, first_known: pd.Series) -> pd.DataFrame:
    """The family's columns for the panel rows `index` (date, ticker). `first_known`:
    ticker -> first date it has factors."""
    out = wide.reindex(index)
    for name in TEXT_FEATURES:
        if name not in out and name != TEXT_COVERED:
            out[name] = np.nan
    dates = np.asarray(index.get_level_values("date"), dtype="datetime64[ns]")
    first = np.asarray(index.get_level_values("ticker").map(first_known), dtype="datetime64[ns]")
    covered = ~np.isnat(first) & (dates >= first)
    out[TEXT_COVERED] = covered.astype(np.float32)
    counts = list(COUNTS)
    out.loc[covered, counts] = out.loc[covered, counts].fillna(0.0).to_numpy()
    return out.astype(np.float32)
