"""One truth: the labels and the manager judge limits alike, and a model is not backtested on
the dates it trained on by accident."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic_inputs

from synthpm.backtest import BacktestConfig, Market, compare
from synthpm.context import PortfolioState, Position
from synthpm.data.errors import ConfigError
from synthpm.dataset import build_contexts, decision_points
from synthpm.dataset.labels import LabelConfig, decide
from synthpm.dataset.scenarios import Scenario
from synthpm.features import build_features
from synthpm.limits import Limits
from synthpm.portfolio.manager import Book, PortfolioManager
from synthpm.signals import Signal

SECTORS = ("Tech", "Energy", "Health")


def random_book(rng: np.random.Generator, names: list[str], limits: Limits):
    """A consistent `PortfolioState` (what the labels read) and the manager's `Book` of it."""
    n = int(rng.integers(0, limits.max_positions + 2))
    held = list(rng.choice(names, min(n, len(names)), replace=False))
    weights = rng.dirichlet(np.ones(len(held))) * rng.uniform(0.3, 1.0) if held else []
    equity = float(rng.uniform(0.5e6, 2e6))
    peak = equity * float(rng.choice([1.0, rng.uniform(1.0, 1.3)]))
    sector_of = {t: SECTORS[int(t[1:]) % 3] for t in names}
    positions = [
        Position(ticker=t, sector=sector_of[t], weight=float(w))
        for t, w in zip(held, weights, strict=True)
    ]
    cash = equity * (1 - sum(p.weight for p in positions))
    state = PortfolioState(cash=cash, equity=equity, positions=positions, peak=peak)
    close = rng.uniform(5, 500, len(names))
    codes = np.array([SECTORS.index(sector_of[t]) for t in names])
    return state, Book.from_state(state, names, close), codes, sector_of


def test_labels_and_manager_name_the_same_binding_limit_on_random_books():
    rng = np.random.default_rng(7)
    names = [f"T{i}" for i in range(12)]
    config = LabelConfig()
    seen = set()
    for _ in range(600):
        limits = Limits(
            max_positions=int(rng.integers(2, 8)),
            max_position=float(rng.uniform(0.03, 0.2)),
            max_sector=float(rng.uniform(0.15, 0.6)),
            cash_floor=float(rng.uniform(0.0, 0.3)),
        )
        state, book, codes, sector_of = random_book(rng, names, limits)
        ticker = str(rng.choice(names))
        conviction = float(rng.uniform(config.buy_conviction, 1.0))
        decision, reason = decide(
            conviction, 0.05, Scenario("random", state), ticker, sector_of[ticker], limits, config
        )
        manager = PortfolioManager(limits, cost_rate=config.cost_bps / 1e4)
        buy = Signal(decision="BUY", conviction=conviction, hold_duration_days=20, reasoning="")
        plan = manager.decide(book, np.array([names.index(ticker)]), codes, [buy], set())
        outcome = plan.outcomes[0]
        if decision == "SKIP":
            assert outcome.status == "rejected" and outcome.reason == reason, (
                state,
                ticker,
                outcome,
            )
        else:
            assert outcome.status in ("executed", "resized"), (state, ticker, outcome)
        seen.add(reason)
    # the draw reaches every limit, so the agreement is tested for each
    assert {"buy", "drawdown", "max_positions", "cash_floor", "sector_limit"} <= seen


def test_the_drawdown_a_prompt_states_is_the_one_the_manager_acts_on():
    state = PortfolioState(cash=1e6, equity=1e6, equity_history=[1e6], peak=1.25e6)
    assert state.drawdown == pytest.approx(-0.2)  # from the given peak, not the history's
    assert PortfolioState(cash=9e5, equity=9e5, equity_history=[1e6, 9e5]).drawdown == (
        pytest.approx(-0.1)
    )
    with pytest.raises(ValueError, match="peak"):
        PortfolioState(cash=1e6, equity=1e6, peak=9e5)


class Learned:
    """A signal source that carries a model's training record, as `PortfolioAgent` does."""

    name = "lm"

    def __init__(self, test_start: str):
        self.trained = {"test_start": test_start}

    def signals(self, contexts):
        return [
            Signal(decision="SKIP", conviction=0.5, hold_duration_days=5, reasoning="")
            for _ in range(len(contexts))
        ]


def test_compare_refuses_a_model_on_its_training_years(tmp_path):
    inputs = synthetic_inputs(tickers=3, days=260)
    panel = build_features(inputs)
    contexts = build_contexts(inputs, panel, None, decision_points(panel.index, inputs.events))
    market = Market.from_inputs(inputs)
    dates = contexts.frame["date"].sort_values().unique()
    test_start = str(pd.Timestamp(dates[len(dates) // 2]).date())
    early = BacktestConfig(start=str(pd.Timestamp(dates[0]).date()))
    with pytest.raises(ConfigError, match="--allow-in-sample"):
        compare([Learned(test_start)], contexts, market, early, tmp_path / "a", log=lambda _: 0)
    assert not (tmp_path / "a").exists()  # refused before anything ran or was written

    compare([Learned(test_start)], contexts, market, early, tmp_path / "b", lambda _: 0, True)
    marked = json.loads((tmp_path / "b" / "lm" / "metrics.json").read_text())["model_dates"]
    assert marked["in_sample"] and "IN SAMPLE" in marked["note"]
    assert "IN SAMPLE" in (tmp_path / "b" / "report.html").read_text()

    late = BacktestConfig(start=test_start)
    compare([Learned(test_start)], contexts, market, late, tmp_path / "c", log=lambda _: 0)
    meta = json.loads((tmp_path / "c" / "lm" / "metrics.json").read_text())
    assert not meta["model_dates"]["in_sample"]
    assert meta["benchmark_kind"] == "price"  # the synthetic index declares no dividends
