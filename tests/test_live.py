"""Live downloads, driven by recorded responses: never the network."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from synthpm.data.errors import SynthpmError
from synthpm.data.importers.live import RateLimiter, fetch_edgar, yahoo_prices
from tests.conftest import edgar_company


def recorded_yahoo(tickers, **kwargs):
    """The frame yfinance returns: columns (Price, Ticker), a DatetimeIndex named Date."""
    assert kwargs["auto_adjust"] is True
    dates = pd.DatetimeIndex(pd.bdate_range("2024-01-02", periods=3), name="Date")
    bar = {"Close": 100.0, "High": 101.0, "Low": 99.0, "Open": 100.5, "Volume": 1e6}
    columns = pd.MultiIndex.from_product([list(bar), tickers], names=["Price", "Ticker"])
    frame = pd.DataFrame([[bar[field] for field, _ in columns]] * len(dates), dates, columns)
    frame.loc[dates[0], ("Close", tickers[-1])] = np.nan  # not trading yet
    return frame


def test_yahoo_prices_from_a_recorded_download():
    batch = yahoo_prices(["aapl", "msft"], "2024-01-01", "2024-01-05", download=recorded_yahoo)
    prices = batch.frames["prices"]
    assert sorted(prices["ticker"].unique()) == ["AAPL", "MSFT"]
    assert len(prices) == 5  # MSFT's first day had no close
    assert prices[["open", "high", "low", "close", "volume"]].iloc[0].tolist() == [
        100.5,
        101.0,
        99.0,
        100.0,
        1e6,
    ]


def test_yahoo_single_ticker_frame_and_empty_answer():
    def single(tickers, **kwargs):
        return recorded_yahoo(tickers, **kwargs).xs(tickers[0], axis=1, level="Ticker")

    assert len(yahoo_prices(["AAPL"], download=single).frames["prices"]) == 2  # day 1 NaN
    with pytest.raises(SynthpmError, match="no prices for NOPE"):
        yahoo_prices(["NOPE"], download=lambda *a, **k: pd.DataFrame())


class Recorded:
    status_code = 200

    def __init__(self, doc):
        self.doc = doc

    def json(self):
        return self.doc


def test_edgar_download_writes_files_with_a_user_agent_and_follows_older_files(tmp_path):
    main = edgar_company(320193, "AAPL", [])
    main["filings"]["files"] = [{"name": "CIK0000320193-submissions-001.json"}]
    answers = {
        "https://data.sec.gov/submissions/CIK0000320193.json": main,
        "https://data.sec.gov/submissions/CIK0000320193-submissions-001.json": {
            "accessionNumber": []
        },
    }
    seen = []

    def get(url, headers, timeout):
        seen.append((url, headers["User-Agent"]))
        return Recorded(answers[url])

    clock = FakeClock()
    files = fetch_edgar(
        [320193],
        tmp_path,
        user_agent="Jane Doe jane@example.com",
        get=get,
        limiter=RateLimiter(10, clock.now, clock.sleep),
    )
    assert [f.name for f in files] == ["CIK0000320193.json", "CIK0000320193-submissions-001.json"]
    assert all(agent == "Jane Doe jane@example.com" for _, agent in seen)
    assert json.loads(files[0].read_text())["tickers"] == ["AAPL"]


def test_edgar_download_requires_a_real_user_agent_and_reports_http_errors(tmp_path):
    with pytest.raises(SynthpmError, match="User-Agent"):
        fetch_edgar([1], tmp_path, user_agent="python-requests", get=None)

    class NotFound(Recorded):
        status_code = 404

    with pytest.raises(SynthpmError, match="EDGAR answered 404"):
        fetch_edgar(
            [1],
            tmp_path,
            user_agent="Jane Doe jane@example.com",
            get=lambda url, **_: NotFound({}),
            limiter=RateLimiter(10, *FakeClock().pair()),
        )


class FakeClock:
    def __init__(self):
        self.t = 0.0
        self.slept = []

    def now(self):
        return self.t

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.t += seconds

    def pair(self):
        return self.now, self.sleep


def test_rate_limiter_allows_at_most_ten_requests_a_second():
    clock = FakeClock()
    limiter = RateLimiter(10, clock.now, clock.sleep)
    stamps = []
    for _ in range(25):
        limiter.wait()
        stamps.append(clock.t)
        clock.t += 0.01  # the request itself takes 10 ms
    gaps = np.diff(stamps)
    assert gaps.min() >= 0.1 - 1e-12
    assert stamps[-1] == pytest.approx(2.4)
