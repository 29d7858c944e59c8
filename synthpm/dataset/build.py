"""Build the training conversations: contexts x scenarios x labels, streamed to disk.

The labels are hindsight's unless `DatasetConfig.teacher` names another teacher (`rules`,
`qlearn`, `consensus`; see `labels` and `teachers`), whose signal sources or tables the
caller passes in (`build_dataset(teachers=...)`): this layer imports neither.

Decision dates are processed in chunks (`chunk_dates`), so memory holds one chunk of
contexts and one shard of examples at a time, whatever the date range. Each chunk's
context frame is written too (`contexts/`), for backtests over the same decision points.

**Split by date, with an embargo.** Every decision date belongs to train, validation or
test by `val_start` / `test_start` (defaults: 70% / 85% of the labelled decision dates). A
label reads prices up to `LabelConfig.lookahead()` trading days after its date, so an
example is kept in train only if that whole window ends before `val_start` (and in
validation only if it ends before `test_start`); the examples whose window straddles a
boundary are dropped and counted as `embargoed`. Nothing in train depends on a price on or
after `val_start` (the forecasts and features are point in time, the labels end before).

**Names kept out** (`held_out_tickers`, a share of the tickers, drawn with the seed): their
contexts before the test split are dropped (`held_out`), and the books of those dates
(the scenarios' positions) never hold them, so no training or validation text names them;
their test examples measure the model on names it never saw (`lm eval`'s
`unseen_tickers`). `stats.json` lists them.

Output folder:
- `train/`, `validation/`, `test/`: zstd Parquet shards `part-NNNNN.parquet` with columns
  `id, date, ticker, sector, trigger, scenario, split, decision, reason, conviction,
  hold_days, outcome, system, user, assistant` (`outcome` is the realised net excess return
  the label came from, for evaluation; the model never sees it);
- `<split>.jsonl` when asked: `{"messages": [{role, content} x 3], "meta": {...}}`;
- `contexts/part-NNNNN.parquet`: the context frame of every decision point;
- `stats.json`: counts by split, decision, scenario and reason, sizes, timings, the teacher
  (and, for a teacher other than hindsight, each source teacher's name and how often its
  label's decision agrees with the hindsight one: `agreement_with_hindsight`);
- `config.json`: the `DatasetConfig`, the teacher included.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date as Date
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from synthpm.context import context_from_row
from synthpm.data.errors import ConfigError, SynthpmError
from synthpm.data.validate import IsoDate
from synthpm.dataset.calendar import Schedule, decision_points
from synthpm.dataset.context import build_contexts
from synthpm.dataset.faithfulness import Evidence
from synthpm.dataset.labels import Label, LabelConfig, decide, outcomes
from synthpm.dataset.prompt import (
    SYSTEM_PROMPT,
    context_text,
    market_text,
    render_prompt,
    scenario_market,
)
from synthpm.dataset.reasoning import write
from synthpm.dataset.scenarios import SCENARIOS, ScenarioBook
from synthpm.dataset.teachers import (
    SOURCES,
    Teacher,
    TeacherInput,
    View,
    Views,
    check_teachers,
    describe,
    teach,
)
from synthpm.executor import LOCAL, ExecutorConfig, parallel_map
from synthpm.features.panel import PanelInputs
from synthpm.folders import atomic_folder
from synthpm.limits import Limits
from synthpm.signals import signal_json

SPLITS = ("train", "validation", "test")


class Example(NamedTuple):
    """One labelled conversation: a row of the dataset's Parquet shards, fields in order."""

    id: str
    date: Date
    ticker: str
    sector: str
    trigger: str
    scenario: str
    split: str
    decision: str
    reason: str
    conviction: float
    hold_days: int
    outcome: float
    system: str
    user: str
    assistant: str


COLUMNS = Example._fields


@dataclass
class ChunkCounts:
    """What one chunk wrote: contexts per split, examples per (split|scenario) × decision,
    disciplined reasons, the seconds spent building contexts, and per (source teacher,
    agrees with hindsight) the examples (`teach`'s tally). Chunks add up with `+=`."""

    contexts: Counter = field(default_factory=Counter)
    by_split: dict[str, Counter] = field(default_factory=dict)
    by_scenario: dict[str, Counter] = field(default_factory=dict)
    by_reason: Counter = field(default_factory=Counter)
    context_seconds: float = 0.0
    agreement: Counter = field(default_factory=Counter)

    def add(self, example: Example) -> None:
        self.by_split.setdefault(example.split, Counter())[example.decision] += 1
        self.by_scenario.setdefault(example.scenario, Counter())[example.decision] += 1
        self.by_reason[example.reason] += 1

    def __iadd__(self, other: ChunkCounts) -> ChunkCounts:
        self.contexts += other.contexts
        for mine, theirs in (
            (self.by_split, other.by_split),
            (self.by_scenario, other.by_scenario),
        ):
            for name, counter in theirs.items():
                mine.setdefault(name, Counter()).update(counter)
        self.by_reason += other.by_reason
        self.context_seconds += other.context_seconds
        self.agreement += other.agreement
        return self


class FaithfulnessError(SynthpmError):
    """A generated example cites something its prompt does not state (a generator bug)."""


class DatasetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: IsoDate | None = Field(None, description="first date (YYYY-MM-DD)")
    end: IsoDate | None = Field(None, description="last date (YYYY-MM-DD)")
    schedule: Schedule = Field("weekly", description="scheduled reviews: weekly, monthly or none")
    filings: bool = Field(True, description="also decide on 8-K filing days")
    scenarios: tuple[str, ...] = SCENARIOS
    val_start: IsoDate | None = Field(None, description="first validation date")
    test_start: IsoDate | None = Field(None, description="first test date")
    limits: Limits = Field(default_factory=Limits)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    seed: int = 0
    chunk_dates: int = Field(26, ge=1)  # decision dates per chunk: one shard per split each
    jsonl: bool = Field(False, description="also write JSONL beside the Parquet")
    teacher: Teacher = Field(
        "hindsight",
        description="who labels: hindsight, rules, qlearn or consensus (see dataset.labels)",
    )
    held_out_tickers: float = Field(
        0.0, ge=0, lt=1, description="share of tickers named only in the test split"
    )


def write_split(rows: list[Example], folder: Path, part: int, jsonl: bool) -> None:
    """One chunk's examples of one split: a zstd Parquet shard (and JSONL when asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({c: [getattr(r, c) for r in rows] for c in COLUMNS})
    pq.write_table(table, folder / f"part-{part:05d}.parquet", compression="zstd")
    if jsonl:
        with (folder / f"part-{part:05d}.jsonl").open("w") as out:
            for row in table.to_pylist():
                messages = [
                    {"role": role, "content": row.pop(role)}
                    for role in ("system", "user", "assistant")
                ]
                row["date"] = str(row["date"])
                out.write(json.dumps({"messages": messages, "meta": row}) + "\n")


class SplitBounds(NamedTuple):
    """Calendar positions where the validation and the test split start."""

    val_start: int
    test_start: int


def split_bounds(
    dates: pd.DatetimeIndex, calendar: pd.DatetimeIndex, config: DatasetConfig
) -> SplitBounds:
    """Calendar positions where validation and test start."""

    def position(text: str | None, fraction: float) -> int:
        if text is None:
            return int(calendar.searchsorted(dates[int(fraction * (len(dates) - 1))]))
        return int(calendar.searchsorted(pd.Timestamp(text)))

    val, test = position(config.val_start, 0.70), position(config.test_start, 0.85)
    if not val < test:
        raise ConfigError(
            f"val_start must come before test_start ({config.val_start}, {config.test_start})"
        )
    return SplitBounds(val, test)


def examples_for_context(
    row: dict,
    benchmark: str,
    label: dict,
    book: ScenarioBook,
    config: DatasetConfig,
    split: str = "",
    view: View | None = None,
    tally: Counter | None = None,
) -> Iterator[Example]:
    """The labelled conversations of one context, one per scenario the book can fill.
    `view` holds the source teachers' decisions on the context (`Views.row`) where
    `config.teacher` needs them; `tally` counts their agreement with hindsight."""
    ctx = context_from_row(row, benchmark)
    text = context_text(ctx)
    limits = config.limits
    plain_facts = market_text(ctx.market).facts
    for scenario in book.for_context(ctx.ticker, ctx.sector, config.scenarios):
        market_facts = (
            market_text(scenario_market(ctx, scenario)).facts if scenario.market else plain_facts
        )
        user = render_prompt(ctx, limits, scenario, text)
        decision, reason = decide(
            label["conviction"],
            label["outcome"],
            scenario,
            ctx.ticker,
            ctx.sector,
            limits,
            config.labels,
        )
        conviction = label["conviction"]
        if view is not None:
            (decision, reason), conviction = teach(
                config.teacher,
                Label(decision, reason),
                conviction,
                view,
                scenario,
                ctx.ticker,
                ctx.sector,
                limits,
                config.labels,
                tally,
            )
        words = write(
            decision,
            reason,
            text.facts + market_facts,
            scenario,
            ctx.ticker,
            ctx.sector,
            text.best,
            limits,
        )
        bad = Evidence(user).unsupported(
            " ".join([words.reasoning, *words.risk_factors, *words.catalysts, *words.exit_triggers])
        )
        if bad:
            raise FaithfulnessError(
                f"{ctx.ticker} {ctx.date} {scenario.name}: reasoning cites {bad} not in the prompt"
            )
        answer = signal_json(
            decision,
            conviction,
            label["hold_days"],
            words.reasoning,
            words.risk_factors,
            words.catalysts,
            words.exit_triggers,
        )
        yield Example(
            id=f"{ctx.date}:{ctx.ticker}:{scenario.name}",
            date=ctx.date,
            ticker=ctx.ticker,
            sector=ctx.sector,
            trigger=ctx.trigger,
            scenario=scenario.name,
            split=split,
            decision=decision,
            reason=reason,
            conviction=float(conviction),
            hold_days=int(label["hold_days"]),
            outcome=float(label["outcome"]),
            system=SYSTEM_PROMPT,
            user=user,
            assistant=answer,
        )


def build_dataset(
    inputs: PanelInputs,
    panel: pd.DataFrame,
    forecasts: pd.DataFrame | None,
    out: str | Path,
    config: DatasetConfig | None = None,
    progress=None,
    log=print,
    executor: ExecutorConfig = LOCAL,
    teachers: Mapping[str, TeacherInput] | None = None,
) -> dict:
    """Write the conversations of every decision point (see the module docstring); stats.
    The chunks are independent: `executor` builds them in parallel, with the same files.

    `teachers` maps the source teachers `config.teacher` needs (`teachers.SOURCES`: `rules`,
    `qlearn`) to a signal source or a table of its decisions (`teachers.teacher_table`);
    the others are ignored, and hindsight needs none."""
    config = config or DatasetConfig()
    sources = check_teachers(config.teacher, teachers)
    unknown = set(config.scenarios) - set(SCENARIOS)
    if unknown:
        raise ConfigError(
            f"unknown scenarios {sorted(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    out = Path(out)
    started = time.perf_counter()
    points = decision_points(
        panel.index, inputs.events, config.schedule, config.filings, config.start, config.end
    )
    if points.empty:
        raise ConfigError("no decision points in the requested dates")
    closes = inputs.closes()
    calendar = closes.index
    labels = outcomes(inputs, points, config.labels, closes)
    labelled = points.loc[labels["outcome"].notna(), "date"]
    if labelled.empty:
        raise ConfigError("no decision point has a complete label window (too little future data)")
    val, test = split_bounds(pd.DatetimeIndex(labelled.unique()), calendar, config)
    pos = calendar.get_indexer(points["date"])
    ends = pos + config.labels.lookahead()  # the last close a label reads
    split = np.select(
        [ends < val, (pos >= val) & (ends < test), pos >= test],
        ["train", "validation", "test"],
        "embargoed",
    )
    split = np.where(labels["outcome"].isna(), "unlabelled", split)
    held = held_out(points["ticker"].unique(), config.held_out_tickers, config.seed)
    split = np.where(np.isin(points["ticker"], held) & (split != "test"), "held_out", split)
    dates = points["date"].unique()
    chunks = [dates[i : i + config.chunk_dates] for i in range(0, len(dates), config.chunk_dates)]
    # written whole or not at all: a killed build leaves the earlier dataset as it was
    with atomic_folder(out, "stats.json") as partial:
        (partial / "contexts").mkdir()
        job = _Job(
            inputs, panel, forecasts, points, labels, split, closes, config, partial, held,
            sources,
        )  # fmt: skip
        counts = ChunkCounts()
        done = parallel_map(_chunk, job, enumerate(chunks), executor)
        for part in progress(done, total=len(chunks)) if progress else done:
            counts += part
        seconds = time.perf_counter() - started
        stats = split_stats(counts, partial, len(points), seconds, val, test, calendar)
        stats["teacher"] = config.teacher
        stats["held_out_tickers"] = held
        if sources:
            stats["teachers"] = {name: describe(t) for name, t in sources.items()}
            stats["agreement_with_hindsight"] = {
                name: _share(counts.agreement[name, True], counts.agreement[name, False])
                for name in sources
            }
        (partial / "stats.json").write_text(json.dumps(stats, indent=1))
        (partial / "config.json").write_text(config.model_dump_json(indent=1))
    log(
        f"{stats['examples']:,} examples from {len(points):,} decision points in {seconds:.1f}s "
        f"({stats['examples_per_s']:,.0f}/s) → {out}"
    )
    return stats


def _share(yes: int, no: int) -> float | None:
    return round(yes / (yes + no), 4) if yes + no else None


@dataclass
class _Job:
    inputs: PanelInputs
    panel: pd.DataFrame
    forecasts: pd.DataFrame | None
    points: pd.DataFrame
    labels: pd.DataFrame
    split: np.ndarray
    closes: pd.DataFrame
    config: DatasetConfig
    out: Path
    held: list[str]  # tickers no book holds before the test split
    teachers: dict[str, TeacherInput] = field(default_factory=dict)  # check_teachers'


def _chunk(job: _Job, chunk: tuple[int, np.ndarray]) -> ChunkCounts:
    """Contexts, scenarios and labelled conversations of one chunk of dates, written into
    the output folder (so on a cluster it must be on storage every node shares)."""
    (number, dates), counts = chunk, ChunkCounts()
    mask = job.points["date"].isin(dates).to_numpy()
    tick = time.perf_counter()
    contexts = build_contexts(job.inputs, job.panel, job.forecasts, job.points[mask], job.closes)
    counts.context_seconds += time.perf_counter() - tick
    frame = contexts.frame
    splits = job.split[mask]
    frame.assign(split=splits).to_parquet(job.out / "contexts" / f"part-{number:05d}.parquet")
    labels = job.labels[mask].to_dict("records")
    records = frame.to_dict("records")
    views = (
        Views(job.teachers, contexts, job.config.limits, np.isin(splits, SPLITS))
        if SOURCES[job.config.teacher]
        else None
    )
    rows: dict[str, list[Example]] = {s: [] for s in SPLITS}
    for day, positions in frame.groupby("date", sort=True).indices.items():
        # Every ticker trading that day, not only those with a decision point: a filing day
        # off the weekly schedule still has a whole market to hold positions in.
        trading = job.panel.index[job.panel.index.get_loc(day)].get_level_values("ticker")
        if job.held and not (splits[positions] == "test").any():
            trading = trading.difference(job.held)
        universe = dict(
            zip(trading, trading.map(job.inputs.sectors).fillna("Unknown"), strict=True)
        )
        book = ScenarioBook(np.datetime64(day), universe, job.config.limits, job.config.seed)
        for i in positions:
            where = splits[i]
            counts.contexts[where] += 1
            if where not in rows:
                continue
            view = views.row(i) if views is not None else None
            for example in examples_for_context(
                records[i],
                contexts.benchmark,
                labels[i],
                book,
                job.config,
                where,
                view,
                counts.agreement,
            ):
                rows[where].append(example)
                counts.add(example)
    for where, found in rows.items():
        if found:
            write_split(found, job.out / where, number, job.config.jsonl)
    return counts


def held_out(tickers, share: float, seed: int) -> list[str]:
    """`share` of the tickers (at least one when share > 0), drawn with `seed`: the same
    names for the same tickers, whatever their order."""
    names = sorted(map(str, tickers))
    if share <= 0 or not names:
        return []
    count = max(1, round(share * len(names)))
    return sorted(np.random.default_rng(seed).choice(names, count, replace=False).tolist())


def split_stats(counts: ChunkCounts, out: Path, n_points, seconds, val, test, calendar) -> dict:
    examples = sum(sum(c.values()) for c in counts.by_split.values())

    def table(by: dict[str, Counter]) -> dict:
        return {n: {d: by[n][d] for d in ("BUY", "SELL", "SKIP")} for n in sorted(by)}

    return {
        "examples": examples,
        "decision_points": n_points,
        "contexts": {str(k): v for k, v in counts.contexts.items()},
        "val_start": str(calendar[val].date()) if val < len(calendar) else None,
        "test_start": str(calendar[test].date()) if test < len(calendar) else None,
        "by_split": table(counts.by_split),
        "by_scenario": table(counts.by_scenario),
        "by_reason": dict(sorted(counts.by_reason.items())),
        "bytes": {s: sum(f.stat().st_size for f in (out / s).glob("*.parquet")) for s in SPLITS},
        "seconds": round(seconds, 2),
        "context_seconds": round(counts.context_seconds, 3),
        "examples_per_s": round(examples / seconds, 1) if seconds else None,
    }
