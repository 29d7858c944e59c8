"""The journal as training data: every entry becomes one conversation, in exactly the format,
columns and splits of `synthpm dataset build` (`synthpm.dataset.build`), so `synthpm lm train
--data OUT`, `lm eval` and `lm calibrate` read an export unchanged.

**A conversation per entry.** system: the dataset's `SYSTEM_PROMPT`; user: the journaled
prompt, exactly as the decider read it; assistant, by `relabel`:
- `"none"`: the decision as taken, the journaled `Signal` as `Signal.to_json` writes it (what
  the model learns and decodes). `reason` is the manager's journaled reason (its `status`
  when it gave none); `outcome` the entry's realised `excess_21d` once filled in (NaN before:
  such rows still train, and `lm eval` counts them as losses);
- `"hindsight"`: the dataset's own label for that context under the entry's own journaled
  portfolio state, as `build.examples_for_context` labels one scenario: `labels.outcomes`
  (prices from the store) then `labels.decide`, the words from `reasoning.write`, checked by
  the faithfulness checker. `reason` and `outcome` are the label's. An entry whose label
  window runs past the store's prices (or whose date or ticker the store does not price)
  gets no label: skipped, counted as `unlabelled`.
The Example's `id` is the journal row's id (a conversation traces back to its entry), its
`scenario` is `"journal"` and its `trigger` the journal's (scheduled | filing | human).

**Faithfulness.** Every entry's journaled text (reasoning, risks, catalysts, exit triggers)
is checked against its prompt (`faithfulness.check_faithfulness`): a person's rationale, a
model's or a strategy's words alike. A failure is reported (`unfaithful` in the stats: id,
source, ticker, date, the unsupported citations) and, where that text would become the
assistant's words (`relabel="none"`), the entry is dropped. With `"hindsight"` the journaled
text is not trained on, so the entry stays, and it is the generated words that must pass.

**Limits.** Each entry is read under its account's limits (`accounts` table, the config's
`limits`; the defaults for an account without a row, or `limits=` for all), which decide
the hindsight label and are what `config.json` records for the agent to render prompts
with. The selected entries must share them, and an entry whose prompt does not state them
(its LIMITS line) is skipped, counted as `limits`.

**Splits by date, never at random**, exactly as the dataset: `build.split_bounds` over the
dates of the entries that can be exported (defaults 70% / 85% of them), positions on the
store's price calendar, and the label-length embargo (`LabelConfig.lookahead()` trading days
after the date must end before the next split starts; otherwise `embargoed`).

Output folder (`build`'s layout, without `contexts/`: `lm eval` leaves out the baselines
that read it): `train/`, `validation/`, `test/` zstd Parquet shards `part-NNNNN.parquet` of
`build.Example` rows in (date, ticker) order (and JSONL with `jsonl=True`); `stats.json`
(`build`'s keys, `contexts` being each entry's fate, plus `entries`, `relabel`, `filters`,
`by_source`, `skipped` and `unfaithful`); `config.json` (a `DatasetConfig`: the limits and
label settings, scenario `journal`, the split dates). The folder is written beside `out` and
renamed into place, so a rerun replaces it whole and a crash never leaves half an export.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from datetime import date as Date
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from synthpm.context import Context
from synthpm.data.errors import ConfigError, SynthpmError
from synthpm.data.store import Store
from synthpm.dataset.build import (
    SPLITS,
    ChunkCounts,
    DatasetConfig,
    Example,
    split_bounds,
    split_stats,
    write_split,
)
from synthpm.dataset.faithfulness import check_faithfulness
from synthpm.dataset.labels import LabelConfig, decide, outcomes
from synthpm.dataset.prompt import SYSTEM_PROMPT, context_text, limits_text, market_text
from synthpm.dataset.reasoning import write
from synthpm.dataset.scenarios import Scenario
from synthpm.features.panel import PanelInputs
from synthpm.folders import atomic_folder
from synthpm.journal.records import read_account, read_journal
from synthpm.limits import Limits
from synthpm.signals import Signal, signal_json

Relabel = Literal["none", "hindsight"]
RELABELS = ("none", "hindsight")
SCENARIO = "journal"  # the Example's scenario: the entry's own book, not a simulated one
SHARD_ROWS = 50_000  # examples per Parquet shard
DateLike = str | Date | pd.Timestamp


class Answer(NamedTuple):
    """An entry's assistant turn, the Example columns that come with it, and its context's
    sector and trigger."""

    decision: str
    reason: str
    conviction: float
    hold_days: int
    outcome: float
    assistant: str
    sector: str
    trigger: str

    def columns(self) -> dict:
        """The Example's fields this answer fills."""
        return {k: v for k, v in self._asdict().items() if k not in ("sector", "trigger")}


def export_conversations(
    store: Store,
    out: str | Path,
    *,
    relabel: Relabel = "none",
    source: str | None = None,
    account: str | None = None,
    val_start: DateLike | None = None,
    test_start: DateLike | None = None,
    label: LabelConfig | None = None,
    limits: Limits | None = None,
    jsonl: bool = False,
    log=print,
) -> dict:
    """Write the journal entries matching `source` / `account` (None: any) to `out` as a
    dataset folder (module docstring); returns its stats, also in `out/stats.json`."""
    if relabel not in RELABELS:
        raise ConfigError(f"relabel must be one of {', '.join(RELABELS)}, not {relabel!r}")
    label = label or LabelConfig()
    out = Path(out)
    started = time.perf_counter()
    entries = read_journal(store, source=source, account=account)
    filters = {"source": source, "account": account}
    if entries.empty:
        named = ", ".join(f"{k}={v!r}" for k, v in filters.items() if v is not None)
        raise SynthpmError(
            f"no journal entries in {store.path}" + (f" with {named}" if named else "")
        )
    entries = entries.reset_index(drop=True)
    limits = _shared_limits(store, entries["account"], limits)
    # the calendar the dataset splits on: the union of the priced tickers' dates
    labels = None
    if relabel == "hindsight":
        inputs = PanelInputs.from_store(store)
        closes = inputs.closes()
        labels = _hindsight_labels(inputs, closes, entries, label)
    else:
        closes = store.closes()
    if closes.empty:
        raise ConfigError(f"no prices in {store.path}: the splits follow its trading calendar")
    calendar = pd.DatetimeIndex(closes.index)

    fates, answers, unfaithful = _answer_entries(entries, relabel, labels, limits, label)
    kept = np.array([a is not None for a in answers])
    if not kept.any():
        raise SynthpmError(
            f"none of the {len(entries)} journal entries could be exported: "
            + ", ".join(f"{n} {why}" for why, n in sorted(Counter(fates).items()))
            + (
                f" (prompts stating other limits than {limits_text(limits)!r})"
                if "limits" in fates
                else ""
            )
        )
    dates = pd.DatetimeIndex(entries["date"])
    config = DatasetConfig(
        start=str(dates.min().date()),
        end=str(dates.max().date()),
        schedule="none",
        filings=False,
        scenarios=(SCENARIO,),
        val_start=_day(val_start),
        test_start=_day(test_start),
        limits=limits,
        labels=label,
    )
    bounds = split_bounds(pd.DatetimeIndex(sorted(set(dates[kept]))), calendar, config)
    split = _splits(dates, calendar, bounds, label)
    fates = [split[i] if kept[i] else fate for i, fate in enumerate(fates)]

    counts = ChunkCounts(contexts=Counter(fates))
    rows: dict[str, list[Example]] = {s: [] for s in SPLITS}
    by_source: dict[str, Counter] = {}
    for i, row in enumerate(entries.itertuples(index=False)):
        answer = answers[i]
        if answer is None or fates[i] not in rows:
            continue
        example = Example(
            id=row.id,
            date=pd.Timestamp(row.date).date(),
            ticker=row.ticker,
            sector=answer.sector,
            trigger=_text(row.trigger) or answer.trigger,
            scenario=SCENARIO,
            split=fates[i],
            system=SYSTEM_PROMPT,
            user=row.prompt,
            **answer.columns(),
        )
        rows[fates[i]].append(example)
        counts.add(example)
        by_source.setdefault(row.source, Counter())[fates[i]] += 1

    with atomic_folder(out, "stats.json") as partial:
        for where, found in rows.items():
            for part, first in enumerate(range(0, len(found), SHARD_ROWS)):
                write_split(found[first : first + SHARD_ROWS], partial / where, part, jsonl)
            (partial / where).mkdir(exist_ok=True)  # an empty split is an empty folder
        seconds = time.perf_counter() - started
        stats = split_stats(counts, partial, len(entries), seconds, *bounds, calendar)
        stats |= {
            "entries": len(entries),
            "relabel": relabel,
            "filters": filters,
            "by_source": {s: dict(c) for s, c in sorted(by_source.items())},
            "skipped": {
                why: fates.count(why) for why in ("embargoed", "unlabelled", "unfaithful", "limits")
            },
            "unfaithful": unfaithful,
        }
        config = config.model_copy(update={k: stats[k] for k in ("val_start", "test_start")})
        (partial / "stats.json").write_text(json.dumps(stats, indent=1))
        (partial / "config.json").write_text(config.model_dump_json(indent=1))
    log(
        f"{stats['examples']:,} conversations from {len(entries):,} journal entries "
        f"(relabel {relabel}; skipped: "
        + ", ".join(f"{n} {why}" for why, n in stats["skipped"].items() if n)
        + f") → {out}"
    )
    return stats


def _day(value: DateLike | None) -> str | None:
    return None if value is None else str(pd.Timestamp(value).date())


def _shared_limits(store: Store, accounts: pd.Series, given: Limits | None) -> Limits:
    """The limits every selected entry was decided under: `given`, else each account's
    stored ones (the defaults for an account without a row); one set for the whole export,
    since `config.json` records one for the agent to render prompts with."""
    if given is not None:
        return given
    found: dict[str, Limits] = {}
    for name in sorted(set(accounts)):
        stored = read_account(store, name)
        found[name] = Limits(**(stored or {}).get("config", {}).get("limits", {}))
    distinct = set(found.values())
    if len(distinct) > 1:
        raise ConfigError(
            f"the selected accounts ({', '.join(found)}) trade under different limits: "
            "export one account at a time (account=...)"
        )
    return distinct.pop()


def _hindsight_labels(
    inputs: PanelInputs, closes: pd.DataFrame, entries: pd.DataFrame, label: LabelConfig
) -> pd.DataFrame:
    """`labels.outcomes` of each entry's (date, ticker), NaN where the store does not price
    it on that date (`outcomes` indexes the closes by position and must not see those)."""
    points = pd.DataFrame({"date": pd.to_datetime(entries["date"]), "ticker": entries["ticker"]})
    priced = (closes.index.get_indexer(points["date"]) >= 0) & (
        closes.columns.get_indexer(points["ticker"]) >= 0
    )
    found = pd.DataFrame(
        {"outcome": np.nan, "hold_days": 0, "conviction": np.nan}, index=points.index
    )
    if priced.any():
        labelled = outcomes(inputs, points[priced], label, closes)
        for column in found:
            found.loc[priced, column] = labelled[column].to_numpy()
    return found


def _answer_entries(
    entries: pd.DataFrame,
    relabel: Relabel,
    labels: pd.DataFrame | None,
    limits: Limits,
    label: LabelConfig,
) -> tuple[list[str], list[Answer | None], list[dict]]:
    """Per entry: its fate so far ("" when it can be exported, else why not) and its answer
    (None when skipped); and the unfaithful entries' reports."""
    stated = limits_text(limits)
    fates: list[str] = []
    answers: list[Answer | None] = []
    unfaithful: list[dict] = []
    for i, row in enumerate(entries.itertuples(index=False)):
        ctx = Context.model_validate_json(row.context)
        signal = Signal.model_validate_json(row.signal)
        answer, fate = None, ""
        if stated not in row.prompt.split("\n"):
            fate = "limits"  # read under other limits than the export records
        journaled = check_faithfulness(signal, row.prompt)
        if not journaled.ok:
            # trained on only without relabelling: a person's unsupported claim must not
            # teach the model to cite what its prompt does not state
            unfaithful.append(_report(row, "journaled", journaled.unsupported, relabel == "none"))
            fate = fate or ("unfaithful" if relabel == "none" else "")
        if not fate and labels is not None:
            if math.isnan(labels.at[i, "outcome"]):
                fate = "unlabelled"
            else:
                answer = _hindsight_answer(ctx, labels.loc[i], limits, label)
                written = check_faithfulness(json.loads(answer.assistant), row.prompt)
                if not written.ok:  # the prompt is not the one the context renders
                    unfaithful.append(_report(row, "hindsight", written.unsupported, True))
                    answer, fate = None, "unfaithful"
        elif not fate:
            answer = _journaled_answer(row, ctx, signal)
        fates.append(fate)
        answers.append(answer)
    return fates, answers, unfaithful


def _hindsight_answer(ctx: Context, found: pd.Series, limits: Limits, label: LabelConfig) -> Answer:
    """The dataset's label and words for `ctx` under its own book, as
    `build.examples_for_context` writes them for one (non-market) scenario."""
    scenario = Scenario(SCENARIO, ctx.portfolio)
    text = context_text(ctx)
    conviction, outcome = float(found["conviction"]), float(found["outcome"])
    decision, reason = decide(conviction, outcome, scenario, ctx.ticker, ctx.sector, limits, label)
    facts = text.facts + market_text(ctx.market).facts
    words = write(decision, reason, facts, scenario, ctx.ticker, ctx.sector, text.best, limits)
    hold_days = int(found["hold_days"])
    answer = signal_json(
        decision,
        conviction,
        hold_days,
        words.reasoning,
        words.risk_factors,
        words.catalysts,
        words.exit_triggers,
    )
    return Answer(decision, reason, conviction, hold_days, outcome, answer, ctx.sector, ctx.trigger)


def _journaled_answer(row, ctx: Context, signal: Signal) -> Answer:
    """The decision as taken: the journaled signal, written as the model writes signals."""
    realised = row.excess_21d
    return Answer(
        signal.decision,
        _text(row.reason) or _text(row.status),
        round(float(signal.conviction), 2),  # as the answer states it
        int(signal.hold_duration_days),
        float(realised) if realised is not None and not pd.isna(realised) else math.nan,
        signal.to_json(),
        ctx.sector,
        ctx.trigger,
    )


def _text(value) -> str:
    """A text column's value, "" for a null (None or NaN, by the frame's dtype)."""
    return value if isinstance(value, str) else ""


def _report(row, text: str, unsupported: tuple[str, ...], dropped: bool) -> dict:
    """An unfaithful entry as the stats list it."""
    return {
        "id": row.id,
        "source": row.source,
        "ticker": row.ticker,
        "date": str(pd.Timestamp(row.date).date()),
        "text": text,  # "journaled" (the entry's own words) or "hindsight" (the label's)
        "unsupported": list(unsupported),
        "dropped": dropped,
    }


def _splits(
    dates: pd.DatetimeIndex, calendar: pd.DatetimeIndex, bounds, label: LabelConfig
) -> np.ndarray:
    """Each date's split, as `build_dataset` assigns them: a label window (its last close
    `lookahead()` trading days on) must end before the next split starts, else embargoed."""
    pos = calendar.searchsorted(dates)  # a date off the calendar: the next trading day's
    ends = pos + label.lookahead()
    val, test = bounds
    return np.select(
        [ends < val, (pos >= val) & (ends < test), pos >= test], list(SPLITS), "embargoed"
    )
