"""`online_lora`: a Chronos-T5 portfolio network, stepped online with LoRA each month.

After the Alphathon 2024 entry "Training LLMs for Portfolio Optimization with
Parameter-Efficient Online Learning" (Engel, Xerri, Gannon): the indicator series of each
asset are tokenised as Chronos does and read by a T5 encoder; a head scores each asset and
a softmax over the assets gives the month's weights (`learn.t5`). At each month's rebalance
one AdamW step on the LoRA adapters alone fits the weights the network chose a month ago to
the returns realised since, on L(w, r) = -wᵀr - η·H(w), H(w) = -Σ w log(w + ε).

The sign of the entropy term: the paper prints +η·(-wᵀ log w) = +η·H(w) with η > 0, which
*rewards* concentration, while its text says the term penalises it; here it is -η·H(w), the
diversifying sign the text describes (η = 0: return alone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from synthpm.context import Contexts
from synthpm.data.errors import ConfigError
from synthpm.features.technical import PRICE_FEATURES
from synthpm.learn.history import History
from synthpm.learn.t5 import (
    N_SPECIAL,
    PortfolioNet,
    chronos_tokenizer,
    load_encoder,
    new_encoder,
    portfolio_loss,
    tokenize,
)
from synthpm.learn.walkforward import one_thread
from synthpm.strategies.rules import new_period


def indicator_columns(panel: pd.DataFrame) -> list[str]:
    """The panel's TA-Lib-family indicators (`features.technical.PRICE_FEATURES`, 38 in a
    full panel): returns, ratios and oscillators, no price level (a back-adjusted level
    encodes later splits and dividends)."""
    return [c for c in PRICE_FEATURES if c in panel.columns]


def universe(market, t: int, candidates: pd.Index, lookback: int, assets: int) -> pd.Index:
    """The `assets` candidates with a close at t ranked by: a complete close over the
    lookback window, then the longest price history up to t, then ticker. No volume is in a
    `History`, so liquidity is stood in for by seasoning; only closes up to t are read."""
    cols = market.tickers.get_indexer(candidates)
    cols = np.unique(cols[cols >= 0])
    seen = np.isfinite(market.close[: t + 1, cols])
    cols, seen = cols[seen[-1]], seen[:, seen[-1]]
    complete = seen[-lookback:].all(axis=0)
    names = market.tickers[cols].to_numpy(str)
    order = np.lexsort((names, -seen.sum(axis=0), ~complete))[:assets]
    return market.tickers[np.sort(cols[order])]


class Indicators:
    """A panel's indicator columns, sorted by (date, ticker) once, cut into windows."""

    def __init__(self, panel: pd.DataFrame, columns: list[str]):
        frame = panel[columns].sort_index().astype(np.float32)
        self.frame = frame.replace([np.inf, -np.inf], np.nan)
        self.dates = self.frame.index.get_level_values("date").to_numpy()

    def window(self, dates: pd.DatetimeIndex, tickers: pd.Index, lookback: int) -> np.ndarray:
        """assets x lookback x indicators over `dates` (the window's trading days, the last
        the decision date), NaN where the panel has no row; left-padded to `lookback`."""
        lo = self.dates.searchsorted(dates[0].to_datetime64(), "left")
        hi = self.dates.searchsorted(dates[-1].to_datetime64(), "right")
        rows = self.frame.iloc[lo:hi]
        index = pd.MultiIndex.from_product([dates, tickers], names=["date", "ticker"])
        values = rows.reindex(index).to_numpy(np.float32)
        values = values.reshape(len(dates), len(tickers), -1).transpose(1, 0, 2)
        pad = np.full((len(tickers), lookback - len(dates), values.shape[2]), np.nan, np.float32)
        return np.concatenate([pad, values], axis=1)


@dataclass
class _Held:
    """The last rebalance: its row in the market, the universe and the network's inputs."""

    date: pd.Timestamp
    t: int
    columns: np.ndarray
    ids: torch.Tensor


@dataclass(eq=False, kw_only=True)
class OnlineLoRA:
    """Monthly weights over the `assets` most seasoned names from a Chronos-T5 network,
    pretrained walk-forward and then stepped online with LoRA (see the module docstring).

    Pretraining, once, at the first date `weights` is asked for (the backtest's start), on
    `history.until(start)` only: the whole network (all parameters), or with `pretrained`
    (a local directory holding a T5 encoder; its shape decides d_model, layers and heads,
    and `bins` must equal its vocabulary) the projection and head alone, `pretrain_epochs`
    passes over the month-ends before the start, one AdamW step per month on the same loss
    (the month's weights against its next month's returns), in a seeded order. LoRA
    adapters (rank `lora_rank`, on q and v) are then added and the rest frozen. Each later
    rebalance first takes one AdamW step (rate `lr`) on the adapters with the previous
    month's returns, then computes its weights: the update at the end of month m reads
    only returns realised by then.
    """

    kind: ClassVar[str] = "rule"
    assets: int = 100
    lookback: int = 64
    eta: float = 0.01
    lr: float = 1e-3
    lora_rank: int = 4
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    bins: int = 256
    pretrain_epochs: int = 3
    pretrain_lr: float = 1e-3
    pretrained: str | None = None
    seed: int = 0
    name: str = field(default="online_lora", init=False)
    _history: History | None = field(default=None, init=False, repr=False)
    _net: PortfolioNet | None = field(default=None, init=False, repr=False)
    _opt: torch.optim.Optimizer | None = field(default=None, init=False, repr=False)
    _held: _Held | None = field(default=None, init=False, repr=False)
    _start: pd.Timestamp | None = field(default=None, init=False, repr=False)
    _last: pd.Timestamp | None = field(default=None, init=False, repr=False)
    _base: dict | None = field(default=None, init=False, repr=False)  # pretrained state
    _columns: list[str] = field(default_factory=list, init=False, repr=False)
    _features: Indicators | None = field(default=None, init=False, repr=False)
    _tokenizer: object = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        at_least = {
            "assets": 1, "lookback": 2, "lora_rank": 1, "d_model": 1, "layers": 1,
            "heads": 1, "bins": N_SPECIAL + 3, "pretrain_epochs": 0,
        }  # fmt: skip
        for key, low in at_least.items():
            value = getattr(self, key)
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"online_lora.{key} must be an integer >= {low}, not {value!r}")
        if self.d_model % self.heads:
            raise ConfigError(
                f"online_lora.d_model ({self.d_model}) must be a multiple of heads ({self.heads})"
            )
        if not self.eta >= 0:
            raise ConfigError(f"online_lora.eta must be >= 0, not {self.eta!r}")
        for key in ("lr", "pretrain_lr"):
            if not getattr(self, key) > 0:
                raise ConfigError(f"online_lora.{key} must be > 0, not {getattr(self, key)!r}")
        if self.pretrained is not None and not (Path(self.pretrained) / "config.json").is_file():
            raise ConfigError(
                f"online_lora.pretrained: no model in {self.pretrained!r} (config.json missing)"
            )

    # -- the engine's contract ------------------------------------------------------------
    def fit(self, history: History) -> None:
        """Keep the run's history; the network is built and pretrained at the first date."""
        columns = indicator_columns(history.panel)
        if not columns:
            raise ConfigError("online_lora needs the panel's technical indicators, none here")
        self._history, self._columns = history, columns
        self._features = Indicators(history.panel, columns)
        self._tokenizer = chronos_tokenizer(self._vocabulary(), self.lookback)
        self._net = self._opt = self._held = self._start = self._last = self._base = None

    def rebalance(self, date: pd.Timestamp, previous: pd.Timestamp | None) -> bool:
        return new_period(date, previous, "month")

    def weights(self, date: pd.Timestamp, contexts: Contexts, closes: pd.DataFrame) -> pd.Series:
        """The online step, then the date's weights. Prices are the fitted history's (the
        engine's `closes` are the same), read only at rows up to `date`'s."""
        with one_thread():
            return self._weights(date, contexts)

    def _weights(self, date: pd.Timestamp, contexts: Contexts) -> pd.Series:
        date = pd.Timestamp(date)
        market = self.history.market
        t = int(market.dates.get_loc(date))
        if self._net is None or date <= self._last:
            self._begin(date)  # a new backtest (or the same one run again)
        self._last = date
        tickers = pd.Index(contexts.frame["ticker"].unique())
        names = universe(market, t, tickers, self.lookback, self.assets)
        if self._held is not None:
            self._online_step(t)
        if names.empty:
            self._held = None  # nothing held: the next month has nothing to learn from
            return pd.Series(dtype=float, name="weight")
        ids = self._inputs(self._features, market.dates, t, names)
        with torch.no_grad():
            w = self._net(ids).numpy().astype(np.float64)
        self._held = _Held(date, t, market.tickers.get_indexer(names), ids)
        return pd.Series(w, index=pd.Index(names, name="ticker"), name="weight")

    # -- learning ---------------------------------------------------------------------------
    @property
    def history(self) -> History:
        if self._history is None:
            raise ConfigError("online_lora: call fit(history) before the backtest")
        return self._history

    def _vocabulary(self) -> int:
        if self.pretrained is None:
            return self.bins
        from transformers import AutoConfig

        vocab = AutoConfig.from_pretrained(self.pretrained, local_files_only=True).vocab_size
        if vocab != self.bins:
            raise ConfigError(
                f"online_lora.bins ({self.bins}) must equal the pretrained encoder's "
                f"vocabulary ({vocab})"
            )
        return vocab

    def _begin(self, start: pd.Timestamp) -> None:
        """The network as pretrained before `start`, with fresh adapters and optimiser."""
        with torch.random.fork_rng(devices=[]):  # seeded, without moving the caller's RNG
            torch.manual_seed(self.seed)
            encoder = (
                load_encoder(self.pretrained)
                if self.pretrained
                else new_encoder(self.bins, self.d_model, self.layers, self.heads)
            )
            net = PortfolioNet(encoder, len(self._columns))
            if self._base is not None and self._start == start:
                net.load_state_dict(self._base)  # the same start: the same pretraining
            else:
                self._pretrain(net, self.history.until(start))
                self._base = {k: v.clone() for k, v in net.state_dict().items()}
            self._start = start
            adapters = net.add_lora(self.lora_rank)
        self._net, self._held = net, None
        self._opt = torch.optim.AdamW(adapters, lr=self.lr)

    def _pretrain(self, net: PortfolioNet, past: History) -> None:
        """`pretrain_epochs` passes over the month-ends of `past`, one step per month."""
        if self.pretrain_epochs == 0:
            return
        if self.pretrained:  # keep the loaded encoder as it is
            net.encoder.requires_grad_(False)
        trainable = [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=self.pretrain_lr)
        market, features = past.market, Indicators(past.panel, self._columns)
        months = _month_ends(market.dates)
        months = months[months >= self.lookback - 1]
        samples = []
        for t0, t1 in pairwise(months):
            candidates = market.tickers[market.member[t0]]
            names = universe(market, t0, candidates, self.lookback, self.assets)
            if len(names) < 2:  # one name's weight is 1 whatever the network says
                continue
            ids = self._inputs(features, market.dates, t0, names)
            cols = market.tickers.get_indexer(names)
            # int16 ids: a month of 100 names is 0.5 MB, not 2 (Chronos's vocabulary is 4096)
            small = torch.int16 if self._tokenizer.config.n_tokens <= 2**15 else torch.int32
            samples.append((ids.to(small), _returns(market.mark, t0, t1, cols)))
        order = np.random.default_rng(self.seed)
        net.train()
        for _ in range(self.pretrain_epochs):
            for k in order.permutation(len(samples)):
                ids, r = samples[k]
                opt.zero_grad()
                portfolio_loss(net(ids.long()), r, self.eta).backward()
                opt.step()
        net.requires_grad_(True)

    def _online_step(self, t: int) -> None:
        """One AdamW step on the adapters: the weights chosen at the last rebalance,
        recomputed with gradients, against the returns from its close to t's close."""
        held = self._held
        r = _returns(self.history.market.mark, held.t, t, held.columns)
        self._opt.zero_grad()
        portfolio_loss(self._net(held.ids), r, self.eta).backward()
        self._opt.step()

    def _inputs(self, features: Indicators, dates: pd.DatetimeIndex, t: int, names) -> torch.Tensor:
        window = dates[max(0, t - self.lookback + 1) : t + 1]
        return tokenize(self._tokenizer, features.window(window, names, self.lookback))


def _month_ends(dates: pd.DatetimeIndex) -> np.ndarray:
    """Rows of the last trading day of each month."""
    rows = pd.Series(np.arange(len(dates)), index=dates)
    return rows.groupby(dates.to_period("M")).max().to_numpy()


def _returns(mark: np.ndarray, t0: int, t1: int, columns: np.ndarray) -> torch.Tensor:
    """Simple returns from the close of t0 to that of t1 (carried forward; 0 where none)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        r = mark[t1, columns] / mark[t0, columns] - 1.0
    return torch.from_numpy(np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32))
