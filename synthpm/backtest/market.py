"""`Market`: the run's prices on one calendar, as the wide arrays the engine reads."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synthpm.data.universe import membership
from synthpm.features.market import benchmark_close, benchmark_kind
from synthpm.features.panel import PanelInputs

# The price index's gap to SPY's total return: benchmarks/results/benchmark_gap.json.
BENCHMARK_NOTES = {
    "total_return": "total return index (dividends reinvested)",
    "price": "price index without dividends, while the stocks' adjusted closes include "
    "them: excess return, alpha and information ratio lean positive by the dividend yield "
    "(the S&P 500 price index trails its total return by about 2 points a year, 2005-2022)",
    "universe": "equal-weight universe of the stored closes (no index stored)",
}


@dataclass
class Market:
    """Wide price arrays on one calendar, built once and shared by every strategy of a run."""

    dates: pd.DatetimeIndex
    tickers: pd.Index
    open: np.ndarray  # dates x tickers, NaN where there is no bar (or no open)
    close: np.ndarray
    mark: np.ndarray  # close carried forward: a held name's last known value
    benchmark: np.ndarray
    benchmark_name: str
    benchmark_kind: str  # "total_return", "price" or "universe" (`features.market`)
    member: np.ndarray  # dates x tickers: in the universe that day (all True without one)
    sectors: np.ndarray  # per ticker, an int code into sector_names
    sector_names: list[str]
    closes: pd.DataFrame = field(repr=False)  # `close` as a frame, for portfolio rules

    @classmethod
    def from_inputs(cls, inputs: PanelInputs) -> Market:
        closes = inputs.closes()
        opens = inputs.prices.pivot(index="date", columns="ticker", values="open").reindex(
            index=closes.index, columns=closes.columns
        )
        close = closes.to_numpy(dtype=np.float64)
        mark = closes.ffill().to_numpy(dtype=np.float64)
        bench, _ = benchmark_close(inputs.market, closes)
        kind, source = benchmark_kind(inputs.market)
        names = closes.columns.map(inputs.sectors).astype(object).fillna("Unknown")
        codes, sector_names = pd.factorize(names)
        return cls(
            dates=closes.index,
            tickers=closes.columns,
            open=opens.to_numpy(dtype=np.float64),
            close=close,
            mark=mark,
            benchmark=bench.to_numpy(dtype=np.float64),
            benchmark_name=source,
            benchmark_kind=kind,
            member=membership(inputs.universe, closes.index, closes.columns),
            sectors=codes.astype(np.int64),
            sector_names=list(sector_names),
            closes=closes,
        )

    @property
    def close_only(self) -> bool:
        return not np.isfinite(self.open).any()
