"""The journal exported as training conversations (`synthpm.journal.export`): the dataset's
format and splits, the journaled prompt and signal, faithfulness, hindsight labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import analysts, synthetic_inputs

from synthpm.context import Context, PortfolioState, Position
from synthpm.data.errors import SynthpmError
from synthpm.data.store import ImportBatch, Store
from synthpm.dataset import build_contexts, decision_points
from synthpm.dataset.build import COLUMNS, SPLITS, DatasetConfig, examples_for_context
from synthpm.dataset.faithfulness import check_faithfulness
from synthpm.dataset.labels import LabelConfig, decide, outcomes
from synthpm.dataset.prompt import SYSTEM_PROMPT, context_text
from synthpm.dataset.scenarios import Scenario, ScenarioBook
from synthpm.features.panel import PanelInputs
from synthpm.journal import export as export_module
from synthpm.journal.export import export_conversations
from synthpm.journal.records import account_row, entry, read_journal, write_entries
from synthpm.limits import Limits
from synthpm.signals import Signal

STRATEGY, HUMAN = "momentum", "human:ann"
UNFAITHFUL = "Channel checks say margins are up 42.7% this quarter."
QUIET = {"log": lambda _: None}


class World:
    """A store with prices, market, sectors and 8-K events, and a journal of ~100 entries."""

    def __init__(self, root: Path) -> None:
        inputs = synthetic_inputs(tickers=6, days=400, events=True)
        self.store = Store(root / "store.duckdb")
        sectors = inputs.sectors.rename_axis("ticker").rename("sector").reset_index()
        events = inputs.events.assign(
            form="8-K", item="2.02", source_id=[f"acc-{i}" for i in range(len(inputs.events))]
        )
        frames = {"prices": inputs.prices, "market": inputs.market, "sectors": sectors}
        self.store.write(ImportBatch("test", "synthetic", frames | {"events": events}))
        self.inputs = PanelInputs.from_store(self.store)
        panel, forecasts = analysts(self.inputs)
        points = decision_points(panel.index, self.inputs.events, start="2020-03-01")
        self.contexts = build_contexts(self.inputs, panel, forecasts, points)
        self.panel = panel
        self.limits = Limits()
        self.rows = self._journal()
        write_entries(self.store, self.rows, "test")
        self.bad_id = next(r["id"] for r in self.rows if UNFAITHFUL in r["signal"])

    def _journal(self) -> list[dict]:
        """One strategy entry per decision date (tickers in turn, books alternating between
        all cash and holding the name), a person's entry on every fourth, one of whose
        rationales cites a number its prompt does not state."""
        frame = self.contexts.frame
        rows, human = [], 0
        for k, (_, day) in enumerate(frame.groupby("date", sort=True)):
            i = int(day.index[k % len(day)])
            ctx = self.contexts[i]
            if k % 2:
                ctx = ctx.model_copy(update={"portfolio": holding(ctx.ticker, ctx.sector)})
            facts = context_text(ctx).facts
            lead = facts[0].text if facts else "no standout signal"
            up = (ctx.trends.return_1m or 0.0) > 0
            signal = Signal(
                decision="BUY" if up else "SKIP",
                conviction=0.71 if up else 0.4,
                hold_duration_days=30,
                reasoning=f"Momentum: {lead}.",
                risk_factors=[f.text for f in facts if f.score < 0][:2],
            )
            row = entry(
                ctx,
                signal,
                source=STRATEGY,
                account="paper",
                limits=self.limits,
                status="executed" if up else "skipped",
                reason="" if up else "weak",
            )
            if k % 3 == 0:
                row["excess_21d"] = 0.001 * k
            rows.append(row)
            if k % 4 == 0:
                words = UNFAITHFUL if human == 2 else f"I agree with the tape here: {lead}."
                human += 1
                mine = Signal(
                    decision="BUY", conviction=0.8, hold_duration_days=45, reasoning=words
                )
                rows.append(
                    entry(
                        ctx, mine, source=HUMAN, account="paper", limits=self.limits, status="human"
                    )
                )
        return rows


def holding(ticker: str, sector: str) -> PortfolioState:
    """A book holding `ticker` (5%, down 4%) and one other name, 10% off its peak."""
    positions = [
        Position(ticker=ticker, sector=sector, weight=0.05, unrealised_return=-0.04, days_held=20),
        Position(ticker="ZZZ", sector="Other", weight=0.1, unrealised_return=0.1, days_held=60),
    ]
    return PortfolioState(
        cash=765_000.0,
        equity=900_000.0,
        positions=positions,
        equity_history=[1_000_000.0, 950_000.0, 900_000.0],
        peak=1_000_000.0,
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("journal"))


def shards(out: Path) -> dict[str, pd.DataFrame]:
    found = {}
    for split in SPLITS:
        parts = sorted((out / split).glob("part-*.parquet"))
        for part in parts:
            assert pq.read_schema(part).names == list(COLUMNS)
        found[split] = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    return found


def test_export_is_the_dataset_format_split_by_date(world: World, tmp_path: Path):
    out = tmp_path / "export"
    stats = export_conversations(world.store, out, **QUIET)
    data = shards(out)
    journal = read_journal(world.store).set_index("id")
    assert all(len(data[s]) for s in SPLITS)
    assert (
        stats["examples"]
        == sum(map(len, data.values()))
        == len(world.rows) - stats["skipped"]["embargoed"] - 1
    )  # one unfaithful entry
    # by date, never at random: each split's rows in date order, the splits one after another
    calendar = world.inputs.closes().index
    val, test = (calendar.searchsorted(pd.Timestamp(stats[k])) for k in ("val_start", "test_start"))
    lookahead = LabelConfig().lookahead()
    for split in SPLITS:
        dates = pd.DatetimeIndex(data[split]["date"])
        assert dates.is_monotonic_increasing
        pos = calendar.searchsorted(dates)
        if split == "train":
            assert (pos + lookahead < val).all()  # the label-length embargo
        if split == "validation":
            assert (pos >= val).all() and (pos + lookahead < test).all()
        if split == "test":
            assert (pos >= test).all()
        assert (data[split]["split"] == split).all()
    everything = pd.concat(data.values(), ignore_index=True)
    assert (everything["scenario"] == "journal").all()
    assert (everything["system"] == SYSTEM_PROMPT).all()
    for row in everything.itertuples():
        journaled = journal.loc[row.id]
        assert row.user == journaled["prompt"]
        signal = Signal.model_validate_json(journaled["signal"])
        assert Signal.model_validate_json(row.assistant) == signal
        assert row.assistant == signal.to_json()
        assert (row.decision, row.conviction, row.hold_days) == (
            signal.decision,
            signal.conviction,
            signal.hold_duration_days,
        )
        assert row.reason == (journaled["reason"] or journaled["status"])
        realised = journaled["excess_21d"]
        assert row.outcome == realised or (math.isnan(row.outcome) and pd.isna(realised))
    assert set(stats["by_source"]) == {STRATEGY, HUMAN}
    assert sum(stats["contexts"].values()) == stats["entries"] == len(world.rows)
    assert json.loads((out / "stats.json").read_text()) == json.loads(json.dumps(stats))
    config = DatasetConfig.model_validate_json((out / "config.json").read_text())
    assert config.limits == world.limits and config.scenarios == ("journal",)
    assert (config.val_start, config.test_start) == (stats["val_start"], stats["test_start"])


def test_unfaithful_human_rationale_is_dropped_and_reported(world: World, tmp_path: Path):
    out = tmp_path / "export"
    stats = export_conversations(world.store, out, source=HUMAN, **QUIET)
    ids = set(pd.concat(shards(out).values())["id"])
    humans = [r for r in world.rows if r["source"] == HUMAN]
    assert world.bad_id not in ids
    bad = next(r for r in humans if r["id"] == world.bad_id)
    assert stats["unfaithful"] == [
        {
            "id": world.bad_id,
            "source": HUMAN,
            "ticker": bad["ticker"],
            "date": str(bad["date"].date()),
            "text": "journaled",
            "unsupported": ["42.7%"],
            "dropped": True,
        }
    ]
    assert stats["skipped"]["unfaithful"] == stats["contexts"]["unfaithful"] == 1
    assert json.loads((out / "stats.json").read_text())["unfaithful"] == stats["unfaithful"]
    assert stats["filters"] == {"source": HUMAN, "account": None}
    kept = {r["id"] for r in humans} - {world.bad_id}
    assert ids == kept - _embargoed_ids(world, out, humans)


def _embargoed_ids(world: World, out: Path, rows: list[dict]) -> set[str]:
    stats = json.loads((out / "stats.json").read_text())
    calendar = world.inputs.closes().index
    val, test = (calendar.searchsorted(pd.Timestamp(stats[k])) for k in ("val_start", "test_start"))
    lookahead = LabelConfig().lookahead()
    gone = set()
    for r in rows:
        pos = calendar.searchsorted(r["date"])
        if pos < test and pos + lookahead >= (val if pos < val else test):
            gone.add(r["id"])
    return gone


def test_hindsight_labels_are_the_dataset_rules_under_the_journaled_book(
    world: World, tmp_path: Path
):
    out = tmp_path / "export"
    stats = export_conversations(world.store, out, relabel="hindsight", **QUIET)
    data = pd.concat(shards(out).values(), ignore_index=True).set_index("id")
    journal = read_journal(world.store).reset_index(drop=True)
    label, closes = LabelConfig(), world.inputs.closes()
    expected = outcomes(world.inputs, journal[["date", "ticker"]], label, closes)
    unlabelled = set(journal.loc[expected["outcome"].isna(), "id"])
    assert unlabelled and not unlabelled & set(data.index)
    assert stats["skipped"]["unlabelled"] == len(unlabelled)
    # the journaled rationale is not trained on here: the person's entry stays, reported
    assert stats["unfaithful"][0]["id"] == world.bad_id
    assert not stats["unfaithful"][0]["dropped"]
    checked = set()
    for i, row in journal.iterrows():
        if row["id"] not in data.index:
            continue
        got = data.loc[row["id"]]
        ctx = Context.model_validate_json(row["context"])
        want = expected.loc[i]
        decision, reason = decide(
            want["conviction"],
            want["outcome"],
            Scenario("journal", ctx.portfolio),
            ctx.ticker,
            ctx.sector,
            world.limits,
            label,
        )
        assert (got["decision"], got["reason"]) == (decision, reason)
        assert got["conviction"] == want["conviction"]
        assert got["hold_days"] == want["hold_days"]
        assert got["outcome"] == want["outcome"]
        assert got["user"] == row["prompt"]
        answer = Signal.model_validate_json(got["assistant"])
        assert (answer.decision, answer.conviction) == (decision, want["conviction"])
        assert check_faithfulness(answer, row["prompt"]).ok
        checked.add(decision)
    assert {"SELL", "SKIP"} <= checked  # the held books are labelled as held books


def test_hindsight_conversation_of_an_all_cash_book_is_the_datasets_empty_scenario(
    world: World, tmp_path: Path
):
    """Same context, same book: the export writes what `dataset build` writes for it."""
    out = tmp_path / "export"
    export_conversations(world.store, out, relabel="hindsight", source=STRATEGY, **QUIET)
    data = pd.concat(shards(out).values(), ignore_index=True).set_index("id")
    frame, config = world.contexts.frame, DatasetConfig(scenarios=("empty",))
    compared = 0
    for row in world.rows:
        ctx = Context.model_validate_json(row["context"])
        if row["source"] != STRATEGY or ctx.portfolio.positions or row["id"] not in data.index:
            continue
        i = frame.index[(frame["date"] == row["date"]) & (frame["ticker"] == row["ticker"])][0]
        point = frame.loc[[i], ["date", "ticker"]]
        label = outcomes(world.inputs, point, LabelConfig()).iloc[0].to_dict()
        day = frame.loc[i, "date"]
        trading = world.panel.index[world.panel.index.get_loc(day)].get_level_values("ticker")
        universe = dict(
            zip(trading, trading.map(world.inputs.sectors).fillna("Unknown"), strict=True)
        )
        book = ScenarioBook(np.datetime64(day), universe, world.limits)
        built = next(
            examples_for_context(
                frame.loc[i].to_dict(), world.contexts.benchmark, label, book, config
            )
        )
        got = data.loc[row["id"]]
        assert got["user"] == built.user
        assert got["assistant"] == built.assistant
        assert (got["decision"], got["reason"], got["outcome"]) == (
            built.decision,
            built.reason,
            built.outcome,
        )
        compared += 1
    assert compared >= 10


def test_given_split_dates_and_embargo(world: World, tmp_path: Path):
    out = tmp_path / "export"
    stats = export_conversations(
        world.store, out, val_start="2020-11-02", test_start="2021-02-01", **QUIET
    )
    assert (stats["val_start"], stats["test_start"]) == ("2020-11-02", "2021-02-01")
    data = shards(out)
    assert pd.Timestamp(data["validation"]["date"].min()) >= pd.Timestamp("2020-11-02")
    assert pd.Timestamp(data["test"]["date"].min()) >= pd.Timestamp("2021-02-01")
    assert stats["skipped"]["embargoed"] == stats["contexts"]["embargoed"] > 0


def test_rerun_replaces_the_folder_and_a_crash_keeps_the_last_export(
    world: World, tmp_path: Path, monkeypatch
):
    out = tmp_path / "export"
    export_conversations(world.store, out, **QUIET)
    (out / "train" / "part-00099.parquet").write_text("left over")
    first = export_conversations(world.store, out, source=STRATEGY, **QUIET)
    assert not (out / "train" / "part-00099.parquet").exists()
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_module, "write_split", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        export_conversations(world.store, out, **QUIET)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert json.loads((out / "stats.json").read_text())["examples"] == first["examples"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no partial folder left


def test_empty_selection_names_the_filters(world: World, tmp_path: Path):
    with pytest.raises(SynthpmError, match="source='nobody', account='paper'"):
        export_conversations(world.store, tmp_path / "x", source="nobody", account="paper")
    with pytest.raises(SynthpmError, match="relabel"):
        export_conversations(world.store, tmp_path / "x", relabel="random")  # type: ignore[arg-type]
    # prompts that state other limits than the export would record: nothing to export
    with pytest.raises(SynthpmError, match="other limits"):
        export_conversations(world.store, tmp_path / "x", limits=Limits(max_positions=7))
    assert not (tmp_path / "x").exists()


def test_lm_train_eval_and_calibrate_read_the_export(world: World, tmp_path: Path):
    from synthpm.lm.calibrate import fit_calibration
    from synthpm.lm.evaluate import evaluate
    from synthpm.lm.train import TrainConfig, train

    out, model = tmp_path / "export", tmp_path / "lm"
    stats = export_conversations(world.store, out, relabel="hindsight", **QUIET)
    tiny = TrainConfig(
        depth=1, seq_len=2048, vocab_size=400, batch_size=4, steps=10, eval_every=5, lr=1e-2
    )
    train(out, model, tiny, log=lambda _: None)
    assert (model / "model.pt").is_file()
    record = json.loads((model / "dataset.json").read_text())
    assert record["test_start"] == stats["test_start"]
    assert record["limits"] == world.limits.model_dump()
    report = evaluate(model, out, n=8, batch_size=8)
    assert report["examples"] == 8 and report["schema_valid_rate"] == 1.0
    calibration = fit_calibration(model, out, n=20, batch_size=8)
    validation = shards(out)["validation"]
    # one row per context: a context journaled by two sources counts once
    assert calibration.record["n"] == len(validation.drop_duplicates(["date", "ticker"]))


def test_limits_come_from_the_accounts_and_must_agree(world: World, tmp_path: Path):
    store = Store(tmp_path / "store.duckdb")
    store.path.write_bytes(world.store.path.read_bytes())  # a copy: the world stays as it is
    strict = json.dumps({"limits": Limits(max_positions=7).model_dump()})
    accounts = account_row("paper", STRATEGY, "2020-03-01", strict)
    store.write(ImportBatch("journal", "test", {"accounts": accounts}))
    # the prompts state 20 positions, the account's book trades under 7
    with pytest.raises(SynthpmError, match="other limits"):
        export_conversations(store, tmp_path / "x", account="paper", **QUIET)
    ctx = world.contexts[0]
    signal = Signal(decision="SKIP", conviction=0.5, hold_duration_days=30, reasoning="Wait.")
    row = entry(ctx, signal, source=STRATEGY, account="other", limits=Limits(), status="skipped")
    write_entries(store, [row], "test")
    with pytest.raises(SynthpmError, match=r"\(other, paper\) trade under different limits"):
        export_conversations(store, tmp_path / "x", **QUIET)
