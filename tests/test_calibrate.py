"""Calibrated conviction: the isotonic map, its file, the agent and `lm eval` applying it."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_trained
from sklearn.isotonic import IsotonicRegression
from test_report import make_run

from synthpm.agent import PortfolioAgent
from synthpm.context import Contexts
from synthpm.data.errors import ConfigError
from synthpm.dataset.labels import LabelConfig
from synthpm.dataset.prompt import holds_stock
from synthpm.limits import Limits
from synthpm.lm.calibrate import (
    FILE,
    Bands,
    Calibration,
    calibration_error,
    calibration_rows,
    date_percentile,
    fit_calibration,
    read_convictions,
    reliability,
)
from synthpm.lm.decode import parse_signal
from synthpm.lm.evaluate import evaluate
from synthpm.lm.train import load_model
from synthpm.report import write_report

GRID = np.linspace(-0.2, 1.2, 141)  # beyond both ends: the map clips


def noisy(seed: int = 0, n: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Scores and wins that rise with them, with noise."""
    rng = np.random.default_rng(seed)
    p = rng.random(n)
    return p, (rng.random(n) < 0.2 + 0.5 * p).astype(float)


def test_the_map_is_monotone_in_the_unit_interval_and_is_isotonic():
    p, won = noisy()
    calibration = Calibration.fit(p, won)
    mapped = calibration(GRID)
    assert np.all(np.diff(mapped) >= 0) and mapped.min() >= 0 and mapped.max() <= 1
    # through the middle of each of sklearn's isotonic steps: its value there, and strictly
    # increasing between the first and last step, so no two convictions there tie
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(p, won)
    np.testing.assert_allclose(calibration.y, np.unique(iso.y_thresholds_), atol=1e-12)
    np.testing.assert_allclose(calibration(calibration.x), iso.predict(calibration.x), atol=1e-12)
    inside = np.sort(p[(p > calibration.x[0]) & (p < calibration.x[-1])])
    assert np.all(np.diff(calibration(inside)) > 0)
    # in sample, the best monotone map is no worse than the scores as they are
    assert np.mean((calibration(p) - won) ** 2) <= np.mean((p - won) ** 2)


def test_wins_ordered_by_the_score_give_a_ramp_between_the_two_steps():
    p = np.random.default_rng(1).permutation(np.linspace(0.05, 0.95, 91))
    won = (p > 0.6).astype(float)
    calibration = Calibration.fit(p, won)
    assert calibration.y.tolist() == [0.0, 1.0]
    losers, winners = np.sort(p[won == 0]), np.sort(p[won == 1])
    middle = [(losers[0] + losers[-1]) / 2, (winners[0] + winners[-1]) / 2]
    np.testing.assert_allclose(calibration.x, middle)
    # 0 up to the middle of the losers, 1 from the middle of the winners, a ramp between
    assert calibration(np.array([-1.0, 0.0, middle[0]])).tolist() == [0.0, 0.0, 0.0]
    assert calibration(np.array([middle[1], 1.0, 2.0])).tolist() == [1.0, 1.0, 1.0]
    assert calibration(np.array([0.6]))[0] == pytest.approx((0.6 - middle[0]) / np.diff(middle)[0])


def test_an_anti_ranking_score_gets_a_flat_map():
    p = np.linspace(0, 1, 50)
    calibration = Calibration.fit(p, (p < 0.5).astype(float))  # higher score, fewer wins
    assert np.ptp(calibration(GRID)) == 0 and calibration(GRID)[0] == pytest.approx(0.5)


def test_round_trip_through_the_file(tmp_path):
    assert Calibration.load(tmp_path) is None  # no calibration.json: none
    p, won = noisy(2)
    fitted = Calibration.fit(p, won, {"n": len(p), "dates": ["2020-01-01", "2020-12-31"]})
    fitted.save(tmp_path)
    document = json.loads((tmp_path / FILE).read_text())
    assert {"x_thresholds", "y_thresholds", "n", "dates"} <= set(document)
    loaded = Calibration.load(tmp_path)
    assert np.array_equal(loaded.x, fitted.x) and np.array_equal(loaded.y, fitted.y)
    assert loaded.record == fitted.record
    assert np.array_equal(loaded(GRID), fitted(GRID))


def test_bands_are_the_expectations_quantiles_at_the_label_bars(tmp_path):
    expected = np.linspace(0.2, 0.6, 401)
    bands = Bands.fit(expected, LabelConfig(sell_conviction=0.25, buy_conviction=0.9))
    assert bands.sell_below == pytest.approx(0.3) and bands.buy_at == pytest.approx(0.56)
    conviction = np.array([0.57, 0.57, 0.29, 0.29, 0.45])
    held = np.array([True, False, True, False, True])
    # a SELL exits a holding only; between the bands, hold or stay out
    assert bands.decide(conviction, held) == ["BUY", "BUY", "SELL", "SKIP", "SKIP"]
    p, won = noisy(3)
    with_bands = Calibration.fit(p, won, {"n": len(p)})
    Calibration(with_bands.x, with_bands.y, with_bands.record, bands).save(tmp_path)
    assert Calibration.load(tmp_path).bands == bands
    with_bands.save(tmp_path)  # a map without bands (fitted before they existed)
    assert Calibration.load(tmp_path).bands is None


def test_a_map_of_other_weights_is_refused(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"retrained")
    Calibration(np.array([0.0, 1.0]), np.array([0.1, 0.9]), {"model_sha256": "0" * 64}).save(
        tmp_path
    )
    with pytest.raises(ConfigError, match="other weights"):
        Calibration.load(tmp_path)


def test_reliability_and_ece_by_hand():
    p = np.array([0.05, 0.15, 0.15, 0.95, 1.0])
    won = np.array([0.0, 1.0, 0.0, 1.0, 1.0])
    table = reliability(p, won)
    assert len(table) == 10 and [r["count"] for r in table] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert table[1]["mean_predicted"] == pytest.approx(0.15) and table[1]["observed"] == 0.5
    assert table[2]["mean_predicted"] is None and table[9]["observed"] == 1.0  # 1.0: last bin
    # |0.05 - 0| x 1/5 + |0.15 - 0.5| x 2/5 + |0.975 - 1| x 2/5
    assert calibration_error(p, won) == pytest.approx(0.01 + 0.14 + 0.01)


def _shard(path, frame: pd.DataFrame) -> None:
    path.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path / "part-00000.parquet")


def test_calibration_rows_one_per_context_capped_in_date_order(tmp_path):
    days = pd.bdate_range("2021-01-04", periods=30).date
    rows = [(d, f"T{i}", s, 0.01 * (i - 2)) for d in days for i in range(5)
            for s in ("empty", "holding")]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["date", "ticker", "scenario", "outcome"])
    frame.loc[0, "outcome"] = np.nan  # unlabelled: left out
    frame = frame.assign(system="s", user="u")
    _shard(tmp_path / "validation", frame.sample(frac=1, random_state=0))
    every = calibration_rows(tmp_path, None)
    assert set(every["scenario"]) == {"empty"} and len(every) == 30 * 5 - 1
    assert every["outcome"].notna().all()
    some = calibration_rows(tmp_path, 40, seed=3)
    assert len(some) == 40 and some.equals(some.sort_values(["date", "ticker"]))
    assert some["date"].nunique() > 15  # drawn across the split, not its first dates
    assert calibration_rows(tmp_path, 40, seed=3).equals(some)  # the seed decides

    # no `empty` scenario in the build: one copy of each context
    _shard(tmp_path / "other" / "validation", frame.assign(scenario="full"))
    one = calibration_rows(tmp_path / "other", None)
    assert len(one) == len(one.drop_duplicates(["date", "ticker"])) == 30 * 5
    with pytest.raises(ConfigError, match="no validation"):
        calibration_rows(tmp_path / "nowhere", None)


# A tiny model on a tiny synthetic market, as the other LM tests build it.
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    data, model = tmp_path_factory.mktemp("ds"), tmp_path_factory.mktemp("lm")
    _, contexts = tiny_trained(data, model, max_positions=4)
    return data, model, contexts


@pytest.fixture
def model_copy(world, tmp_path):
    """The trained model in a folder of its own (tests write calibration.json into it)."""
    return shutil.copytree(world[1], tmp_path / "lm")


@pytest.mark.slow
def test_fit_calibration_writes_the_file_the_agent_applies(world, model_copy):
    data, _, contexts = world
    assert PortfolioAgent.load(model_copy).calibration is None  # none yet: loads as before
    fitted = fit_calibration(model_copy, data, n=30, batch_size=8)
    record = json.loads((model_copy / FILE).read_text())
    assert record["split"] == "validation" and record["scenario"] == "empty"
    assert record["n"] == 30 and record["dates"][0] <= record["dates"][1]
    stats = json.loads((data / "stats.json").read_text())
    assert stats["val_start"] <= record["dates"][0] and record["dates"][1] < stats["test_start"]
    # both scores recorded; on 30 rows the map (linear between isotonic steps) need not beat
    # the raw scores even in sample (the step function would): the quality of the map is
    # tested on a larger sample (`test_the_map_is_monotone_in_the_unit_interval_and_is_isotonic`)
    assert all(0 <= record[k]["brier"] <= 1 for k in ("before", "after"))
    assert np.all(np.diff(record["y_thresholds"]) >= 0)

    limits = Limits(max_positions=4)
    agent = PortfolioAgent.load(model_copy, limits=limits)
    assert agent.calibration is not None and np.array_equal(agent.calibration.x, fitted.x)
    day = contexts[:8]
    signals = agent.signals(day)
    prompts = [agent.prompt_ids(c, limits) for c in day]
    raw = np.array([e for _, e in agent.decoder.decode_scored(prompts, "signal")])
    assert [s.conviction for s in signals] == [round(float(v), 4) for v in fitted(raw)]
    # the bands decide, at the label bars' quantiles of the validation expectations
    assert record["bands"] == asdict(fitted.bands)
    assert (fitted.bands.sell_bar, fitted.bands.buy_bar) == (0.3, 0.7)
    assert fitted.bands.sell_below < fitted.bands.buy_at
    held = np.array([holds_stock(agent.decoder.adapter.user_text(p)) for p in prompts])
    assert [s.decision for s in signals] == fitted.bands.decide(raw, held)
    read = PortfolioAgent.load(model_copy, limits=limits, conviction="read")
    assert read.calibration is None  # the written number is never mapped; greedy decisions
    greedy = [s.decision for s in agent.decoder.decode(prompts, "signal")]
    assert [s.decision for s in read.signals(day)] == greedy


def test_on_a_date_the_ranks_decide_at_the_label_bars():
    bands = Bands(sell_below=0.9, buy_at=0.95)  # fixed bands would buy none of these
    expected = np.array([0.10, 0.40, 0.20, 0.30, 0.50, 0.35, 0.15, 0.45, 0.25, 0.05, 0.30])
    held = np.arange(11) % 2 == 0
    decided = bands.decide_on_date(expected, held)
    rank = date_percentile(expected)
    assert rank.min() == 0 and rank.max() == 1 and rank[3] == rank[10]  # a tie shares its rank
    assert [i for i, d in enumerate(decided) if d == "BUY"] == list(np.flatnonzero(rank >= 0.7))
    assert [i for i, d in enumerate(decided) if d == "SELL"] == [0, 2, 6]  # held, bottom 30%
    assert decided[9] == "SKIP"  # the lowest, but not held
    assert bands.decide(expected, held) == ["SELL", "SKIP"] * 5 + ["SELL"]
    assert date_percentile(np.array([0.3])).tolist() == [0.5]


@pytest.mark.slow
def test_the_agent_decides_a_dates_stocks_by_their_rank_among_each_other(world, model_copy):
    data, _, contexts = world
    fitted = fit_calibration(model_copy, data, n=30, batch_size=8)
    limits = Limits(max_positions=4)
    dates = contexts.frame["date"]
    day = Contexts(contexts.frame[dates.isin(dates.unique()[:2])], limits=limits)
    agent = PortfolioAgent.load(model_copy, limits=limits, cross_section=3)
    signals = agent.signals(day)
    prompts = [agent.prompt_ids(c, limits) for c in day]
    expected = agent.decoder.expectations(prompts, batch_size=5)
    scored = agent.decoder.decode_scored(prompts, "signal")
    assert expected == pytest.approx([s.expected for s in scored])  # read at the same step
    assert len(np.unique(expected)) > 2, "the tiny model's expectation does not vary"
    held = np.array([holds_stock(agent.decoder.adapter.user_text(p)) for p in prompts])
    want = []
    for date in day.frame["date"].unique():
        on = np.flatnonzero(day.frame["date"] == date)
        assert len(on) >= 3
        want += fitted.bands.decide_on_date(expected[on], held[on])
    assert [s.decision for s in signals] == want
    assert "BUY" in want and "SKIP" in want
    assert want != fitted.bands.decide(expected, held)  # the two rules differ on these stocks
    # fewer stocks than the cross-section: the bands decide each alone, as before
    alone = PortfolioAgent.load(model_copy, limits=limits, cross_section=len(day) + 1)
    assert [s.decision for s in alone.signals(day)] == fitted.bands.decide(expected, held)


@pytest.mark.slow
def test_the_bands_pick_the_decision_the_model_then_writes_on(world, model_copy):
    """Steered decoding: whatever the model prefers, the bands' decision is written (SELL
    only where the prompt says the book holds the stock), and the rest of the answer is the
    model's from that decision's branch."""
    data, _, _ = world
    rows = pd.concat(pd.read_parquet(p) for p in sorted((data / "validation").glob("*.parquet")))
    rows = pd.concat(
        [rows[rows["scenario"] == "holding"][:6], rows[rows["scenario"] == "empty"][:6]]
    )
    assert [holds_stock(u) for u in rows["user"]] == [True] * 6 + [False] * 6
    model, tokenizer = load_model(model_copy)
    agent = PortfolioAgent(model, tokenizer)
    prompts = [
        agent.decoder.prompt_ids(s, u) for s, u in zip(rows["system"], rows["user"], strict=True)
    ]
    p, won = noisy(4)
    base = Calibration.fit(p, won)
    for bands, want in [
        (Bands(sell_below=-1.0, buy_at=-1.0), ["BUY"] * 12),
        (Bands(sell_below=2.0, buy_at=3.0), ["SELL"] * 6 + ["SKIP"] * 6),
        (Bands(sell_below=-1.0, buy_at=3.0), ["SKIP"] * 12),
    ]:
        steer = agent.decoder.steering(Calibration(base.x, base.y, {}, bands))
        scored = agent.decoder.decode_scored(prompts, "full", 4, steer)
        signals = [parse_signal(s.text) for s in scored]
        assert [s.decision for s in signals] == want
        # the expectation is over every decision: the same whichever one is written
        free = agent.decoder.decode_scored(prompts, "full", 4)
        assert [s.expected for s in scored] == pytest.approx([s.expected for s in free])


@pytest.mark.slow
def test_wins_ordered_by_the_models_score_are_separated(world, model_copy, tmp_path):
    """End to end: outcomes rewritten so the model's own expectation orders the wins."""
    data, model, _ = world
    copy = shutil.copytree(data, tmp_path / "ds")
    rows = calibration_rows(copy, None)
    net, tokenizer = load_model(model)
    _, expected = read_convictions(net, tokenizer, rows, batch_size=8)
    levels = np.unique(expected)
    assert len(levels) >= 4, "the tiny model's expectation does not vary"
    middle = levels[len(levels) // 4 : 3 * len(levels) // 4 + 1]
    gap = int(np.argmax(np.diff(middle)))
    cut = (middle[gap] + middle[gap + 1]) / 2  # in a wide gap: no score near it
    score = dict(zip(rows["user"], expected, strict=True))
    for part in sorted((copy / "validation").glob("part-*.parquet")):
        shard = pd.read_parquet(part)
        empty = shard["scenario"] == "empty"
        wins = shard.loc[empty, "user"].map(score) > cut
        shard.loc[empty, "outcome"] = np.where(wins, 0.02, -0.02)
        shard.to_parquet(part)
    fitted = fit_calibration(model_copy, copy, n=None, batch_size=8)
    assert fitted.y.tolist() == [0.0, 1.0]
    mapped, won = fitted(expected), expected > cut
    assert mapped[~won].max() < mapped[won].min()  # every win above every loss
    assert fitted.record["after"]["brier"] < fitted.record["before"]["brier"]


@pytest.mark.slow
def test_eval_reports_reliability_raw_and_calibrated(world, model_copy, tmp_path):
    data, _, _ = world
    raw_only = evaluate(model_copy, data, n=8, batch_size=8, ic_dates=6)["calibration"]
    assert raw_only["calibrated"] is None and raw_only["fit"] is None
    assert sum(r["count"] for r in raw_only["raw"]["reliability"]) == raw_only["examples"] > 0

    fit_calibration(model_copy, data, n=30, batch_size=8)
    report = evaluate(model_copy, data, n=8, batch_size=8, ic_dates=6)
    section = json.loads((model_copy / "eval.json").read_text())["calibration"]
    assert section == json.loads(json.dumps(report["calibration"]))
    assert section["split"] == "test" and section["scenario"] == "empty"
    assert section["raw"] == raw_only["raw"]  # the same rows, the same readings
    assert section["fit"]["n"] == 30
    table = section["calibrated"]["reliability"]
    assert len(table) == 10 and sum(r["count"] for r in table) == section["examples"]
    for row in table:
        if row["count"]:
            assert row["low"] <= row["mean_predicted"] <= row["high"]
            assert 0 <= row["observed"] <= 1
    for reading in ("raw", "calibrated"):
        assert 0 <= section[reading]["brier"] <= 1 and 0 <= section[reading]["ece"] <= 1

    # the report draws it for the run of that name
    run = make_run(tmp_path / "runs", "lm")
    page = write_report({"lm": run}, tmp_path / "r.html", model_evals={"lm": report})
    text = page.read_text()
    assert "Conviction calibration" in text and "perfectly calibrated" in text
    assert "lm · calibrated" in text and "lm · raw" in text
    plain = write_report({"lm": run}, tmp_path / "p.html").read_text()
    assert "Conviction calibration" not in plain


@pytest.mark.slow
def test_convictions_read_in_pieces_anywhere_are_the_same(world, ray_workers):
    """`lm eval`'s and calibration's decoding, spread over Ray's workers piece by piece,
    reads every conviction as this process does, to the last bit."""
    data, model, _ = world
    rows = calibration_rows(data, 40)
    net, tokenizer = load_model(model)
    here = read_convictions(net, tokenizer, rows, batch_size=8, piece=9)
    there = read_convictions(net, tokenizer, rows, batch_size=8, executor=ray_workers, piece=9)
    assert len(here.expected) == len(rows) > 27  # several pieces
    assert np.array_equal(here.expected, there.expected)
    assert np.array_equal(here.written, there.written, equal_nan=True)
