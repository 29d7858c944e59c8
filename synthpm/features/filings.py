"""Event and insider features: what filings were known by each date (one numeric kernel).

Point in time: a filing counts at row t only when its `date_known <= t` (the store's rule:
the first date the market could act on it). Counts are over the trailing `window` calendar
days (t - window, t]; recency is calendar days since the last known filing, capped at
`RECENCY_CAP` when there is none. Everything is `searchsorted` over sorted dates: no loops
over rows.

Event features cover the 8-K item types that occur often enough to learn from, plus one
`adverse` group of rare bad-news items; insider features net Form 4 open-market buys (code P)
against sales (code S).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RECENCY_CAP = 730.0  # days; "no such filing in two years" reads the same as "never"
WINDOW_DAYS = 90

EVENT_GROUPS: dict[str, tuple[str, ...]] = {
    "results": ("results",),
    "agreement": ("material_agreement", "agreement_terminated"),
    "acquisition": ("acquisition_disposal",),
    "officer_change": ("officer_director_change",),
    "disclosure": ("reg_fd_disclosure", "other_event"),
    "debt": ("new_debt",),
    "vote": ("shareholder_vote", "bylaws_amended"),
    "adverse": (
        "bankruptcy",
        "exit_costs",
        "impairment",
        "restatement",
        "auditor_change",
        "delisting_notice",
        "debt_acceleration",
    ),
    "insider_filing": ("insider_filing",),
}
EVENT_FEATURES: dict[str, str] = {
    "ev_covered": "events",
    "ev_filings_90d": "events",
    **{f"ev_{g}_90d": "events" for g in EVENT_GROUPS},
    **{f"ev_{g}_days": "events" for g in EVENT_GROUPS},
}
INSIDER_FEATURES: dict[str, str] = {
    "ins_buys_90d": "insider",
    "ins_sells_90d": "insider",
    "ins_net_count_90d": "insider",
    "ins_net_value_90d": "insider",
}
GROUP_OF = {etype: group for group, types in EVENT_GROUPS.items() for etype in types}


def day_numbers(dates) -> np.ndarray:
    """Dates as int64 day numbers (days since 1970-01-01), for searchsorted arithmetic."""
    return np.asarray(pd.DatetimeIndex(dates).values.astype("datetime64[D]").astype(np.int64))


def trailing_count(rows: np.ndarray, known: np.ndarray, window: int) -> np.ndarray:
    """For each row day, how many `known` days fall in (row - window, row]. Both sorted."""
    return (
        np.searchsorted(known, rows, side="right") - np.searchsorted(known, rows - window, "right")
    ).astype(np.float64)


def trailing_sum(rows: np.ndarray, known: np.ndarray, values: np.ndarray, window: int):
    """Sum of `values` whose day falls in (row - window, row]; `known` sorted."""
    cum = np.concatenate([[0.0], np.cumsum(values)])
    hi = np.searchsorted(known, rows, side="right")
    lo = np.searchsorted(known, rows - window, side="right")
    return cum[hi] - cum[lo]


def days_since(rows: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Calendar days since the last `known` day on or before each row, capped."""
    idx = np.searchsorted(known, rows, side="right")
    out = np.full(len(rows), RECENCY_CAP)
    has = idx > 0
    out[has] = np.minimum(rows[has] - known[idx[has] - 1], RECENCY_CAP)
    return out


def event_features(row_days: np.ndarray, events: pd.DataFrame) -> dict[str, np.ndarray]:
    """Event features of one ticker at `row_days` (sorted day numbers).

    `events` has `date_known` and `event_type`, any order.
    """
    n = len(row_days)
    if events.empty:
        out = {f"ev_{g}_90d": np.zeros(n) for g in EVENT_GROUPS}
        out.update({f"ev_{g}_days": np.full(n, RECENCY_CAP) for g in EVENT_GROUPS})
        out["ev_filings_90d"] = np.zeros(n)
        out["ev_covered"] = np.zeros(n)
        return out
    days = day_numbers(events["date_known"])
    order = np.argsort(days, kind="stable")
    days = days[order]
    groups = events["event_type"].map(GROUP_OF).to_numpy()[order]
    out = {}
    for group in EVENT_GROUPS:
        known = days[groups == group]
        out[f"ev_{group}_90d"] = trailing_count(row_days, known, WINDOW_DAYS)
        out[f"ev_{group}_days"] = days_since(row_days, known)
    filings = np.unique(
        day_numbers(events.loc[events["event_type"] != "insider_filing", "date_known"])
    )
    out["ev_filings_90d"] = trailing_count(row_days, filings, WINDOW_DAYS)
    out["ev_covered"] = (row_days >= days[0]).astype(np.float64)
    return out


def insider_features(row_days: np.ndarray, trades: pd.DataFrame) -> dict[str, np.ndarray]:
    """Insider features of one ticker: open-market buys vs sales over 90 days (count, $)."""
    n = len(row_days)
    out = {name: np.zeros(n) for name in INSIDER_FEATURES}
    if trades.empty:
        return out
    days = day_numbers(trades["date_known"])
    order = np.argsort(days, kind="stable")
    days, code = days[order], trades["code"].to_numpy()[order]
    value = trades["value"].fillna(0.0).to_numpy(dtype=np.float64)[order]
    for name, c in (("buys", "P"), ("sells", "S")):
        pick = code == c
        out[f"ins_{name}_90d"] = trailing_count(row_days, days[pick], WINDOW_DAYS)
        out[f"_{name}_value"] = trailing_sum(row_days, days[pick], value[pick], WINDOW_DAYS)
    out["ins_net_count_90d"] = out["ins_buys_90d"] - out["ins_sells_90d"]
    out["ins_net_value_90d"] = out.pop("_buys_value") - out.pop("_sells_value")
    return out
