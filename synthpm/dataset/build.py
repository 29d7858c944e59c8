"""Build the training conversations: contexts x scenarios x hindsight labels, streamed to disk.

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

Output folder:
- `train/`, `validation/`, `test/`: zstd Parquet shards `part-NNNNN.parquet` with columns
  `id, date, ticker, sector, trigger, scenario, split, decision, reason, conviction,
  hold_days, outcome, system, user, assistant` (`outcome` is the realised net excess return
  the label came from, for evaluation; the model never sees it);
- `<split>.jsonl` when asked: `{"messages": [{role, content} x 3], "meta": {...}}`;
- `contexts/part-NNNNN.parquet`: the context frame of every decision point;
- `stats.json`: counts by split, decision, scenario and reason, sizes, timings.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from synthpm.context import context_from_row
from synthpm.data.errors import ConfigError, SynthpmError
from synthpm.dataset.calendar import Schedule, decision_points
from synthpm.dataset.context import build_contexts
from synthpm.dataset.faithfulness import Evidence
from synthpm.dataset.labels import LabelConfig, decide, outcomes
from synthpm.dataset.prompt import (
    SYSTEM_PROMPT,
    context_text,
    market_text,
    render_prompt,
    scenario_market,
)
from synthpm.dataset.reasoning import write
from synthpm.dataset.scenarios import SCENARIOS, ScenarioBook
from synthpm.features.panel import PanelInputs
from synthpm.limits import Limits
from synthpm.signals import signal_json

SPLITS = ("train", "validation", "test")
COLUMNS = (
    "id",
    "date",
    "ticker",
    "sector",
    "trigger",
    "scenario",
    "split",
    "decision",
    "reason",
    "conviction",
    "hold_days",
    "outcome",
    "system",
    "user",
    "assistant",
)


class FaithfulnessError(SynthpmError):
    """A generated example cites something its prompt does not state (a generator bug)."""


class DatasetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str | None = None
    end: str | None = None
    schedule: Schedule = "weekly"
    filings: bool = True  # event-driven points on 8-K days
    scenarios: tuple[str, ...] = SCENARIOS
    val_start: str | None = None
    test_start: str | None = None
    limits: Limits = Field(default_factory=Limits)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    seed: int = 0
    chunk_dates: int = Field(26, ge=1)  # decision dates per chunk: one shard per split each
    workers: int = Field(1, ge=1)  # processes; each holds one chunk at a time
    jsonl: bool = False


def _write_split(rows: list[tuple], folder: Path, part: int, jsonl: bool) -> None:
    """One chunk's examples of one split: a zstd Parquet shard (and JSONL when asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)})
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


def split_bounds(
    dates: pd.DatetimeIndex, calendar: pd.DatetimeIndex, config: DatasetConfig
) -> tuple[int, int]:
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
    return val, test


def examples_for_context(
    row: dict,
    benchmark: str,
    label: dict,
    book: ScenarioBook,
    config: DatasetConfig,
    split: str = "",
):
    """The labelled conversations of one context, one per scenario the book can fill, as
    tuples in `COLUMNS` order."""
    ctx = context_from_row(row, benchmark)
    text = context_text(ctx)
    limits = config.limits
    plain_facts = market_text(ctx.market)[1]
    for scenario in book.for_context(ctx.ticker, ctx.sector, config.scenarios):
        market_facts = (
            market_text(scenario_market(ctx, scenario))[1] if scenario.market else plain_facts
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
            label["conviction"],
            label["hold_days"],
            words.reasoning,
            words.risk_factors,
            words.catalysts,
            words.exit_triggers,
        )
        yield (
            f"{ctx.date}:{ctx.ticker}:{scenario.name}",
            ctx.date,
            ctx.ticker,
            ctx.sector,
            ctx.trigger,
            scenario.name,
            split,
            decision,
            reason,
            float(label["conviction"]),
            int(label["hold_days"]),
            float(label["outcome"]),
            SYSTEM_PROMPT,
            user,
            answer,
        )


def build_dataset(
    inputs: PanelInputs,
    panel: pd.DataFrame,
    forecasts: pd.DataFrame | None,
    out: str | Path,
    config: DatasetConfig | None = None,
    progress=None,
    log=print,
) -> dict:
    """Write the conversations of every decision point (see the module docstring); stats."""
    config = config or DatasetConfig()
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
    dates = points["date"].unique()
    chunks = [dates[i : i + config.chunk_dates] for i in range(0, len(dates), config.chunk_dates)]
    for folder in (*SPLITS, "contexts"):  # a rebuild must not keep an earlier run's shards
        shutil.rmtree(out / folder, ignore_errors=True)
    (out / "contexts").mkdir(parents=True)
    global _JOB
    _JOB = _Job(inputs, panel, forecasts, points, labels, split, closes, config, out)
    counts: Counter = Counter()
    workers = min(config.workers, len(chunks))
    if workers > 1:
        # fork: workers inherit the job (panel, inputs) without pickling it
        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            done = pool.map(_chunk, range(len(chunks)), chunks)
            for part in progress(done, total=len(chunks)) if progress else done:
                counts.update(part)
    else:
        for number in (
            progress(range(len(chunks)), total=len(chunks)) if progress else range(len(chunks))
        ):
            counts.update(_chunk(number, chunks[number]))
    _JOB = None
    seconds = time.perf_counter() - started
    stats = _stats(counts, out, len(points), seconds, val, test, calendar)
    (out / "stats.json").write_text(json.dumps(stats, indent=1))
    (out / "config.json").write_text(config.model_dump_json(indent=1))
    log(
        f"{stats['examples']:,} examples from {len(points):,} decision points in {seconds:.1f}s "
        f"({stats['examples_per_s']:,.0f}/s) → {out}"
    )
    return stats


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


_JOB: _Job | None = None


def _chunk(number: int, dates: np.ndarray) -> Counter:
    """Contexts, scenarios and labelled conversations of one chunk of dates, written."""
    job, counts = _JOB, Counter()
    mask = job.points["date"].isin(dates).to_numpy()
    tick = time.perf_counter()
    contexts = build_contexts(job.inputs, job.panel, job.forecasts, job.points[mask], job.closes)
    counts["context_seconds"] += time.perf_counter() - tick
    frame = contexts.frame
    splits = job.split[mask]
    frame.assign(split=splits).to_parquet(job.out / "contexts" / f"part-{number:05d}.parquet")
    labels = job.labels[mask].to_dict("records")
    records = frame.to_dict("records")
    rows: dict[str, list] = {s: [] for s in SPLITS}
    for day, positions in frame.groupby("date", sort=True).indices.items():
        # Every ticker trading that day, not only those with a decision point: a filing day
        # off the weekly schedule still has a whole market to hold positions in.
        trading = job.panel.index[job.panel.index.get_loc(day)].get_level_values("ticker")
        universe = dict(
            zip(trading, trading.map(job.inputs.sectors).fillna("Unknown"), strict=True)
        )
        book = ScenarioBook(np.datetime64(day), universe, job.config.limits, job.config.seed)
        for i in positions:
            where = splits[i]
            counts[f"contexts_{where}"] += 1
            if where not in rows:
                continue
            for row in examples_for_context(
                records[i], contexts.benchmark, labels[i], book, job.config, where
            ):
                rows[where].append(row)
                counts[("split", where, row[7])] += 1
                counts[("scenario", row[5], row[7])] += 1
                counts[("reason", row[8])] += 1
    for where, found in rows.items():
        if found:
            _write_split(found, job.out / where, number, job.config.jsonl)
    return counts


def _stats(counts, out: Path, n_points, seconds, val, test, calendar) -> dict:
    examples = sum(v for k, v in counts.items() if isinstance(k, tuple) and k[0] == "split")

    def table(kind: str) -> dict:
        names = sorted({k[1] for k in counts if isinstance(k, tuple) and k[0] == kind})
        return {n: {d: counts[(kind, n, d)] for d in ("BUY", "SELL", "SKIP")} for n in names}

    return {
        "examples": examples,
        "decision_points": n_points,
        "contexts": {
            k.split("_", 1)[1]: v
            for k, v in counts.items()
            if isinstance(k, str) and k.startswith("contexts_")
        },
        "val_start": str(calendar[val].date()) if val < len(calendar) else None,
        "test_start": str(calendar[test].date()) if test < len(calendar) else None,
        "by_split": table("split"),
        "by_scenario": table("scenario"),
        "by_reason": {
            k[1]: v
            for k, v in sorted(counts.items(), key=str)
            if isinstance(k, tuple) and k[0] == "reason"
        },
        "bytes": {s: sum(f.stat().st_size for f in (out / s).glob("*.parquet")) for s in SPLITS},
        "seconds": round(seconds, 2),
        "context_seconds": round(counts["context_seconds"], 3),
        "examples_per_s": round(examples / seconds, 1) if seconds else None,
    }
