"""The point-in-time feature panel: one row per (date, ticker), every value known by `date`.

    inputs = PanelInputs.from_store(store, tickers=None, end="2017-12-31")
    panel = build_features(inputs, FeatureConfig())          # or features_cached(...)

The panel is built from `PanelInputs` (the store's tables as frames), so a test can change
the future of the inputs and check that the past of the panel is unchanged. Rows are the
dates a ticker has a close **and is a member of the universe** (`data.universe`: with no
universe stored, every priced ticker is); a ticker's indicators still read its whole price
history, known before it joined. Cross-sectional features rank members against members, and
everything downstream (forecasts, decision points, labels, baselines) starts from these
rows, so each date sees only that date's members. Columns are float32 in `FEATURES` order.
Per-ticker work runs one numeric kernel per ticker over contiguous arrays (TA-Lib is C);
per-date work is grouped pandas. Results are cached as Parquet under a key that hashes the
inputs, the config and `FEATURES_VERSION`, so an unchanged store rebuilds nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, field_validator

from synthpm.data.errors import ConfigError, did_you_mean
from synthpm.data.schema import TEXT_FACTORS, TEXT_QUOTES, UNIVERSE
from synthpm.data.store import DateLike, Store
from synthpm.data.universe import membership
from synthpm.features.filings import (
    EVENT_FEATURES,
    INSIDER_FEATURES,
    day_numbers,
    event_features,
    insider_features,
)
from synthpm.features.market import (
    CROSS_SECTION_FEATURES,
    MARKET_FEATURES,
    benchmark_close,
    cross_section_features,
    market_features,
)
from synthpm.features.technical import PRICE_FEATURES, price_features
from synthpm.features.text import TEXT_FEATURES, text_features, wide_factors
from synthpm.folders import atomic_file

FEATURES_VERSION = 2  # bump when a feature's definition changes: invalidates caches
FEATURES: dict[str, str] = {
    **PRICE_FEATURES,
    **CROSS_SECTION_FEATURES,
    **EVENT_FEATURES,
    **INSIDER_FEATURES,
    **MARKET_FEATURES,
    **TEXT_FEATURES,
}
FAMILIES = tuple(dict.fromkeys(FEATURES.values()))


def family_of(column: str) -> str | None:
    """A panel column's family; a user's own text concepts (not in FEATURES) are text's."""
    return FEATURES.get(column, "text" if column.startswith("text_") else None)


def family_columns(panel: pd.DataFrame, family: str) -> list[str]:
    """The panel's columns of `family`, or an error naming what is there."""
    if family not in FAMILIES:
        raise ConfigError(
            f"unknown family {family!r}{did_you_mean(family, FAMILIES)}; "
            f"families: {', '.join(FAMILIES)}"
        )
    columns = [c for c in panel.columns if family_of(c) == family]
    if not columns:
        hint = ": run `synthpm text import` and `synthpm text factors` first" * (family == "text")
        raise ConfigError(f"the panel has no {family} features{hint}")
    return columns


class FeatureConfig(BaseModel):
    """Which features to build: `None` means all; names or whole families may be given."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    features: tuple[str, ...] | None = None

    @field_validator("features")
    @classmethod
    def _known(cls, names):
        if names is None:
            return None
        if not names:
            raise ConfigError("features: the list is empty; leave it out to build all")
        out: list[str] = []
        for name in names:
            if name in FAMILIES:
                out += [f for f, fam in FEATURES.items() if fam == name]
            elif name in FEATURES:
                out.append(name)
            else:
                raise ConfigError(
                    f"unknown feature {name!r}{did_you_mean(name, [*FEATURES, *FAMILIES])}; "
                    f"families: {', '.join(FAMILIES)}"
                )
        return tuple(dict.fromkeys(out))

    @property
    def columns(self) -> list[str]:
        wanted = set(self.features or FEATURES)
        return [f for f in FEATURES if f in wanted]


@dataclass
class PanelInputs:
    """The store's tables as frames: what features and forecast labels are computed from."""

    prices: pd.DataFrame
    events: pd.DataFrame
    insider: pd.DataFrame
    market: pd.DataFrame
    sectors: pd.Series  # ticker -> sector
    # index membership spells (ticker, start, end exclusive); empty: every ticker, always
    universe: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(UNIVERSE.columns))
    )
    # daily text factors, long (ticker, date, name, value), and each day's quoted post;
    # empty: the store has no text, and the panel has no `text` family
    text_factors: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(TEXT_FACTORS.columns))
    )
    text_quotes: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=list(TEXT_QUOTES.columns))
    )

    @classmethod
    def from_store(
        cls,
        store: Store,
        tickers: str | Iterable[str] | None = None,
        start: DateLike | None = None,
        end: DateLike | None = None,
    ) -> PanelInputs:
        prices = store.prices(tickers, start, end)
        if prices.empty:
            raise ConfigError(
                "empty universe: no prices"
                + (f" between {start} and {end}" if start or end else "")
                + f" in {store.path}"
            )
        names = sorted(prices["ticker"].unique())
        return cls(
            prices=prices,
            events=store.events(names, as_of=end),
            insider=store.insider(names, as_of=end),
            market=store.market(start, end),
            sectors=store.sectors().set_index("ticker")["sector"],
            # every spell, not only these names': a name without one is then not a member
            universe=store.universe(),
            text_factors=store.text_factors(names, end),
            text_quotes=store.text_quotes(names, end),
        )

    def closes(self) -> pd.DataFrame:
        """Wide closes on the panel calendar (the union of the tickers' dates)."""
        return self.prices.pivot(index="date", columns="ticker", values="close")

    def members(self, dates: pd.Index, tickers: pd.Index) -> np.ndarray:
        """Per (date, ticker) pair of the two aligned arrays: a member on that date?"""
        calendar, names = pd.DatetimeIndex(dates.unique()).sort_values(), pd.Index(tickers.unique())
        grid = membership(self.universe, calendar, names)
        return grid[calendar.get_indexer(dates), names.get_indexer(tickers)]

    def digest(self) -> str:
        """A hash of every input row: the cache key's data part."""
        h = hashlib.sha256()
        frames = [self.prices, self.events, self.insider, self.market, self.universe]
        # text only where there is some: a store without text keeps its cached panels
        frames += [f for f in (self.text_factors, self.text_quotes) if len(f)]
        for frame in frames:
            h.update(str(list(frame.columns)).encode())
            h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        h.update(pd.util.hash_pandas_object(self.sectors).to_numpy().tobytes())
        return h.hexdigest()


class _Bars(NamedTuple):
    """One ticker's OHLCV as float64 arrays, in `price_features`' argument order."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray


def _fill_bars(bars: pd.DataFrame) -> _Bars:
    """OHLCV arrays; a bar stored close-only (the store's repair of an inconsistent bar) is
    made flat at its close and takes the previous volume, so that one bad bar does not turn
    every later value of a smoothed indicator into NaN."""
    close = bars["close"].to_numpy(dtype=np.float64)
    cols = [bars[c].to_numpy(dtype=np.float64) for c in ("open", "high", "low")]
    volume = bars["volume"].to_numpy(dtype=np.float64)
    if not np.isnan(cols[1]).all():
        cols = [np.where(np.isnan(c), close, c) for c in cols]
        volume = pd.Series(volume).ffill().fillna(0.0).to_numpy()
    open_, high, low = cols
    return _Bars(open_, high, low, close, volume)


def build_features(
    inputs: PanelInputs, config: FeatureConfig | None = None, progress=None
) -> pd.DataFrame:
    """The feature panel, indexed by (date, ticker) and sorted by date then ticker."""
    config = config or FeatureConfig()
    prices = inputs.prices.sort_values(["ticker", "date"], kind="stable")
    events = dict(tuple(inputs.events.groupby("ticker"))) if len(inputs.events) else {}
    insider = dict(tuple(inputs.insider.groupby("ticker"))) if len(inputs.insider) else {}
    empty_events = inputs.events.iloc[:0]
    empty_insider = inputs.insider.iloc[:0]
    groups = prices.groupby("ticker", sort=True)
    blocks: list[dict[str, np.ndarray]] = []
    iterator = progress(groups, total=groups.ngroups) if progress else groups
    for ticker, bars in iterator:
        row_days = day_numbers(bars["date"])
        block = price_features(*_fill_bars(bars))
        block |= event_features(row_days, events.get(ticker, empty_events))
        block |= insider_features(row_days, insider.get(ticker, empty_insider))
        blocks.append(block)
    names = list(blocks[0])
    panel = pd.DataFrame(
        {n: np.concatenate([b[n] for b in blocks]) for n in names},
        index=pd.MultiIndex.from_arrays(
            [prices["date"].to_numpy(), prices["ticker"].to_numpy()], names=["date", "ticker"]
        ),
    )
    panel = panel.sort_index(level=["date", "ticker"])
    dates, names = panel.index.get_level_values("date"), panel.index.get_level_values("ticker")
    panel = panel[inputs.members(dates, names)]
    panel = pd.concat([panel, cross_section_features(panel, inputs.sectors)], axis=1)
    index_close, _ = benchmark_close(inputs.market, inputs.closes())
    context = market_features(index_close, inputs.market)
    dates = panel.index.get_level_values("date")
    panel = panel.join(context.set_axis(context.index.rename("date")), on="date")
    panel = panel.set_index(pd.MultiIndex.from_arrays([dates, panel.index.get_level_values(1)]))
    columns = config.columns
    if inputs.text_factors.empty:
        columns = [c for c in columns if c not in TEXT_FEATURES]
    else:
        wide = wide_factors(inputs.text_factors)
        first = inputs.text_factors.groupby("ticker")["date"].min()
        text = text_features(panel.index, wide, first)
        # a user's own concepts (not in FEATURES) come when every feature is asked for
        extra = sorted(set(text.columns) - set(FEATURES)) if config.features is None else []
        panel = pd.concat([panel, text[[c for c in text if c in columns or c in extra]]], axis=1)
        columns = columns + extra
    return panel[columns].astype(np.float32)


def cache_key(inputs: PanelInputs, config: FeatureConfig) -> str:
    payload = json.dumps([FEATURES_VERSION, config.model_dump(), inputs.digest()], default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def features_cached(
    inputs: PanelInputs,
    config: FeatureConfig | None = None,
    cache_dir: str | Path | None = None,
    progress=None,
) -> pd.DataFrame:
    """`build_features`, read from `cache_dir/features-<key>.parquet` when present."""
    config = config or FeatureConfig()
    if cache_dir is None:
        return build_features(inputs, config, progress)
    path = Path(cache_dir) / f"features-{cache_key(inputs, config)}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    panel = build_features(inputs, config, progress)
    with atomic_file(path) as tmp:  # two processes may fill the cache at once
        panel.to_parquet(tmp)
    return panel
