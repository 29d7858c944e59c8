"""Baseline strategies: signal sources and portfolio rules, on crafted frames and on contexts
built by the real pipeline from synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import analysts, synthetic_inputs

from synthpm.context import Contexts
from synthpm.data.errors import ConfigError
from synthpm.dataset import build_contexts, decision_points
from synthpm.signals import Signal
from synthpm.strategies import (
    PORTFOLIO_RULES,
    SIGNAL_SOURCES,
    STRATEGIES,
    kind_of,
    make_strategy,
    strategy_params,
)
from synthpm.strategies.rules import (
    EqualWeight,
    MagnitudeChoice,
    RiskParity,
    TopK,
)
from synthpm.strategies.sources import AlwaysBuy, FixedRules

DAY = pd.Timestamp("2021-03-05")


@pytest.fixture(scope="module")
def pipeline():
    """(inputs, contexts) from the real feature/forecast/context pipeline (~2 s)."""
    inputs = synthetic_inputs(tickers=8, days=500, events=True)
    panel, forecasts = analysts(inputs)
    contexts = build_contexts(inputs, panel, forecasts, decision_points(panel.index, inputs.events))
    return inputs, contexts


def on_date(contexts: Contexts, date: pd.Timestamp) -> Contexts:
    return Contexts(contexts.frame[contexts.frame["date"] == date], contexts.benchmark)


def crafted(rows: list[dict], horizon: str = "1m") -> Contexts:
    """A context frame with just the columns the strategies read; defaults pass FixedRules."""
    base = {
        "date": DAY,
        "trigger": "scheduled",
        f"expected_return_{horizon}": 0.012,
        f"return_class_{horizon}": "up_a_lot",
        f"confidence_{horizon}": 0.41,
        "ev1_type": None,
        "ev1_date": pd.NaT,
    }
    return Contexts(pd.DataFrame([{**base, **row} for row in rows]))


def validated(signals: list[Signal]) -> list[Signal]:
    """model_construct skips validation: check every field range here instead."""
    return [Signal.model_validate(s.model_dump()) for s in signals]


# --- signal sources ---------------------------------------------------------------------


def test_always_buy_one_signal_per_row_in_order(pipeline) -> None:
    contexts = pipeline[1]
    day = on_date(contexts, contexts.frame["date"].max())
    signals = validated(AlwaysBuy(conviction=0.7, hold_days=10).signals(day))
    assert len(signals) == len(day)
    assert {(s.decision, s.conviction, s.hold_duration_days) for s in signals} == {("BUY", 0.7, 10)}
    assert AlwaysBuy().signals(Contexts(day.frame.iloc[:0])) == []


def test_fixed_rules_exactly_one_row_passes() -> None:
    day = crafted(
        [
            {"ticker": "PASS"},
            {"ticker": "LOWER", "expected_return_1m": 0.005},
            {"ticker": "FLAT", "return_class_1m": "flat"},
            {"ticker": "UNSURE", "confidence_1m": 0.2},
            {"ticker": "BAD", "ev1_type": "impairment", "ev1_date": pd.Timestamp("2021-03-01")},
            {"ticker": "DOWN", "expected_return_1m": -0.02, "return_class_1m": "down_a_lot"},
            {"ticker": "NONE", "expected_return_1m": np.nan, "return_class_1m": None},
        ]
    )
    signals = validated(FixedRules().signals(day))
    decisions = [s.decision for s in signals]
    assert decisions == ["BUY", "SKIP", "SKIP", "SKIP", "SELL", "SELL", "SKIP"]
    buy = signals[0]
    assert buy.conviction == pytest.approx(0.41)
    assert buy.reasoning == "rule: 1m expected +1.2% >= +1.0%, up_a_lot conf 0.41"
    assert buy.exit_triggers  # a BUY says what would end it
    assert "+0.5% < +1.0%" in signals[1].reasoning
    assert "flat not up" in signals[2].reasoning
    assert "0.20 < 0.30" in signals[3].reasoning
    assert "impairment 2021-03-01" in signals[4].reasoning
    assert signals[4].risk_factors == ["adverse 8-K: impairment 2021-03-01"]
    assert "-2.0% <= -1.0%" in signals[5].reasoning
    assert signals[6].conviction == 0.0 and "no 1m forecast" in signals[6].reasoning


def test_fixed_rules_adverse_in_any_recent_slot_and_other_horizon() -> None:
    day = crafted(
        [
            {"ticker": "A", "ev3_type": "restatement", "ev3_date": pd.Timestamp("2021-01-10")},
            {"ticker": "B", "ev3_type": "results", "ev3_date": pd.Timestamp("2021-01-10")},
        ],
        horizon="1w",
    )
    decisions = [s.decision for s in FixedRules(horizon="1w").signals(day)]
    assert decisions == ["SELL", "BUY"]


def test_fixed_rules_on_pipeline_contexts(pipeline) -> None:
    frame = pipeline[1].frame
    first = frame.loc[frame["expected_return_1m"].notna(), "date"].min()
    before = on_date(pipeline[1], frame.loc[frame["date"] < first, "date"].max())
    assert {s.decision for s in FixedRules().signals(before)} == {"SKIP"}  # no forecast yet
    rule = FixedRules(min_expected=0.0, min_confidence=0.0, sell_below=-0.5)
    dates = frame.loc[frame["date"] >= first, "date"].unique()
    for date in dates[:: max(1, len(dates) // 5)]:
        day = on_date(pipeline[1], date)
        signals = validated(rule.signals(day))
        assert len(signals) == len(day)
        f = day.frame
        expected = (f["expected_return_1m"] >= 0) & f["return_class_1m"].isin(
            ["up_a_little", "up_a_lot"]
        )
        assert [s.decision == "BUY" for s in signals] == expected.tolist()
        assert [s.conviction for s in signals] == pytest.approx(f["confidence_1m"].tolist())


# --- portfolio rules ----------------------------------------------------------------------


def test_registry_names_and_declared_kinds() -> None:
    for name, cls in STRATEGIES.items():
        strategy = make_strategy(name)
        assert isinstance(strategy, cls) and strategy.name == name
        assert kind_of(strategy) == ("rule" if name in PORTFOLIO_RULES else "signals")
        assert hasattr(strategy, "weights") == (name in PORTFOLIO_RULES)
    assert set(SIGNAL_SOURCES) == {"always_buy", "rules"}
    assert set(PORTFOLIO_RULES) == {"equal_weight", "lgbm_topk", "magnitude", "hrp"}
    assert STRATEGIES == SIGNAL_SOURCES | PORTFOLIO_RULES


def test_kind_of_reads_the_declaration() -> None:
    class Undeclared:  # a signal source need not declare its kind
        name = "x"

    class Odd:
        name, kind = "odd", "portfolio"

    assert kind_of(Undeclared()) == "signals"
    with pytest.raises(ConfigError, match="kind must be one of signals, rule, benchmark"):
        kind_of(Odd())


def test_equal_weight_sums_to_one() -> None:
    day = crafted([{"ticker": t} for t in "ABCD"])
    weights = EqualWeight().weights(DAY, day, pd.DataFrame())
    assert weights.to_dict() == {t: 0.25 for t in "ABCD"}
    assert EqualWeight().weights(DAY, Contexts(day.frame.iloc[:0]), pd.DataFrame()).empty


def test_top_k_picks_the_k_largest() -> None:
    values = {"A": 0.01, "B": 0.05, "C": -0.02, "D": 0.03, "E": np.nan}
    day = crafted([{"ticker": t, "expected_return_1m": v} for t, v in values.items()])
    assert TopK(k=2).weights(DAY, day, pd.DataFrame()).to_dict() == {"B": 0.5, "D": 0.5}
    everything = TopK(k=10).weights(DAY, day, pd.DataFrame())  # E has no forecast
    assert set(everything.index) == {"A", "B", "C", "D"} and everything.sum() == pytest.approx(1)
    nothing = crafted([{"ticker": "A", "expected_return_1m": np.nan}])
    assert TopK().weights(DAY, nothing, pd.DataFrame()).empty


def test_magnitude_choice_shorts_a_large_negative() -> None:
    day = crafted(
        [
            {"ticker": "A", "expected_return_1w": 0.01},
            {"ticker": "B", "expected_return_1w": -0.04},
            {"ticker": "C", "expected_return_1w": 0.03},
        ],
        horizon="1w",
    )
    assert MagnitudeChoice().weights(DAY, day, pd.DataFrame()).to_dict() == {"B": -1.0}
    longs = Contexts(day.frame.assign(expected_return_1w=[0.01, -0.02, 0.03]))
    assert MagnitudeChoice(weight=0.5).weights(DAY, longs, pd.DataFrame()).to_dict() == {"C": 0.5}
    none = Contexts(day.frame.assign(expected_return_1w=np.nan))
    assert MagnitudeChoice().weights(DAY, none, pd.DataFrame()).empty


def test_rebalance_schedules() -> None:
    ts = pd.Timestamp
    month, week = EqualWeight(every="month"), EqualWeight(every="week")
    assert month.rebalance(ts("2021-03-05"), None)
    assert not month.rebalance(ts("2021-03-31"), ts("2021-03-01"))
    assert month.rebalance(ts("2021-04-01"), ts("2021-03-31"))
    assert month.rebalance(ts("2021-03-01"), ts("2020-03-31"))  # same month, another year
    assert week.rebalance(ts("2021-03-08"), ts("2021-03-05"))  # Friday -> Monday
    assert not week.rebalance(ts("2021-03-12"), ts("2021-03-08"))  # Monday -> Friday
    assert not week.rebalance(ts("2021-01-01"), ts("2020-12-31"))  # one week across years
    assert TopK().rebalance(ts("2021-03-08"), ts("2021-03-05"))  # TopK: weekly by default


def random_closes(tickers: int = 6, days: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    returns = rng.normal(0, 0.01, (days, tickers)) * np.linspace(0.5, 2, tickers)
    index = pd.bdate_range("2020-06-01", periods=days)
    names = [f"S{i}" for i in range(tickers)]
    return pd.DataFrame(100 * np.exp(np.cumsum(returns, axis=0)), index=index, columns=names)


@pytest.mark.parametrize("method", ["hrp", "min_variance"])
def test_risk_parity_long_only_full_window_no_lookahead(method: str) -> None:
    closes = random_closes(days=140)
    date = closes.index[100]
    closes.loc[closes.index[90], "S1"] = np.nan  # a gap inside the window
    closes.loc[: closes.index[60], "S2"] = np.nan  # listed too late for the window
    day = Contexts(pd.DataFrame({"date": date, "ticker": ["S0", "S1", "S2", "S3", "S4"]}))
    rule = RiskParity(lookback=60, method=method)  # S5 has closes but no context
    weights = rule.weights(date, day, closes)
    assert set(weights.index) == {"S0", "S3", "S4"}
    assert weights.sum() == pytest.approx(1.0) and (weights >= 0).all()
    assert weights["S0"] > weights["S4"]  # the calmer stock gets more risk budget

    future = closes.copy()
    future.loc[future.index > date] *= np.random.default_rng(1).uniform(0.5, 2, (39, 6))
    future.loc[future.index > date, "S3"] = np.nan
    pd.testing.assert_series_equal(rule.weights(date, day, future), weights)


def test_risk_parity_short_history_and_max_assets() -> None:
    closes = random_closes(tickers=5, days=80)
    closes.loc[: closes.index[5], "S4"] = np.nan
    day = Contexts(pd.DataFrame({"date": closes.index[-1], "ticker": list(closes.columns)}))
    assert RiskParity(lookback=100).weights(closes.index[-1], day, closes).empty
    capped = RiskParity(lookback=40, max_assets=3).weights(closes.index[-1], day, closes)
    assert list(capped.index) == ["S0", "S1", "S2"]  # longest history; S4 is the youngest


def test_rules_on_pipeline_contexts(pipeline) -> None:
    inputs, contexts = pipeline
    date = contexts.frame["date"].max()
    day = on_date(contexts, date)
    closes = inputs.closes()
    for name in ("equal_weight", "lgbm_topk", "magnitude", "hrp"):
        weights = make_strategy(name).weights(date, day, closes)
        assert not weights.empty and np.isfinite(weights.to_numpy()).all()
        assert set(weights.index) <= set(day.frame["ticker"])
        assert weights.abs().sum() == pytest.approx(1.0)


# --- registry -----------------------------------------------------------------------------


def test_make_strategy_names_unknown_strategies_and_params() -> None:
    with pytest.raises(ConfigError, match=r"unknown strategy 'equal_wieght'.*'equal_weight'"):
        make_strategy("equal_wieght")
    with pytest.raises(ConfigError, match=r"no parameter 'lookbak'.*did you mean 'lookback'"):
        make_strategy("hrp", lookbak=100)
    with pytest.raises(ConfigError, match="name"):  # the registry name is not a parameter
        make_strategy("magnitude", name="x")
    assert make_strategy("lgbm_topk", k=5, every="month") == TopK(k=5, every="month")
    assert strategy_params("rules")["horizon"] == "1m"


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("always_buy", {"conviction": 1.5}),
        ("always_buy", {"hold_days": 0}),
        ("rules", {"horizon": "2m"}),
        ("rules", {"sell_below": 0.02}),
        ("equal_weight", {"every": "day"}),
        ("lgbm_topk", {"k": 0}),
        ("magnitude", {"weight": 2.0}),
        ("hrp", {"method": "mvo"}),
    ],
)
def test_bad_parameter_values_are_config_errors(name: str, params: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(params))):
        make_strategy(name, **params)
