"""No look-ahead: changing the future leaves everything known at or before T unchanged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt

from synthpm.data.embedded import realised_vol_proxy
from synthpm.data.importers import run_import
from tests.conftest import edgar_company, price_panel, write_json

T = pd.Timestamp("2020-01-20")


def test_vix_proxy_up_to_t_ignores_prices_after_t():
    rng = np.random.default_rng(1)
    dates = pd.bdate_range("2019-01-01", periods=300)
    index = pd.Series(3000 * np.exp(np.cumsum(rng.normal(0, 0.01, 300))), index=dates)
    changed = index.copy()
    changed[changed.index > T] *= rng.uniform(0.5, 1.5, (changed.index > T).sum())
    before, after = realised_vol_proxy(index), realised_vol_proxy(changed)
    pdt.assert_series_equal(before[before.index <= T], after[after.index <= T])
    assert not before[before.index > T].equals(after[after.index > T])


FILED_BEFORE_T = {
    "accessionNumber": "a",
    "filingDate": "2020-01-10",
    "form": "8-K",
    "items": "2.02",
    "acceptanceDateTime": "2020-01-10T08:00:00.000Z",
}
# Filed on T itself but after the close: not known at T.
FILED_AFTER_CLOSE_ON_T = {
    "accessionNumber": "b",
    "filingDate": "2020-01-20",
    "form": "8-K",
    "items": "4.02",
    "acceptanceDateTime": "2020-01-20T17:30:00.000Z",
}


def import_filings(store, folder, filings):
    folder.mkdir(exist_ok=True)
    write_json(folder / "CIK0000000001.json", edgar_company(1, "AAA", filings))
    run_import(store, "edgar", folder)


def test_store_reads_as_of_t_ignore_later_prices_and_filings(store, tmp_path):
    panel = price_panel(("AAA",), days=40)
    panel.to_csv(tmp_path / "p.csv", index=False)
    run_import(store, "csv", tmp_path / "p.csv")
    import_filings(store, tmp_path / "e", [FILED_BEFORE_T])
    prices_before = store.prices(end=T)
    events_before = store.events(as_of=T)

    # The future changes: later prices are revised, and a filing made after T arrives.
    future = panel[pd.to_datetime(panel["date"]) > T].copy()
    future[["open", "high", "low", "close"]] *= 1.7
    future.to_csv(tmp_path / "f.csv", index=False)
    run_import(store, "csv", tmp_path / "f.csv")
    import_filings(store, tmp_path / "e", [FILED_BEFORE_T, FILED_AFTER_CLOSE_ON_T])

    pdt.assert_frame_equal(store.prices(end=T), prices_before)
    pdt.assert_frame_equal(store.events(as_of=T), events_before)
    assert len(store.events()) == 2
    assert store.prices("AAA")["close"].iloc[-1] != prices_before["close"].iloc[-1]
