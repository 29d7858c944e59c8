"""`ppo`: a reinforcement-learning portfolio manager fed by the analysts, as a portfolio rule.

stable-baselines3's PPO on the "weights" `PortfolioEnv`: each decision date it sees the
`slots` names the forecaster ranks best (their forecasts and panel features, normalised
across the date's names) with their current weights and the cash, and writes a logit per
slot and one for cash, softmaxed into long-only weights. `VecNormalize` rescales the
observations and rewards while training; its statistics are frozen for trading, and the
actions are deterministic (the policy's mean). One model per test year, trained on the
years before it (`WalkForward`); seeds differ in the start dates of episodes and the
policy's initial weights, so a run reports the median and spread over seeds
(`benchmarks/learners.py`).

In the backtest a rule does not see its book: the current weights it observes are its own
last targets, drifted by the closes since (the book's weights but for the costs paid).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pandas as pd

from synthpm.context import Contexts
from synthpm.data.errors import ConfigError
from synthpm.learn.env import PortfolioEnv, slot_observation, softmax_weights
from synthpm.learn.history import History
from synthpm.learn.walkforward import WalkForward, one_thread
from synthpm.strategies.rules import new_period


@dataclass(eq=False, kw_only=True)
class PPORule(WalkForward):
    """PPO target weights over the forecaster's best `slots` names, each week (or month)."""

    kind: ClassVar[str] = "rule"
    every: str = "week"
    slots: int = 20
    timesteps: int = 20_000
    episode_steps: int = 52
    learning_rate: float = 3e-4
    n_steps: int = 512
    batch_size: int = 64
    name: str = field(default="ppo", init=False)
    _last: tuple[pd.Timestamp, pd.Series] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.every not in ("week", "month"):
            raise ConfigError(f"every must be 'week' or 'month', not {self.every!r}")
        if self.slots < 1:
            raise ConfigError(f"slots must be at least 1, not {self.slots}")
        if self.timesteps < self.n_steps:
            raise ConfigError(
                f"timesteps ({self.timesteps}) must be at least n_steps ({self.n_steps})"
            )

    def fit(self, history: History) -> None:
        super().fit(history)
        self._last = None

    def rebalance(self, date: pd.Timestamp, previous: pd.Timestamp | None) -> bool:
        return new_period(date, previous, self.every)

    def train(self, history: History, year: int):
        import torch
        from stable_baselines3 import PPO
        from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

        try:
            env = PortfolioEnv(history, self.every, "weights", self.slots, self.episode_steps)
        except ConfigError:  # fewer than two decision dates before the year
            return None
        seed = self.seed * 1000 + year
        torch.manual_seed(seed)
        venv = VecNormalize(DummyVecEnv([lambda: env]), norm_obs=True, norm_reward=True)
        venv.seed(seed)
        model = PPO(
            "MlpPolicy", venv, learning_rate=self.learning_rate, n_steps=self.n_steps,
            batch_size=self.batch_size, seed=seed, device="cpu", verbose=0,
        )  # fmt: skip
        with one_thread():
            model.learn(total_timesteps=self.timesteps)
        venv.training = False  # trading: the statistics stay as learned
        return model, venv

    def weights(self, date: pd.Timestamp, contexts: Contexts, closes: pd.DataFrame) -> pd.Series:
        date = pd.Timestamp(date)
        trained = self.model_for(date)
        tickers = pd.Index(contexts.frame["ticker"].unique())
        snap = self.history.snapshot(date, tickers)
        if trained is None or snap.tickers.empty:
            self._last = None
            return pd.Series(dtype=float, name="weight")
        model, venv = trained
        held = np.zeros(len(self.history.market.tickers))
        drifted = self._drifted(closes.loc[:date])
        cols = self.history.market.tickers.get_indexer(drifted.index)
        held[cols[cols >= 0]] = drifted.to_numpy()[cols >= 0]
        obs = venv.normalize_obs(slot_observation(snap, held, self.slots)[None, :])
        with one_thread():
            action, _ = model.predict(obs, deterministic=True)
        n = min(self.slots, len(snap.tickers))
        w = softmax_weights(action[0], np.r_[np.arange(self.slots) < n, True])
        target = pd.Series(w[:n], index=pd.Index(snap.tickers[:n], name="ticker"), name="weight")
        self._last = (date, target)
        return target

    def _drifted(self, closes: pd.DataFrame) -> pd.Series:
        """The last targets, grown by each name's close since, as fractions of the book."""
        if self._last is None:
            return pd.Series(dtype=float)
        then, target = self._last
        growth = (closes.iloc[-1] / closes.loc[then]).reindex(target.index).fillna(1.0)
        value = target * growth
        return value / (value.sum() + (1.0 - target.sum()))
