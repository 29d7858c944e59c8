"""When facts become known: acceptance times, business days, holidays."""

from __future__ import annotations

import pandas as pd

from synthpm.data.calendar import add_business_days, known_from_acceptance


def test_acceptance_before_the_close_is_known_that_day_after_it_the_next_business_day():
    accepted = pd.Series(
        [
            "2020-01-02T15:59:59.000Z",  # Thu, before the close
            "2020-01-02T16:00:00.000Z",  # Thu, at the close: next day
            "2020-01-03T16:30:00.000Z",  # Fri after the close: Monday
            "2020-01-04T10:00:00.000Z",  # Saturday: Monday
            "2019-12-31T17:00:00.000Z",  # New Year's Eve after the close: Jan 1 is a holiday
            None,  # no time: filing date, taken as after the close
        ]
    )
    filed = pd.Series(
        ["2020-01-02", "2020-01-02", "2020-01-03", "2020-01-04", "2019-12-31", "2020-01-06"]
    )
    got = known_from_acceptance(accepted, filed).dt.strftime("%Y-%m-%d").tolist()
    assert got == [
        "2020-01-02",
        "2020-01-03",
        "2020-01-06",
        "2020-01-06",
        "2020-01-02",
        "2020-01-07",
    ]


def test_business_days_skip_weekends_and_federal_holidays():
    # Fri before Jul 4; Fri before Christmas; a Saturday (Mon is day 1, Tue Jul 4 a holiday);
    # the holiday itself (Wed is day 1).
    dates = pd.Series(pd.to_datetime(["2023-06-30", "2023-12-22", "2023-07-01", "2023-07-04"]))
    got = add_business_days(dates, 2).dt.strftime("%Y-%m-%d").tolist()
    assert got == ["2023-07-05", "2023-12-27", "2023-07-05", "2023-07-06"]
    assert add_business_days(dates, 0).dt.strftime("%Y-%m-%d").tolist() == [
        "2023-06-30",
        "2023-12-22",
        "2023-07-03",
        "2023-07-05",
    ]
