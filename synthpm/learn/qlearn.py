"""`qlearn`: the earlier system's tabular Q-learning manager, as a signal source.

A state per (date, ticker) is the forecaster's view × the trend × whether the book holds the
name: the quintile of the 1m expected return among the date's members (5), the sign of the
21-day return beyond ±2% (3), holding or not (2): 30 states. The actions are HOLD, BUY and
SELL. The agent learns on the discrete `PortfolioEnv` (the engine's fills and costs) over
the training years, one independent learner per asset sharing one table: each column's
reward is its own part of the book's step (`PortfolioEnv.asset_rewards`: its log return
while held, less its trading cost), so the table learns which states are worth holding
over cash after costs.

At a decision the best action per row becomes the signal: BUY (not holding, BUY best),
SELL (holding, SELL best), otherwise SKIP. Conviction is the Q-value spread, the best
action's value over the runner-up's, scaled by the table's largest spread into 0.5..1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synthpm.context import Contexts
from synthpm.data.errors import ConfigError
from synthpm.learn.env import BUY, SELL, PortfolioEnv
from synthpm.learn.history import History, Snapshot
from synthpm.learn.walkforward import WalkForward
from synthpm.signals import Signal
from synthpm.strategies.sources import make_signals

QUINTILES, TRENDS = 5, 3
N_STATES = QUINTILES * TRENDS * 2
TREND_BAND = 0.02  # a 21-day move within ±2% is no trend
ACTIONS = ("HOLD", "BUY", "SELL")


def state_of(snap: Snapshot, holding: np.ndarray) -> np.ndarray:
    """The state index of each of the snapshot's tickers (`holding`: aligned bools)."""
    n = len(snap.tickers)
    # snapshot rows are ordered best forecast first: position → quintile, 4 the best
    quintile = (QUINTILES - 1) - (np.arange(n) * QUINTILES // max(n, 1))
    ret = np.nan_to_num(snap.raw["ret_21d"].to_numpy(float))
    trend = np.where(ret > TREND_BAND, 2, np.where(ret < -TREND_BAND, 0, 1))
    return (quintile * TRENDS + trend) * 2 + np.asarray(holding, dtype=np.int64)


def q_learning(
    env: PortfolioEnv, episodes: int, alpha: float, gamma: float, epsilon: float, seed: int
) -> np.ndarray:
    """Tabular Q-learning over the environment's columns at once. Each (state, action)
    moves toward the mean TD target of the columns that visited it in the step, so a state
    many assets share is not updated many times over."""
    rng = np.random.default_rng(seed)
    q = np.zeros((N_STATES, len(ACTIONS)))
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            live = obs < N_STATES
            greedy = q[np.minimum(obs, N_STATES - 1)].argmax(axis=1)
            explore = rng.random(len(obs)) < epsilon
            action = np.where(explore, rng.integers(0, len(ACTIONS), len(obs)), greedy)
            action = np.where(live, action, SELL)
            nxt, _, done, _, info = env.step(action)
            value = np.where(nxt < N_STATES, q[np.minimum(nxt, N_STATES - 1)].max(axis=1), 0.0)
            target = info["asset_rewards"] + (0.0 if done else gamma) * value
            cell = obs[live] * len(ACTIONS) + action[live]
            sums = np.bincount(cell, target[live] - q.ravel()[cell], q.size)
            counts = np.bincount(cell, minlength=q.size)
            q.ravel()[counts > 0] += alpha * sums[counts > 0] / counts[counts > 0]
            obs = nxt
    return q


@dataclass(eq=False, kw_only=True)
class QLearn(WalkForward):
    """Tabular Q-learning on weekly (or monthly) decisions, refitted each test year."""

    every: str = "week"
    episodes: int = 40
    episode_steps: int = 52
    alpha: float = 0.1
    gamma: float = 0.9
    epsilon: float = 0.1
    hold_days: int = 365  # the agent decides its exits; the engine's hold expiry never binds
    name: str = field(default="qlearn", init=False)

    def __post_init__(self) -> None:
        if self.every not in ("week", "month"):
            raise ConfigError(f"every must be 'week' or 'month', not {self.every!r}")
        for key in ("alpha", "gamma", "epsilon"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{key} must be in 0..1, not {getattr(self, key)}")
        if self.episodes < 1 or self.episode_steps < 1:
            raise ConfigError("episodes and episode_steps must be at least 1")
        if not 1 <= self.hold_days <= 365:
            raise ConfigError(f"hold_days must be 1..365 calendar days, not {self.hold_days}")

    def train(self, history: History, year: int) -> np.ndarray | None:
        try:
            env = PortfolioEnv(
                history, self.every, "discrete", episode_steps=self.episode_steps,
                state_of=state_of, n_states=N_STATES,
            )  # fmt: skip
        except ConfigError:  # fewer than two decision dates before the year: nothing to learn
            return None
        return q_learning(env, self.episodes, self.alpha, self.gamma, self.epsilon, self.seed)

    def decide(
        self, date: pd.Timestamp, tickers: pd.Index, held: set[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per ticker: decision and conviction; SKIP at 0 for a ticker without a forecast,
        and for every ticker before there is a table. Quintiles are taken among all the
        date's members, as in training, whichever tickers are asked about."""
        decisions = np.full(len(tickers), "SKIP", dtype=object)
        conviction = np.zeros(len(tickers))
        q = self.model_for(date)
        if q is None:
            return decisions, conviction
        snap = self.history.snapshot(date)
        holding = snap.tickers.isin(list(held))
        values = q[state_of(snap, holding)]
        best = values.argmax(axis=1)
        ordered = np.sort(values, axis=1)
        spread = ordered[:, -1] - ordered[:, -2]
        scale = np.ptp(q, axis=1).max() or 1.0
        chosen = np.where(
            ~holding & (best == BUY), "BUY", np.where(holding & (best == SELL), "SELL", "SKIP")
        )
        strength = np.where(chosen != "SKIP", 0.5 + 0.5 * np.clip(spread / scale, 0, 1), 0.0)
        at = snap.tickers.get_indexer(tickers)
        found = at >= 0
        decisions[found], conviction[found] = chosen[at[found]], strength[at[found]]
        return decisions, conviction

    def signals(self, contexts: Contexts) -> list[Signal]:
        frame = contexts.frame
        if frame.empty:
            return []
        date = pd.Timestamp(frame["date"].iloc[0])
        held = {p.ticker for p in contexts.portfolio.positions} if contexts.portfolio else set()
        unique = pd.Index(frame["ticker"].unique())
        decisions, conviction = self.decide(date, unique, held)
        at = unique.get_indexer(frame["ticker"])
        reasons = [
            f"qlearn: {d.lower()}, conviction {c:.2f} from the Q spread"
            for d, c in zip(decisions[at], conviction[at], strict=True)
        ]
        return make_signals(list(decisions[at]), conviction[at], self.hold_days, reasons)
