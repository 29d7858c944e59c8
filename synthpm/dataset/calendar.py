"""Decision points: when a context is built for a ticker.

Scheduled points are the last trading day of each calendar week (a weekly review, the
default) or of each month; event-driven points are the days an 8-K item becomes known for
the ticker (the store's `date_known`, already a trading day the market could act on). A
day that is both is one point, marked `filing`. Only (date, ticker) rows of the feature
panel become points, so a ticker is reviewed only while it trades.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from synthpm.data.errors import ConfigError

Schedule = Literal["weekly", "monthly", "none"]
_PERIOD = {"weekly": "W", "monthly": "M"}


def scheduled_dates(dates: pd.DatetimeIndex, schedule: Schedule) -> pd.DatetimeIndex:
    """The scheduled reviews among `dates`: the last of each calendar week or month."""
    if schedule == "none" or not len(dates):
        return pd.DatetimeIndex([])
    periods = pd.DatetimeIndex(dates).to_period(_PERIOD[schedule])
    return pd.DatetimeIndex(pd.Series(dates).groupby(periods).max().to_numpy())


def decision_points(
    panel_index: pd.MultiIndex,
    events: pd.DataFrame | None = None,
    schedule: Schedule = "weekly",
    filings: bool = True,
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Columns `date`, `ticker`, `trigger`, sorted by (date, ticker)."""
    if schedule not in ("weekly", "monthly", "none"):
        raise ConfigError(f"schedule must be weekly, monthly or none, not {schedule!r}")
    rows = panel_index.to_frame(index=False)[["date", "ticker"]]
    if start is not None:
        rows = rows[rows["date"] >= pd.Timestamp(start)]
    if end is not None:
        rows = rows[rows["date"] <= pd.Timestamp(end)]
    dates = pd.DatetimeIndex(rows["date"].unique())
    scheduled = scheduled_dates(dates, schedule)
    on_schedule = rows["date"].isin(scheduled)
    on_filing = pd.Series(False, index=rows.index)
    if filings and events is not None and len(events):
        filed = events.loc[events["event_type"] != "insider_filing", ["ticker", "date_known"]]
        keys = pd.MultiIndex.from_frame(filed.rename(columns={"date_known": "date"})[rows.columns])
        on_filing = pd.Series(pd.MultiIndex.from_frame(rows).isin(keys), index=rows.index)
    points = rows[on_schedule | on_filing].copy()
    points["trigger"] = pd.Categorical(
        np.where(on_filing[on_schedule | on_filing], "filing", "scheduled"),
        categories=["scheduled", "filing"],
    )
    return points.sort_values(["date", "ticker"]).reset_index(drop=True)
