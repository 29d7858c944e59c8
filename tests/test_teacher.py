"""Teachers of the training labels: hindsight (the default), the fixed rules, a Q-learning
agent (a fake here: the real one is `synthpm.learn`'s) and their consensus."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import analysts, synthetic_inputs
from pydantic import ValidationError

from synthpm.context import Contexts
from synthpm.data.errors import ConfigError
from synthpm.dataset import DatasetConfig, build_dataset
from synthpm.dataset.labels import consensus_conviction
from synthpm.dataset.teachers import TABLE_COLUMNS, teacher_table
from synthpm.limits import Limits
from synthpm.signals import Signal
from synthpm.strategies.sources import FixedRules

# empty and holding differ in whether the book holds the ticker; full and drawdown are books
# the manager refuses a BUY in
SCENARIOS = ("empty", "holding", "full", "drawdown")
LIMITS = Limits(max_positions=4)


def signal(decision: str, conviction: float) -> Signal:
    return Signal(decision=decision, conviction=conviction, hold_duration_days=30, reasoning="-")


class FakeLearner:
    """A Q-agent's interface: BUY when not holding, SELL when holding; records its calls."""

    name = "fake_qlearn"

    def __init__(self) -> None:
        self.calls: list[tuple[int, bool, bool]] = []  # (dates, holds all asked, holds any)

    def signals(self, contexts: Contexts) -> list[Signal]:
        held = {p.ticker for p in contexts.portfolio.positions} if contexts.portfolio else set()
        tickers = list(contexts.frame["ticker"])
        self.calls.append(
            (
                contexts.frame["date"].nunique(),
                all(t in held for t in tickers),
                any(t in held for t in tickers),
            )
        )
        return [signal("SELL", 0.6) if t in held else signal("BUY", 0.8) for t in tickers]


class Says:
    """A teacher that says `decision` for the tickers in `tickers`, SKIP for the others."""

    name = "says"

    def __init__(self, decision: str, tickers: set[str]) -> None:
        self.decision, self.tickers = decision, tickers

    def signals(self, contexts: Contexts) -> list[Signal]:
        return [
            signal(self.decision if t in self.tickers else "SKIP", 0.55)
            for t in contexts.frame["ticker"]
        ]


@pytest.fixture(scope="module")
def market():
    inputs = synthetic_inputs(tickers=6, days=520, events=True)
    panel, forecasts = analysts(inputs)
    # The tiny walk-forward forecasts one return for everything; spread it so the fixed
    # rules buy, sell and skip.
    rng = np.random.default_rng(7)
    expected = rng.normal(0.0, 0.03, len(forecasts))
    forecasts = forecasts.assign(
        expected_return_1m=expected, confidence_1m=rng.uniform(0.1, 0.6, len(forecasts))
    )
    classes = forecasts["return_class_1m"].copy()
    classes[:] = np.where(expected > 0, "up_a_little", "down_a_little")
    forecasts["return_class_1m"] = classes
    return inputs, panel, forecasts


def build(market, out, teacher="hindsight", teachers=None, scenarios=SCENARIOS) -> dict:
    inputs, panel, forecasts = market
    config = DatasetConfig(limits=LIMITS, scenarios=scenarios, teacher=teacher)
    return build_dataset(
        inputs, panel, forecasts, out, config, log=lambda _: None, teachers=teachers
    )


def read(folder) -> pd.DataFrame:
    parts = sorted(folder.glob("*/part-*.parquet"))
    frame = pd.concat(pd.read_parquet(p) for p in parts if p.parent.name != "contexts")
    return frame.sort_values("id").reset_index(drop=True)


@pytest.fixture(scope="module")
def hindsight(market, tmp_path_factory):
    out = tmp_path_factory.mktemp("hindsight")
    stats = build(market, out)
    return read(out), stats, out


def test_hindsight_is_the_default_and_ignores_other_teachers(market, hindsight, tmp_path):
    frame, stats, out = hindsight
    assert DatasetConfig().teacher == "hindsight"
    assert stats["teacher"] == "hindsight" and "agreement_with_hindsight" not in stats
    assert json.loads((out / "config.json").read_text())["teacher"] == "hindsight"
    # a hindsight build asks no teacher, so handing one in changes nothing
    build(market, tmp_path, "hindsight", {"rules": Says("BUY", {"T0"})})
    pd.testing.assert_frame_equal(read(tmp_path), frame, check_exact=True)


def test_rules_labels_are_the_fixed_rules_decisions_made_disciplined(market, hindsight, tmp_path):
    rules = FixedRules()
    stats = build(market, tmp_path, "rules", {"rules": rules})
    assert stats["teacher"] == "rules" and stats["teachers"] == {"rules": "rules"}
    assert json.loads((tmp_path / "config.json").read_text())["teacher"] == "rules"
    frame = read(tmp_path)
    assert len(frame) == len(hindsight[0]) > 0  # the same examples, other labels
    # the rules' own decisions on the stored contexts (they read no portfolio)
    contexts = pd.concat(pd.read_parquet(p) for p in sorted((tmp_path / "contexts").glob("*")))
    signals = rules.signals(Contexts(contexts.drop(columns="split")))
    rules = pd.DataFrame(
        {
            "decision": [s.decision for s in signals],
            "conviction": [round(s.conviction, 2) for s in signals],
        },
        index=pd.Index(contexts["date"].dt.date.astype(str) + ":" + contexts["ticker"]),
    )
    ours = rules.loc[frame["id"].str.rsplit(":", n=1).str[0]].reset_index(drop=True)
    np.testing.assert_allclose(frame["conviction"], ours["conviction"])
    by = frame.assign(rule=ours["decision"]).groupby(["scenario", "rule"])
    seen = {k: set(zip(g["decision"], g["reason"], strict=True)) for k, g in by}
    assert {r for _, r in seen} >= {"BUY", "SELL", "SKIP"}, seen  # the rules say all three
    assert seen["empty", "BUY"] == {("BUY", "buy")}
    assert seen["empty", "SELL"] == {("SKIP", "weak")}  # nothing to sell
    assert seen["empty", "SKIP"] == {("SKIP", "weak")}
    assert seen["holding", "SELL"] == {("SELL", "sell")}
    assert seen["holding", "SKIP"] == {("SKIP", "hold")}
    # the disciplined SKIPs: the manager refuses a BUY in a full book and in a drawdown
    assert seen["full", "BUY"] == {("SKIP", "max_positions")}
    assert seen["drawdown", "BUY"] == {("SKIP", "drawdown")}
    agree = (frame["decision"] == hindsight[0]["decision"]).mean()
    assert stats["agreement_with_hindsight"]["rules"] == pytest.approx(agree, abs=1e-4)


def test_a_learner_teacher_decides_per_date_and_holding_state(market, hindsight, tmp_path):
    learner = FakeLearner()
    stats = build(market, tmp_path, "qlearn", {"qlearn": learner})
    assert stats["teachers"] == {"qlearn": "fake_qlearn"}
    # asked one date at a time, once with an empty book and once holding every name asked
    assert {dates for dates, _, _ in learner.calls} == {1}
    assert {(all_held, any_held) for _, all_held, any_held in learner.calls} == {
        (False, False),
        (True, True),
    }
    frame = read(tmp_path)
    got = {
        name: set(zip(g["decision"], g["reason"], g["conviction"], strict=True))
        for name, g in frame.groupby("scenario")
    }
    assert got["empty"] == {("BUY", "buy", 0.8)}
    assert got["holding"] == {("SELL", "sell", 0.6)}  # the holding state's decision
    assert got["full"] == {("SKIP", "max_positions", 0.8)}
    assert got["drawdown"] == {("SKIP", "drawdown", 0.8)}
    # hindsight's hold: the engine's, whoever labels
    assert (frame["hold_days"] == hindsight[0]["hold_days"]).all()


def test_consensus_conviction_pulls_halfway_to_one_half_per_disagreement():
    assert consensus_conviction(0.9, [True, True]) == 0.9
    assert consensus_conviction(0.9, [False, True]) == 0.7
    assert consensus_conviction(0.9, [False, False]) == 0.6
    assert consensus_conviction(0.1, [True, False]) == 0.3  # a SELL's low conviction rises
    assert consensus_conviction(0.1, [False, False]) == 0.4
    assert consensus_conviction(0.5, [False, False]) == 0.5


def test_consensus_keeps_hindsight_decisions_and_lowers_disputed_convictions(
    market, hindsight, tmp_path
):
    truth, _, _ = hindsight
    truth = truth[truth["scenario"] == "empty"].reset_index(drop=True)
    assert set(truth["decision"]) == {"BUY", "SKIP"}  # an empty book sells nothing
    # rules: BUY for T0..T2, SKIP else; qlearn: a table that agrees with hindsight on T0, T3
    # and says the opposite elsewhere (BUY <-> SKIP), the same whether holding or not
    rules = Says("BUY", {"T0", "T1", "T2"})
    agrees = truth["ticker"].isin(["T0", "T3"])
    opposite = truth["decision"].map({"BUY": "SKIP", "SKIP": "BUY"})
    table = pd.DataFrame(
        {
            "date": truth["date"],
            "ticker": truth["ticker"],
            "decision": truth["decision"].where(agrees, opposite),
            "conviction": 0.5,
        }
    )
    table = pd.concat([table.assign(holding=False), table.assign(holding=True)])
    stats = build(
        market, tmp_path, "consensus", {"rules": rules, "qlearn": table}, scenarios=("empty",)
    )
    assert stats["teachers"] == {"rules": "says", "qlearn": "table"}
    frame = read(tmp_path)
    pd.testing.assert_series_equal(frame["decision"], truth["decision"])
    pd.testing.assert_series_equal(frame["reason"], truth["reason"])
    said = np.where(truth["ticker"].isin(["T0", "T1", "T2"]), "BUY", "SKIP")
    disagree = (said != truth["decision"]).astype(int) + (~agrees).astype(int)
    assert set(disagree) == {0, 1, 2}
    # Python's round, as the build's: 0.475 (from 0.4, two disagreeing) is 0.47 and 0.525 is
    # 0.53, symmetric about 0.5 (numpy's rounding of the same floats goes the other way)
    expected = [
        round(0.5 + (c - 0.5) / 2**k, 2) for c, k in zip(truth["conviction"], disagree, strict=True)
    ]
    np.testing.assert_allclose(frame["conviction"], expected)
    kept = disagree == 0
    assert (frame["conviction"][kept] == truth["conviction"][kept]).all()  # full conviction
    for row in frame.itertuples():  # the answer writes the lowered conviction
        assert Signal.model_validate_json(row.assistant).conviction == pytest.approx(row.conviction)
    assert stats["agreement_with_hindsight"]["qlearn"] == pytest.approx(agrees.mean(), abs=1e-4)


def test_teacher_table_has_both_holding_states(market):
    inputs, panel, forecasts = market
    from synthpm.dataset import build_contexts, decision_points

    points = decision_points(panel.index, inputs.events).tail(12)
    contexts = build_contexts(inputs, panel, forecasts, points)
    table = teacher_table(FakeLearner(), contexts, LIMITS)
    assert tuple(table.columns) == TABLE_COLUMNS and len(table) == 2 * len(points)
    assert set(table.loc[table["holding"], "decision"]) == {"SELL"}
    assert set(table.loc[~table["holding"], "decision"]) == {"BUY"}


def test_missing_or_bad_teachers_are_named(market, hindsight, tmp_path):
    with pytest.raises(ConfigError, match="needs the rules and qlearn teacher"):
        build(market, tmp_path / "a", "consensus")
    with pytest.raises(ConfigError, match="needs the qlearn teacher"):
        build(market, tmp_path / "b", "qlearn", {"rules": FixedRules()})
    with pytest.raises(ValidationError, match="'hindsight', 'rules', 'qlearn' or 'consensus'"):
        DatasetConfig(teacher="oracle")
    truth = hindsight[0]
    table = pd.DataFrame(
        {"date": truth["date"], "ticker": truth["ticker"], "holding": False, "conviction": 0.5}
    ).drop_duplicates()
    with pytest.raises(ConfigError, match="lacks the columns decision"):
        build(market, tmp_path / "c", "rules", {"rules": table})
    with pytest.raises(ConfigError, match="decision 'HOLD' is not one of BUY, SELL, SKIP"):
        build(market, tmp_path / "c", "rules", {"rules": table.assign(decision="HOLD")})
    with pytest.raises(ConfigError, match="conviction must be in 0..1"):
        build(
            market, tmp_path / "c", "rules", {"rules": table.assign(decision="BUY", conviction=2)}
        )
    partial = table.assign(decision="SKIP")  # no holding=True rows
    with pytest.raises(ConfigError, match="teacher 'rules' has no decision for T"):
        build(market, tmp_path / "d", "rules", {"rules": partial})
    assert not (tmp_path / "d").exists()  # nothing half-written


def test_a_bad_teacher_option_names_the_choices(tmp_path):
    from typer.testing import CliRunner

    from synthpm.cli import app

    # in process: the option reaches the config, whose error `synthpm` prints as one line
    result = CliRunner().invoke(app, ["dataset", "build", "--teacher", "oracle"])
    assert result.exit_code != 0
    assert "Input should be 'hindsight', 'rules', 'qlearn' or 'consensus'" in str(result.exception)
