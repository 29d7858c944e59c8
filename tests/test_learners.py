"""The learning environment and the learners: the engine's fills and costs, walk-forward
training, reproducibility and no look-ahead (changing the future leaves the past alone)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

from synthpm.backtest.engine import run_rule
from synthpm.context import Contexts, PortfolioState, Position
from synthpm.data.errors import ConfigError
from synthpm.learn import fitted_learner, make_learner
from synthpm.learn.env import PortfolioEnv, softmax_weights
from synthpm.learn.qlearn import N_STATES, state_of
from tests.learning import perturbed, synthetic_history

HISTORY = synthetic_history()


def contexts_on(date: pd.Timestamp, held: tuple[str, ...] = ()) -> Contexts:
    tickers = HISTORY.market.tickers
    frame = pd.DataFrame({"date": date, "ticker": tickers, "trigger": "scheduled"})
    book = PortfolioState.empty()
    if held:
        positions = [
            Position(ticker=t, sector="Tech", weight=0.1, unrealised_return=0.0, days_held=7)
            for t in held
        ]
        book = book.model_copy(update={"positions": positions})
    return Contexts(frame, "IDX", book)


def test_both_environments_pass_gymnasiums_checker() -> None:
    weights = PortfolioEnv(HISTORY, "week", "weights", slots=5, episode_steps=10)
    discrete = PortfolioEnv(
        HISTORY, "month", "discrete", episode_steps=5, state_of=state_of, n_states=N_STATES
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checker's advice about render modes
        check_env(weights, skip_render_check=True)
        check_env(discrete, skip_render_check=True)
    obs, _ = discrete.reset(seed=0)
    assert obs.max() <= N_STATES and discrete.observation_space.contains(obs)


@dataclass
class FixedAction:
    """A rule writing the same action every date, through the environment's own mapping."""

    env: PortfolioEnv
    action: np.ndarray
    name: str = "fixed"
    kind: str = "rule"

    def rebalance(self, date, previous) -> bool:
        return True

    def weights(self, date, contexts, closes) -> pd.Series:
        snap = HISTORY.snapshot(date)
        return self.env.targets(snap, np.zeros(len(HISTORY.market.tickers)), self.action)


def test_the_environment_pays_what_the_backtest_pays() -> None:
    env = PortfolioEnv(HISTORY, "week", "weights", slots=4, episode_steps=30, random_start=False)
    action = np.linspace(1.0, -1.0, 5).astype(np.float32)
    env.reset(seed=0)
    dates, equity, rewards = [], [], []
    for _ in range(30):
        _, reward, done, _, info = env.step(action)
        dates.append(pd.Timestamp(info["date"]))
        equity.append(info["equity"])
        rewards.append(reward)
        if done:
            break
    first = env.snapshots[0].date
    frame = pd.DataFrame({"date": [first, *dates[:-1]], "ticker": HISTORY.market.tickers[0]})
    frame["trigger"] = "scheduled"
    config = HISTORY.config.model_copy(update={"end": str(dates[-1].date())})
    run = run_rule(FixedAction(env, action), Contexts(frame, "IDX"), HISTORY.market, config)
    engine = run.equity.set_index("date")["equity"]
    np.testing.assert_allclose(equity, engine.loc[dates].to_numpy(), rtol=1e-12)
    start = HISTORY.config.initial_cash
    np.testing.assert_allclose(np.exp(np.cumsum(rewards)) * start, equity, rtol=1e-12)
    assert len(run.trades) > 4  # it traded, and paid costs on each fill
    assert run.trades["cost"].gt(0).all()


def test_softmax_weights_are_long_only_and_skip_empty_slots() -> None:
    w = softmax_weights(np.array([1.0, 0.0, 5.0, -1.0]), np.array([True, True, False, True]))
    assert w[2] == 0 and w.min() >= 0 and w.sum() == pytest.approx(1.0)
    assert w[0] > w[1] > w[3]


def test_history_until_keeps_only_the_past_and_schedules_like_the_rules() -> None:
    cutoff = HISTORY.market.dates[300]
    past = HISTORY.until(cutoff)
    assert past.market.dates.max() < cutoff and len(past.market.close) == 300
    assert past.panel.index.get_level_values("date").max() < cutoff
    assert past.forecasts.index.get_level_values("date").max() < cutoff
    weeks = HISTORY.schedule("week")
    assert (weeks.to_period("W").value_counts() == 1).all()
    months = HISTORY.schedule("month")
    assert (months.to_period("M").value_counts() == 1).all() and set(months) <= set(weeks)
    with pytest.raises(ConfigError, match="every must be"):
        HISTORY.schedule("day")


def _decisions(learner, dates) -> list:
    out = []
    for date in dates:
        signals = learner.signals(contexts_on(date, held=("T1", "T2")))
        out.append([(s.decision, s.conviction) for s in signals])
    return out


def test_qlearn_is_reproducible_and_reads_no_future() -> None:
    params = {"episodes": 4, "episode_steps": 20}
    first, again = (fitted_learner("qlearn", HISTORY, **params) for _ in range(2))
    dates = HISTORY.schedule("week")
    year = dates[dates.year == dates.year.max()]
    asked = year[:6]
    ours = _decisions(first, asked)
    assert ours == _decisions(again, asked)
    np.testing.assert_array_equal(first.model_for(asked[0]), again.model_for(asked[0]))
    changed = fitted_learner("qlearn", perturbed(HISTORY, after=asked[-1]), **params)
    assert _decisions(changed, asked) == ours
    decided = {d for day in ours for d, _ in day}
    assert decided == {"BUY", "SELL", "SKIP"}  # it trades: the comparisons above are not moot
    for day in ours:  # a held name is never bought again, an unheld one never sold
        by_ticker = dict(zip(HISTORY.market.tickers, day, strict=True))
        assert all(by_ticker[t][0] != "BUY" for t in ("T1", "T2"))
        assert all(c[0] != "SELL" for t, c in by_ticker.items() if t not in ("T1", "T2"))
        assert all(0.5 <= c <= 1.0 for d, c in day if d != "SKIP")


def test_qlearn_skips_before_it_has_a_year_to_learn_from() -> None:
    learner = fitted_learner("qlearn", HISTORY, episodes=1)
    first_year = HISTORY.schedule("week")[0]
    assert learner.model_for(first_year) is None
    assert {s.decision for s in learner.signals(contexts_on(first_year))} == {"SKIP"}


def test_ppo_is_reproducible_and_reads_no_future() -> None:
    params = {"slots": 4, "timesteps": 256, "n_steps": 128, "episode_steps": 20}
    dates = HISTORY.schedule("week")
    asked = dates[dates.year == dates.year.max()][:4]

    def run(history) -> list[pd.Series]:
        rule = fitted_learner("ppo", history, **params)
        return [rule.weights(d, contexts_on(d), history.market.closes) for d in asked]

    ours = run(HISTORY)
    for a, b in zip(ours, run(HISTORY), strict=True):
        pd.testing.assert_series_equal(a, b)
    for a, b in zip(ours, run(perturbed(HISTORY, after=asked[-1])), strict=True):
        pd.testing.assert_series_equal(a, b)
    for w in ours:
        assert len(w) == 4 and (w >= 0).all() and w.sum() <= 1 + 1e-12


def test_learners_name_a_bad_setting() -> None:
    with pytest.raises(ConfigError, match="has no parameter 'epsilom'.*epsilon"):
        make_learner("qlearn", epsilom=0.1)
    with pytest.raises(ConfigError, match="gamma must be in 0..1"):
        make_learner("qlearn", gamma=2.0)
    with pytest.raises(ConfigError, match="timesteps"):
        make_learner("ppo", timesteps=10)
    with pytest.raises(ConfigError, match="unknown learner 'ppp'"):
        make_learner("ppp")
    with pytest.raises(ConfigError, match="call fit"):
        make_learner("qlearn").model_for(HISTORY.market.dates[0])
