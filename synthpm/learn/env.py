"""`PortfolioEnv`: a gymnasium environment over the store's market data, for the learners.

One step is one decision date of the schedule (`History.schedule`): the agent sees each
asset's inputs at the close of t (`History.snapshot`: the walk-forward forecasts and panel
features, normalised across the date's assets) with its current weight, and the cash; its
action becomes orders that fill at the next bar, and the reward is the log change of the
book's equity to the close of the next decision date, net of costs.

The fills, costs and idle-cash sweep are the engine's own (`Broker`, `orders_to_weights`):
the environment advances a broker day by day exactly as the backtest's loop does, so a
learner is paid what the backtest will charge it, not a copy of the rules that could drift.
The engine's stops and hold expiries are not simulated: a rule has none, and the tabular
agent's positions last until it sells them.

Two action kinds:
- "weights" (PPO): a slot per asset, the `slots` best-ranked by the forecaster's 1m
  expected return, plus one for cash; the action is a logit per slot, softmaxed into
  long-only target weights summing to 1 (an empty slot gets none).
- "discrete" (tabular Q-learning): HOLD, BUY or SELL per column of the market; a held name
  weighs 1/`positions` of equity, the engine's fixed position size. The observation is a
  discrete state per column (`qlearn.state_of`), or `n_states` where the column is not
  eligible. `info["asset_rewards"]` gives each column's own part of the step: its log return
  while held, less its trading cost (against cash, which earns nothing: what the name adds
  to the book's reward).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import gymnasium as gym
import numpy as np
import pandas as pd
from gymnasium import spaces

from synthpm.backtest.broker import Broker
from synthpm.backtest.engine import orders_to_weights
from synthpm.data.errors import ConfigError
from synthpm.learn.history import OBS_INPUTS, History, Snapshot

HOLD, BUY, SELL = 0, 1, 2
ActionKind = Literal["weights", "discrete"]


LOGIT_SCALE = 5.0  # actions are in [-1, 1] (what PPO's Gaussian policy suits); e^10 spans
# every allocation from one name to an even spread
OBS_BOUND = 3.0  # inputs are z-scores clipped at ±3; weights and cash lie in 0..1


def softmax_weights(action: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Long-only weights over the slots and cash (the last entry) from one action in [-1, 1]
    each, a logit once scaled; an absent slot gets none. The cash slot is always present."""
    logits = LOGIT_SCALE * np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    z = np.where(present, logits, -np.inf)
    z = z - z.max()
    w = np.exp(z)
    return w / w.sum()


class PortfolioEnv(gym.Env):
    """Episodes over `history`'s decision dates (`every`), `episode_steps` long, starting at a
    seeded random date (or the first, `random_start=False`)."""

    metadata = {"render_modes": []}  # noqa: RUF012 (gymnasium's own class attribute)

    def __init__(
        self,
        history: History,
        every: str = "week",
        action: ActionKind = "weights",
        slots: int = 20,
        episode_steps: int = 52,
        random_start: bool = True,
        state_of: Callable[[Snapshot, np.ndarray], np.ndarray] | None = None,
        n_states: int = 0,
    ):
        if action not in ("weights", "discrete"):
            raise ConfigError(f"action must be 'weights' or 'discrete', not {action!r}")
        if action == "discrete" and (state_of is None or n_states < 1):
            raise ConfigError("a discrete environment needs state_of and n_states")
        self.history, self.kind, self.slots = history, action, slots
        self.state_of, self.n_states = state_of, n_states
        self.random_start = random_start
        dates = history.schedule(every)
        dates = dates[dates.isin(history.market.dates)]
        if len(dates) < 2:
            raise ConfigError(
                f"a learning environment needs two decision dates, the history has {len(dates)}"
            )
        self.snapshots = [history.snapshot(d) for d in dates]
        self.episode_steps = max(1, min(episode_steps, len(dates) - 1))
        n = len(history.market.tickers)
        self.positions = history.config.limits.max_positions
        if action == "weights":
            width = slots * (len(OBS_INPUTS) + 2) + 1
            self.observation_space = spaces.Box(-OBS_BOUND, OBS_BOUND, (width,), np.float32)
            self.action_space = spaces.Box(-1.0, 1.0, (slots + 1,), np.float32)
        else:
            self.observation_space = spaces.MultiDiscrete(np.full(n, n_states + 1))
            self.action_space = spaces.MultiDiscrete(np.full(n, 3))
        self.broker: Broker | None = None
        self.k = self.end = 0

    # -- what the agent sees ------------------------------------------------------------
    def held_weights(self, t: int) -> tuple[np.ndarray, float]:
        """The book's weight per market column at the close of t, and its equity."""
        value = self.broker.shares * np.nan_to_num(self.history.market.mark[t])
        equity = self.broker.cash + value.sum()
        return value / equity, equity

    def observe(self, snap: Snapshot, held: np.ndarray) -> np.ndarray:
        if self.kind == "discrete":
            states = np.full(len(held), self.n_states, dtype=np.int64)
            states[snap.columns] = self.state_of(snap, held[snap.columns] > 0)
            return states
        return slot_observation(snap, held, self.slots)

    # -- gymnasium ------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        last_start = len(self.snapshots) - 1 - self.episode_steps
        start = int(self.np_random.integers(0, last_start + 1)) if self.random_start else 0
        self.k, self.end = start, start + self.episode_steps
        self.broker = Broker(self.history.market, self.history.config)
        snap = self.snapshots[self.k]
        held, _ = self.held_weights(snap.t)
        return self.observe(snap, held), {"date": str(snap.date.date())}

    def step(self, action):
        snap = self.snapshots[self.k]
        held, equity = self.held_weights(snap.t)
        target = self.targets(snap, held, np.asarray(action))
        before = self.broker.shares > 0
        orders = orders_to_weights(self.broker, snap.t, target, equity)
        after_snap = self.snapshots[self.k + 1]
        self.advance(snap.t, after_snap.t, orders)
        held_after, equity_after = self.held_weights(after_snap.t)
        reward = float(np.log(equity_after / equity))
        info = {"date": str(after_snap.date.date()), "equity": equity_after}
        if self.kind == "discrete":
            info["asset_rewards"] = self.asset_rewards(snap, after_snap, before)
        self.k += 1
        terminated = self.k >= self.end
        return self.observe(after_snap, held_after), reward, terminated, False, info

    # -- the book -------------------------------------------------------------------------
    def targets(self, snap: Snapshot, held: np.ndarray, action: np.ndarray) -> pd.Series:
        """Target weights by ticker for an action at `snap`."""
        tickers = self.history.market.tickers
        if self.kind == "weights":
            n = min(self.slots, len(snap.tickers))
            present = np.r_[np.arange(self.slots) < n, True]
            w = softmax_weights(action, present)
            return pd.Series(w[:n], index=snap.tickers[:n])
        eligible = np.zeros(len(tickers), dtype=bool)
        eligible[snap.columns] = True
        holding = held > 0
        keep = holding & eligible & (action != SELL)
        buy = eligible & ~holding & (action == BUY)
        chosen = np.flatnonzero(keep | buy)
        # the fixed position size; more names than positions share the book equally
        size = 1.0 / max(self.positions, len(chosen))
        return pd.Series(size, index=tickers[chosen])

    def advance(self, t0: int, t1: int, orders: list) -> None:
        """Days t0+1 .. t1 as the engine's loop runs them: fill at the next bar, sweep idle
        cash into the index (when the run does), sell names without a bar."""
        broker, sweep = self.broker, self.history.config.idle_cash == "benchmark"
        for t in range(t0 + 1, t1 + 1):
            if orders:
                broker.fill(t, orders)
                orders = []
            if sweep:
                broker.sweep(t)
            broker.sell_missing(t)

    def asset_rewards(self, snap: Snapshot, after: Snapshot, before: np.ndarray) -> np.ndarray:
        """Per market column: its log return from `snap` to `after` while held after the
        step, less the cost of entering or leaving it."""
        market = self.history.market
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.nan_to_num(np.log(market.mark[after.t] / market.mark[snap.t]))
        now = self.broker.shares > 0
        cost = self.broker.cost_rate  # one side: slippage and commission (and index leg)
        return np.where(now, r, 0.0) - cost * (now != before)


def slot_observation(snap: Snapshot, held: np.ndarray, slots: int) -> np.ndarray:
    """Per slot: the asset's inputs, its current weight and a present flag; then the cash."""
    n = min(slots, len(snap.tickers))
    width = len(OBS_INPUTS) + 2
    obs = np.zeros((slots, width), dtype=np.float32)
    obs[:n, : len(OBS_INPUTS)] = snap.inputs[:n]
    obs[:n, -2] = held[snap.columns[:n]]
    obs[:n, -1] = 1.0
    cash = 1.0 - float(np.clip(held, 0, None).sum())
    return np.r_[obs.ravel(), np.float32(cash)].astype(np.float32)
