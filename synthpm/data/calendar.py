"""When the market could first act on a fact.

Business days are SEC business days: weekdays that are not US federal holidays. That is the
calendar of filing deadlines (a Form 4 is due two of them after the transaction), and it
never makes a fact known early on the exchange's calendar: a federal holiday the exchange
trades (Columbus Day) only makes a fact known a day late; an exchange holiday the SEC works
(Good Friday) gives a `date_known` with no bar, first used at the next bar.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
from pandas.tseries.holiday import USFederalHolidayCalendar

MARKET_CLOSE_HOUR = 16  # New York close; EDGAR acceptance times are New York wall-clock


@cache
def _holidays() -> np.ndarray:
    return USFederalHolidayCalendar().holidays("1970-01-01", "2100-12-31").to_numpy("datetime64[D]")


def add_business_days(dates: pd.Series, days: int) -> pd.Series:
    """The `days`-th business day following each date (`days=0`: the date, or the next
    business day if it is not one). A weekend or holiday counts from the business day before
    it, as deadlines do: Saturday + 2 is the Tuesday after (Monday is the first)."""
    values = dates.to_numpy(dtype="datetime64[D]")
    roll = "forward" if days == 0 else "backward"
    shifted = np.busday_offset(values, days, roll=roll, holidays=_holidays())
    return pd.Series(shifted.astype("datetime64[s]"), index=dates.index)


def known_from_acceptance(accepted: pd.Series, filed: pd.Series) -> pd.Series:
    """First business day on which a filing could be acted on at the close.

    EDGAR's `acceptanceDateTime` is New York wall-clock time despite its trailing "Z" (Apple's
    earnings 8-Ks are accepted at "16:30:xx.000Z", just after the 16:00 close). A filing
    accepted before the close is known that day; at or after it, the next business day.
    Without an acceptance time the filing date is taken as after the close (the safe side).
    """
    stamp = pd.to_datetime(
        accepted.fillna("").str.slice(0, 19), format="%Y-%m-%dT%H:%M:%S", errors="coerce"
    )
    close = pd.to_datetime(filed, errors="coerce") + pd.Timedelta(hours=MARKET_CLOSE_HOUR)
    return known_from_new_york(stamp.fillna(close))


def known_from_new_york(local: pd.Series) -> pd.Series:
    """First business day on which a fact that appeared at New York wall-clock time `local`
    (naive) could be acted on at the close: that day before 16:00 on a business day,
    otherwise the next business day. Filings and posts share this one rule."""
    day = local.dt.normalize()
    after_close = (local.dt.hour >= MARKET_CLOSE_HOUR).to_numpy()
    known = np.where(after_close, add_business_days(day, 1), add_business_days(day, 0))
    return pd.Series(known.astype("datetime64[s]"), index=local.index)
