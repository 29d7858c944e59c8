"""Training data: contexts, scenarios, hindsight labels, faithful reasoning, date splits."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import analysts, synthetic_inputs

from synthpm.context import Insider
from synthpm.data.errors import ConfigError
from synthpm.dataset import (
    SCENARIOS,
    DatasetConfig,
    PortfolioState,
    build_contexts,
    build_dataset,
    decision_points,
    render_prompt,
)
from synthpm.dataset.faithfulness import check_faithfulness
from synthpm.dataset.labels import LabelConfig, decide, outcomes
from synthpm.dataset.prompt import context_text, market_text
from synthpm.dataset.reasoning import write
from synthpm.dataset.scenarios import ScenarioBook, shown_drawdown
from synthpm.features import build_features
from synthpm.limits import Limits
from synthpm.signals import Signal


def universe(n: int = 40) -> dict[str, str]:
    sectors = ("Tech", "Energy", "Health", "Banks")
    return {f"S{i:02d}": sectors[i % 4] for i in range(n)}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    inputs = synthetic_inputs(tickers=6, days=700, events=True)
    panel, forecasts = analysts(inputs)
    out = tmp_path_factory.mktemp("dataset")
    config = DatasetConfig(limits=Limits(max_positions=4), jsonl=True)
    stats = build_dataset(inputs, panel, forecasts, out, config, log=lambda _: None)
    return inputs, panel, forecasts, out, stats


def read(folder, split):
    return pd.concat(pd.read_parquet(p) for p in sorted((folder / split).glob("*.parquet")))


# --- scenarios -------------------------------------------------------------------------


def test_every_scenario_is_consistent_and_is_what_it_claims():
    limits = Limits()
    book = ScenarioBook(np.datetime64("2012-03-16"), universe(), limits, seed=3)
    found = {s.name: s for s in book.for_context("S01", "Energy")}
    assert tuple(found) == SCENARIOS
    for s in found.values():
        state = PortfolioState.model_validate(s.state.model_dump())  # re-validates
        total = sum(p.weight for p in state.positions) * state.equity + state.cash
        assert total == pytest.approx(state.equity)
        assert state.equity_history[-1] == pytest.approx(state.equity)
        assert max(state.equity_history) == pytest.approx(state.peak_equity)
        if s.name != "holding":
            assert state.position("S01") is None
    assert found["empty"].state.cash == 1_000_000 and not found["empty"].state.positions
    assert found["healthy"].state.equity == pytest.approx(1.08e6)
    heavy = found["over_concentrated"].state.sector_weight("Energy")
    assert limits.max_sector < heavy <= limits.max_sector + 0.10 + 1e-9
    assert found["drawdown"].state.drawdown <= -shown_drawdown(limits)
    assert len(found["full"].state.positions) == limits.max_positions
    assert found["low_cash"].state.cash_weight < limits.cash_floor
    assert found["holding"].state.position("S01") is not None
    assert sum(r > 0 for r in found["hot_streak"].state.recent_trades) >= 8
    assert sum(r > 0 for r in found["cold_streak"].state.recent_trades) <= 2
    assert found["bear_market"].market["vix"] >= 32
    for name in ("healthy", "hot_streak", "cold_streak", "holding"):
        assert max(found[name].state.sector_weight(s) for s in ("Tech", "Energy")) <= 0.30 + 0.05


def test_scenarios_are_seeded_and_independent_of_order():
    def make():
        return ScenarioBook(np.datetime64("2012-03-16"), universe(), seed=1)

    a = make().for_context("S05", "Energy")
    b_book = make()
    b_book.for_context("S01", "Energy")  # another context of the same sector first
    b = b_book.for_context("S05", "Energy")
    assert [s.state for s in a] == [s.state for s in b]
    other = ScenarioBook(np.datetime64("2012-03-16"), universe(), seed=2).for_context(
        "S05", "Energy"
    )
    assert [s.state for s in a] != [s.state for s in other]


def test_a_small_universe_leaves_out_what_it_cannot_fill():
    book = ScenarioBook(np.datetime64("2012-03-16"), universe(12))
    names = [s.name for s in book.for_context("S01", "Energy")]
    assert "full" not in names and "empty" in names  # 11 other names cannot fill 20 slots


def test_portfolio_state_rejects_inconsistent_books():
    with pytest.raises(ValueError, match="must equal equity"):
        PortfolioState(
            cash=500.0,
            equity=1000.0,
            positions=[{"ticker": "A", "sector": "Tech", "weight": 0.2}],
        )


# --- labels ----------------------------------------------------------------------------


def test_labels_are_excess_net_of_costs_over_the_hold_and_ranked_on_the_date():
    inputs = synthetic_inputs(tickers=5, days=120)
    closes = inputs.closes()
    dates = closes.index
    day, h = 10, 21
    config = LabelConfig(horizon=h, cost_bps=10)
    points = pd.DataFrame({"date": [dates[day]] * 5, "ticker": list(closes.columns)})
    got = outcomes(inputs, points, config)
    c = closes.to_numpy()
    b = inputs.market.set_index("date")["index_close"].reindex(dates).to_numpy()
    expected = c[day + 1 + h] / c[day + 1] - 1 - (b[day + 1 + h] / b[day + 1] - 1) - 0.002
    np.testing.assert_allclose(got["outcome"], expected)
    # the worst member of the date gets 0, the best 1, the others evenly between
    order = np.argsort(np.argsort(expected))
    np.testing.assert_allclose(got["conviction"], np.round(order / 4, 2))
    assert (got["hold_days"] == (dates[day + 1 + h] - dates[day]).days).all()
    late = pd.DataFrame({"date": [dates[-10]], "ticker": ["T1"]})
    assert np.isnan(outcomes(inputs, late, config)["outcome"].iloc[0])  # window past the data
    assert config.lookahead() == 1 + h


def test_label_percentiles_rank_members_only():
    inputs = synthetic_inputs(tickers=5, days=120)
    closes = inputs.closes()
    day = 10
    points = pd.DataFrame({"date": [closes.index[day]] * 2, "ticker": ["T0", "T1"]})
    everyone = outcomes(inputs, points)
    inputs.universe = pd.DataFrame(
        {"ticker": ["T0", "T1"], "start": [closes.index[0]] * 2, "end": [pd.NaT] * 2}
    )
    two = outcomes(inputs, points)
    np.testing.assert_allclose(two["outcome"], everyone["outcome"])
    assert sorted(two["conviction"]) == [0.0, 1.0]  # ranked against each other alone


@pytest.fixture(scope="module")
def strong_context():
    inputs = synthetic_inputs(tickers=6, days=400, events=True)
    panel, forecasts = analysts(inputs)
    points = decision_points(panel.index, inputs.events)
    contexts = build_contexts(inputs, panel, forecasts, points.tail(6))
    return contexts[5]


def test_the_portfolio_changes_the_decision(strong_context):
    ctx, limits = strong_context, Limits()
    # four sectors: a nearly invested book of two would hold one above the 40% sector cap,
    # and the sector room, not the cash floor, would be the limit that binds
    sectors = ("Energy", "Tech", "Health", "Utilities")
    names = {t: sectors[i % 4] for i, t in enumerate(f"S{i:02d}" for i in range(40))}
    names[ctx.ticker] = ctx.sector
    book = ScenarioBook(np.datetime64(ctx.date), names, limits)
    scenarios = {s.name: s for s in book.for_context(ctx.ticker, ctx.sector)}
    assert set(scenarios) == set(SCENARIOS)
    text = context_text(ctx)

    def label(name, conviction, outcome):
        s = scenarios[name]
        decision, reason = decide(
            conviction, outcome, s, ctx.ticker, ctx.sector, limits, LabelConfig()
        )
        market = market_text(ctx.market.model_copy(update=s.market) if s.market else ctx.market)
        facts = text.facts + market.facts
        words = write(decision, reason, facts, s, ctx.ticker, ctx.sector, text.best, limits)
        prompt = render_prompt(ctx, limits, s)
        assert check_faithfulness(words, prompt).ok, (name, words)
        return decision, reason, words.reasoning

    strong = {name: label(name, 0.95, 0.25) for name in SCENARIOS}
    assert strong["empty"][:2] == ("BUY", "buy")
    assert strong["healthy"][:2] == ("BUY", "buy")
    assert strong["over_concentrated"][:2] == ("SKIP", "sector_limit")
    assert "40% sector limit" in strong["over_concentrated"][2]
    assert ctx.sector in strong["over_concentrated"][2]
    assert strong["full"][:2] == ("SKIP", "max_positions")
    assert strong["low_cash"][:2] == ("SKIP", "cash_floor")
    assert strong["drawdown"][:2] == ("SKIP", "drawdown")
    assert strong["holding"][:2] == ("BUY", "buy")  # below the cap: add
    assert strong["bear_market"][:2] == ("BUY", "buy")
    assert label("bear_market", 0.8, 0.15)[:2] == ("SKIP", "bear_bar")
    assert label("empty", 0.8, 0.15)[:2] == ("BUY", "buy")
    assert label("holding", 0.0, -0.1)[:2] == ("SELL", "sell")
    assert label("holding", 0.5, 0.01)[:2] == ("SKIP", "hold")
    assert label("empty", 0.5, 0.01)[:2] == ("SKIP", "weak")
    # with the drawdown limit and the stop loss off, the book in a drawdown may buy, and no
    # prompt or reasoning states either
    limits = Limits(derisk_drawdown=None, stop_loss=None)
    scenarios = {s.name: s for s in ScenarioBook(np.datetime64(ctx.date), names, limits)
                 .for_context(ctx.ticker, ctx.sector)}  # fmt: skip
    assert label("drawdown", 0.95, 0.25)[:2] == ("BUY", "buy")
    prompt = render_prompt(ctx, limits, scenarios["drawdown"])
    assert "drawdown beyond" not in prompt and "stop loss" not in prompt


# --- contexts and prompts --------------------------------------------------------------


def test_contexts_show_only_recent_known_events_and_trades():
    inputs = synthetic_inputs(tickers=3, days=300, events=True)
    panel = build_features(inputs)
    points = decision_points(panel.index, inputs.events, filings=True)
    frame = build_contexts(inputs, panel, None, points).frame
    events, trades = inputs.events, inputs.insider
    for row in frame.sample(60, random_state=0).itertuples():
        date = row.date
        mine = events[(events["ticker"] == row.ticker) & (events["date_known"] <= date)]
        window = mine[mine["date_known"] >= date - pd.Timedelta(days=90)].sort_values("date_known")
        got = [d for d in (row.ev1_date, row.ev2_date, row.ev3_date) if not pd.isna(d)]
        assert got == list(window["date_known"])[::-1][:3]
        assert row.ev_covered == (len(mine) > 0)
        t = trades[(trades["ticker"] == row.ticker) & (trades["date_known"] <= date)]
        t = t[t["date_known"] >= date - pd.Timedelta(days=90)]
        assert (not pd.isna(row.ins1_date)) == (len(t) > 0)
        if len(t):
            assert row.ins1_date == t["date_known"].max()
    filing_days = frame[frame["trigger"] == "filing"]
    assert len(filing_days) > 0
    assert all(filing_days["ev1_date"] == filing_days["date"])


def test_prompt_has_every_section_and_is_deterministic(strong_context):
    prompt = render_prompt(strong_context)
    # no PRICE: a back-adjusted level encodes later splits and dividends
    order = ["DATE", "MARKET", "PORTFOLIO", "LIMITS", "COMPANY", "FORECASTS"]
    order += ["EVENTS", "INSIDER ACTIVITY", "TRENDS", "POSITION", "DECISION REQUIRED"]
    starts = [line.split(":")[0].split(" (")[0] for line in prompt.splitlines() if line[0] != " "]
    assert starts == order
    # The shared part comes first and never names the stock: one prefix per decision date.
    shared = prompt[: prompt.index("\nCOMPANY")]
    assert strong_context.ticker not in shared and strong_context.sector not in shared
    assert prompt == render_prompt(strong_context.model_copy(deep=True))
    bare = strong_context.model_copy(
        update={"forecasts": [], "events_covered": False, "insider": Insider()}
    )
    text = render_prompt(bare.model_validate(bare.model_dump()))
    assert "FORECASTS: none yet" in text and "no filings on record" in text
    assert "no Form 4 data on record" in text


# --- the build -------------------------------------------------------------------------


def test_build_writes_split_conversations_that_are_faithful(built):
    _, _, _, out, stats = built
    frames = {s: read(out, s) for s in ("train", "validation", "test")}
    assert all(len(f) for f in frames.values())
    assert stats["examples"] == sum(len(f) for f in frames.values())
    train, val, test = frames["train"], frames["validation"], frames["test"]
    assert train["date"].max() < val["date"].min() <= val["date"].max() < test["date"].min()
    assert set(train["scenario"]) == set(SCENARIOS)
    # a filing day off the weekly schedule draws its books from the whole market too
    per_point = train.groupby(["date", "ticker", "trigger"], observed=True)["scenario"].nunique()
    assert per_point.xs("filing", level="trigger").min() == len(SCENARIOS)
    assert set(train["decision"]) == {"BUY", "SELL", "SKIP"}
    for row in pd.concat(frames.values()).itertuples():
        signal = Signal.model_validate_json(row.assistant)
        assert signal.decision == row.decision and signal.conviction == pytest.approx(
            row.conviction
        )
        result = check_faithfulness(signal, row.user)
        assert result.ok, (row.id, result.unsupported)
    # labels depend on the outcome only through its rank on the date
    one = train[train["scenario"] == "empty"].sort_values(["date", "outcome"])
    assert (one.groupby("date")["conviction"].diff().dropna() >= 0).all()
    assert (train.loc[train["decision"] == "BUY", "conviction"] >= 0.7).all()
    line = json.loads((out / "train" / "part-00000.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in line["messages"]] == ["system", "user", "assistant"]
    assert (out / "contexts").is_dir() and stats["contexts"]["embargoed"] > 0


def test_train_examples_ignore_prices_after_the_split(built, tmp_path):
    _, _, _, out, stats = built
    cut = pd.Timestamp(stats["val_start"])
    changed = synthetic_inputs(tickers=6, days=700, events=True)
    later = changed.prices["date"] >= cut
    changed.prices.loc[later, ["open", "high", "low", "close"]] *= np.random.default_rng(5).uniform(
        0.5, 1.5, (later.sum(), 1)
    )
    changed.market.loc[changed.market["date"] >= cut, "index_close"] *= 0.7
    panel, forecasts = analysts(changed)
    config = DatasetConfig(limits=Limits(max_positions=4), val_start=str(cut.date()))
    build_dataset(changed, panel, forecasts, tmp_path, config, log=lambda _: None)
    pd.testing.assert_frame_equal(read(out, "train"), read(tmp_path, "train"), check_exact=True)
    assert not read(out, "test").equals(read(tmp_path, "test"))


def test_bad_dataset_configs_are_named():
    inputs = synthetic_inputs(tickers=3, days=200)
    panel = build_features(inputs)
    with pytest.raises(ConfigError, match="unknown scenarios"):
        build_dataset(inputs, panel, None, "/tmp/x", DatasetConfig(scenarios=("sideways",)))
    with pytest.raises(ConfigError, match="no decision points"):
        build_dataset(inputs, panel, None, "/tmp/x", DatasetConfig(start="2030-01-01"))


def test_held_out_tickers_are_named_only_in_the_test_split(built, tmp_path):
    import re

    from synthpm.dataset.build import held_out

    inputs, panel, forecasts, _, _ = built
    config = DatasetConfig(limits=Limits(max_positions=4), held_out_tickers=0.2, seed=3)
    stats = build_dataset(inputs, panel, forecasts, tmp_path, config, log=lambda _: None)
    names = stats["held_out_tickers"]
    assert len(names) == 1 and names == held_out(inputs.prices["ticker"].unique(), 0.2, 3)
    assert held_out(["B", "A", "C"], 0.4, 1) == held_out(["C", "B", "A"], 0.4, 1)
    assert held_out(["A", "B"], 0.0, 1) == []
    named = re.compile(rf"\b{re.escape(names[0])}\b")
    for split in ("train", "validation"):
        frame = read(tmp_path, split)
        assert len(frame) and names[0] not in set(frame["ticker"])
        # not even as another stock's holding in a scenario's book
        texts = frame["user"] + frame["assistant"]
        assert not texts.str.contains(named).any(), split
    test = read(tmp_path, "test")
    assert names[0] in set(test["ticker"])
    assert stats["contexts"]["held_out"] > 0
