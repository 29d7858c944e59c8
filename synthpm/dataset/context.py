"""`build_contexts`: the context frame (one row per decision point, flat columns, all
values known by `date`) built in bulk from the feature panel, the walk-forward forecasts and
the store's events and insider trades. Vectorised: no Python loop over rows. The frame's
columns are documented in `synthpm.context`, which holds the types a row becomes, and named
in `synthpm.columns`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from synthpm.columns import (
    BEST_HORIZON,
    FORECAST_FIELDS,
    FROM_PANEL,
    INSIDER_COVERED,
    NOTABLE,
    RECENT,
    event_col,
    event_prob_col,
    forecast_col,
    insider_col,
)
from synthpm.context import UNINFORMATIVE, WINDOW_DAYS, Contexts
from synthpm.features.filings import EVENT_GROUPS, day_numbers
from synthpm.features.market import benchmark_close
from synthpm.features.panel import PanelInputs
from synthpm.features.text import TEXT_COVERED
from synthpm.forecast.base import HORIZONS


def _latest(
    keys: np.ndarray, query: np.ndarray, lo_keys: np.ndarray, count: int
) -> list[np.ndarray]:
    """Positions of the `count` latest sorted `keys` <= query and >= lo_keys (-1 if none).

    Keys are `ticker_code << 32 | day`, so one searchsorted finds a ticker's latest rows and
    the window bound also rejects rows of another ticker.
    """
    hi = np.searchsorted(keys, query, "right")
    if len(keys) == 0:
        return [np.full(len(query), -1)] * count
    out = []
    for k in range(1, count + 1):
        j = hi - k
        ok = (j >= 0) & (keys[np.maximum(j, 0)] >= lo_keys)
        out.append(np.where(ok, j, -1))
    return out


def _take(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """values[positions], missing (NaT, NaN or None by dtype) where a position is -1."""
    if len(values) == 0:
        values = np.array([None], dtype=values.dtype if values.dtype.kind in "Mf" else object)
    out = values[np.maximum(positions, 0)]
    if out.dtype.kind == "M":
        out[positions < 0] = np.datetime64("NaT")
    elif out.dtype.kind == "f":
        out[positions < 0] = np.nan
    else:
        out = out.astype(object)
        out[positions < 0] = None
    return out


def build_contexts(
    inputs: PanelInputs,
    panel: pd.DataFrame,
    forecasts: pd.DataFrame | None,
    points: pd.DataFrame,
    closes: pd.DataFrame | None = None,
) -> Contexts:
    """The context frame for `points` (date, ticker, trigger; see `dataset.calendar`).

    `closes` is `inputs.closes()`, passed in by callers that build many chunks."""
    index = pd.MultiIndex.from_arrays([points["date"], points["ticker"]], names=["date", "ticker"])
    rows = panel.index.get_indexer(index)
    if (rows < 0).any():
        missing = index[rows < 0][0]
        raise ValueError(f"decision point {missing} is not a row of the feature panel")
    frame = pd.DataFrame(
        {
            "date": points["date"].to_numpy(),
            "ticker": points["ticker"].to_numpy(),
            "trigger": points["trigger"].to_numpy(),
        }
    )
    closes = inputs.closes() if closes is None else closes
    sector = frame["ticker"].map(inputs.sectors).astype(object)  # all NaN without sectors
    frame["sector"] = sector.fillna("Unknown").to_numpy(object)
    values = panel[list(FROM_PANEL)].to_numpy()[rows]
    for i, col in enumerate(FROM_PANEL):
        frame[col] = values[:, i]

    columns = [forecast_col(f, h) for h in HORIZONS for f in FORECAST_FIELDS]
    columns += [BEST_HORIZON, *(event_prob_col(g) for g in EVENT_GROUPS)]
    known = [c for c in columns if forecasts is not None and c in forecasts]
    joined = forecasts[known].reindex(index) if known else pd.DataFrame(index=index)
    for col in columns:  # a date before the first fold, or a group never seen: NaN
        frame[col] = joined[col].to_numpy() if col in joined else np.nan

    codes = {t: i for i, t in enumerate(sorted(set(frame["ticker"])))}
    day = day_numbers(frame["date"])
    tcode = frame["ticker"].map(codes).to_numpy().astype(np.int64)
    query, lo = (tcode << 32) | day, (tcode << 32) | (day - WINDOW_DAYS)
    _recent_events(frame, inputs.events, codes, query, lo)
    _notable_trades(frame, inputs.insider, codes, query, lo)
    if TEXT_COVERED in panel:
        _social(frame, panel, rows, inputs.text_quotes, index)
    source = benchmark_close(inputs.market, closes).source
    benchmark = "index" if source == "index" else "equal-weight universe"
    return Contexts(frame, benchmark)


class _Keyed(NamedTuple):
    table: pd.DataFrame  # rows of known tickers sorted by (ticker, date_known)
    keys: np.ndarray  # their `ticker_code << 32 | day`, sorted


def _keyed(table: pd.DataFrame, codes: dict[str, int], columns: tuple[str, ...] = ()) -> _Keyed:
    """Rows of known tickers sorted by (ticker, date_known), with their keys; optional
    `columns` a source lacks (a CSV without 8-K items or insider roles) come back empty."""
    table = table[table["ticker"].isin(codes)].assign(
        **{c: None for c in columns if c not in table}
    )
    tcode = table["ticker"].map(codes).to_numpy().astype(np.int64)
    keys = (tcode << 32) | day_numbers(table["date_known"])
    order = np.argsort(keys, kind="stable")
    return _Keyed(table.iloc[order], keys[order])


def _recent_events(frame, events, codes, query, lo) -> None:
    known = _keyed(events[~events["event_type"].isin(UNINFORMATIVE)], codes, ("item",))
    fields = {"date": "date_known", "type": "event_type", "item": "item"}
    for k, pos in enumerate(_latest(known.keys, query, lo, RECENT), start=1):
        for name, col in fields.items():
            frame[event_col(k, name)] = _take(known.table[col].to_numpy(), pos)


def _notable_trades(frame, insider, codes, query, lo) -> None:
    # Covered: the ticker's first Form 4 row (first key at or after the ticker's own
    # prefix) is known by the date; a key of a later ticker is larger than any query.
    keys = np.append(_keyed(insider, codes).keys, np.iinfo(np.int64).max)
    frame[INSIDER_COVERED] = keys[np.searchsorted(keys, query & ~np.int64(0xFFFFFFFF))] <= query
    known = _keyed(insider[insider["code"].isin(["P", "S"])], codes, ("owner", "role"))
    fields = {"date": "date_known", "owner": "owner", "role": "role", "code": "code"}
    for k, pos in enumerate(_latest(known.keys, query, lo, NOTABLE), start=1):
        for name, col in fields.items():
            frame[insider_col(k, name)] = _take(known.table[col].to_numpy(), pos)
        frame[insider_col(k, "value")] = _take(known.table["value"].to_numpy(dtype=float), pos)


def _social(frame, panel, rows, quotes, index) -> None:
    """The panel's text columns (any concepts) and each row's quoted post of the day."""
    text = [c for c in panel.columns if c.startswith("text_")]
    values = panel[text].to_numpy()[rows]
    for i, col in enumerate(text):
        frame[col] = values[:, i]
    keyed = quotes.set_index(["date", "ticker"]) if len(quotes) else None
    at = keyed.index.get_indexer(index) if keyed is not None else np.full(len(index), -1)
    frame["text_quote"] = _take(
        keyed["text"].to_numpy(object) if keyed is not None else np.array([], object), at
    )
    frame["text_quote_date"] = _take(
        keyed["date_known"].to_numpy("datetime64[ns]")
        if keyed is not None
        else np.array([], "datetime64[ns]"),
        at,
    )
