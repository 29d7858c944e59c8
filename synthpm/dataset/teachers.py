"""Teachers: who decides a training label (`DatasetConfig.teacher`), and their tables.

`hindsight` (the default) labels from the outcome (`labels`); `rules` and `qlearn` label
with what a signal source decides on the context at t; `consensus` keeps the hindsight
decision and lowers its conviction where the two others disagree (`labels.follow`,
`labels.consensus_conviction`; the module docstring of `labels` says exactly how).

**Layering.** The fixed rules (`synthpm.strategies`) and the Q-learning agent
(`synthpm.learn`) sit above this layer, so the dataset never imports them: the caller (the
CLI) hands them to `build_dataset(teachers={name: teacher})`, each as either
- a signal source: any object with `signals(contexts) -> list[Signal]` (`FixedRules`, a
  fitted `QLearn`, a fake in tests) or a plain callable `contexts -> list[Signal]`; the build
  asks it chunk by chunk (`teacher_table`), so it must be picklable for a parallel build;
- or a precomputed table, `teacher_table`'s shape: a DataFrame with the columns `date,
  ticker, holding, decision, conviction`, one row per (date, ticker, holding) for every
  decision point that is labelled (both holding states), `decision` one of BUY / SELL /
  SKIP, `conviction` in 0..1.

**Holding state.** A teacher may decide otherwise for a ticker the book holds (a Q-agent's
state includes it), and the scenarios differ in whether they hold the context's ticker, so
the table has both: the teacher sees the date's contexts once with an empty book
(`holding` False) and once with a book that holds every ticker of the date (`holding`
True: equal weights of at most half the position cap, the rest cash). Between the two
only the holding differs; the rest of each scenario (its limits) enters after, in
`labels.follow`, the same for every teacher.

**No look-ahead.** A teacher is asked one date at a time, with that date's contexts only
(point in time, as in a backtest), and a label reads the row of its own date. A learner
must be fitted walk-forward, its model of a date trained on data before it: the caller's
part (`synthpm.learn.fitted_learner`). Hindsight stays the only label that reads the future.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, NamedTuple, Protocol

import numpy as np
import pandas as pd

from synthpm.context import Contexts, PortfolioState, Position
from synthpm.data.errors import ConfigError
from synthpm.dataset.labels import Label, LabelConfig, consensus_conviction, follow
from synthpm.dataset.scenarios import Scenario
from synthpm.limits import Limits
from synthpm.signals import DECISIONS, Signal

Teacher = Literal["hindsight", "rules", "qlearn", "consensus"]
TEACHERS: tuple[str, ...] = ("hindsight", "rules", "qlearn", "consensus")
# The signal-source teachers each label needs, in the order consensus counts them.
SOURCES: dict[str, tuple[str, ...]] = {
    "hindsight": (),
    "rules": ("rules",),
    "qlearn": ("qlearn",),
    "consensus": ("rules", "qlearn"),
}
TABLE_COLUMNS = ("date", "ticker", "holding", "decision", "conviction")


class TeacherSource(Protocol):
    """What a teacher must be: a signal source (its `name` is optional here)."""

    def signals(self, contexts: Contexts) -> list[Signal]: ...


TeacherInput = TeacherSource | Callable[[Contexts], Sequence[Signal]] | pd.DataFrame


class Decided(NamedTuple):
    """A teacher's decision on one context in one holding state."""

    decision: str
    conviction: float


# Per teacher name, one context's decisions: [0] not holding the ticker, [1] holding it.
View = Mapping[str, tuple[Decided, Decided]]


def describe(teacher: TeacherInput) -> str:
    """A teacher as stats.json records it: the source's name, or `table`."""
    if isinstance(teacher, pd.DataFrame):
        return "table"
    return str(getattr(teacher, "name", None) or getattr(teacher, "__name__", type(teacher)))


def check_teachers(teacher: str, teachers: Mapping[str, TeacherInput] | None) -> dict:
    """The teachers `teacher` needs, their tables checked; ConfigError naming what is missing."""
    if teacher not in SOURCES:
        raise ConfigError(f"unknown teacher {teacher!r}; choose from {', '.join(TEACHERS)}")
    given = dict(teachers or {})
    missing = [name for name in SOURCES[teacher] if name not in given]
    if missing:
        raise ConfigError(
            f"teacher {teacher!r} needs the {' and '.join(missing)} teacher: pass it in "
            "`teachers` (a signal source or a table of its decisions)"
        )
    out: dict[str, TeacherInput] = {}
    for name in SOURCES[teacher]:
        found = given[name]
        if isinstance(found, pd.DataFrame):
            out[name] = check_table(found, name)
        elif callable(getattr(found, "signals", None)) or callable(found):
            out[name] = found
        else:
            raise ConfigError(f"teacher {name!r} is neither a signal source nor a table")
    return out


def check_table(table: pd.DataFrame, name: str = "teacher") -> pd.DataFrame:
    """A precomputed teacher table in its canonical types; ConfigError where it is not one."""
    frame = table.reset_index() if any(n in TABLE_COLUMNS for n in table.index.names) else table
    missing = [c for c in TABLE_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"{name} table lacks the columns {', '.join(missing)}")
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(frame["date"]).to_numpy(),
            "ticker": frame["ticker"].astype(str).to_numpy(object),
            "holding": frame["holding"].astype(bool).to_numpy(),
            "decision": frame["decision"].astype(str).to_numpy(object),
            "conviction": pd.to_numeric(frame["conviction"], errors="coerce").to_numpy(float),
        }
    )
    bad = ~frame["decision"].isin(DECISIONS)
    if bad.any():
        raise ConfigError(
            f"{name} table: decision {frame['decision'][bad].iloc[0]!r} is not one of "
            f"{', '.join(DECISIONS)}"
        )
    conviction = frame["conviction"]
    if not conviction.between(0.0, 1.0).all():  # NaN fails too
        raise ConfigError(f"{name} table: conviction must be in 0..1 (found {conviction.min()})")
    if frame.duplicated(["date", "ticker", "holding"]).any():
        raise ConfigError(f"{name} table has more than one row per (date, ticker, holding)")
    return frame


def holding_book(frame: pd.DataFrame, limits: Limits) -> PortfolioState:
    """A book that holds every ticker of `frame` (one date's contexts), equal weights of at
    most half the position cap, the rest cash: the `holding` view of the module docstring."""
    names = frame.drop_duplicates("ticker")
    weight = round(min(0.5 / len(names), limits.max_position / 2), 6)
    positions = [
        Position(ticker=str(t), sector=str(s), weight=weight)
        for t, s in zip(names["ticker"], names["sector"], strict=True)
    ]
    equity = 1_000_000.0
    return PortfolioState(
        cash=equity - weight * len(positions) * equity, equity=equity, positions=positions
    )


def _signals(teacher: TeacherInput, contexts: Contexts) -> Sequence[Signal]:
    ask = getattr(teacher, "signals", None)
    signals = ask(contexts) if callable(ask) else teacher(contexts)  # type: ignore[operator]
    if len(signals) != len(contexts):
        raise ConfigError(
            f"teacher {describe(teacher)} gave {len(signals)} signals for {len(contexts)} contexts"
        )
    return signals


def teacher_table(
    teacher: TeacherSource | Callable[[Contexts], Sequence[Signal]],
    contexts: Contexts,
    limits: Limits | None = None,
) -> pd.DataFrame:
    """The teacher's decision and conviction on every row of `contexts`, not holding and
    holding the ticker (see the module docstring): `TABLE_COLUMNS`, two rows per context."""
    limits = limits or Limits()
    frame = contexts.frame
    parts = []
    # One date at a time, as a backtest asks a source: a learner picks its model by the date.
    for _, rows in frame.groupby("date", sort=True).indices.items():
        day = frame.iloc[rows]
        for holding, book in ((False, PortfolioState.empty()), (True, holding_book(day, limits))):
            signals = _signals(teacher, Contexts(day, contexts.benchmark, book, limits))
            parts.append(
                pd.DataFrame(
                    {
                        "date": day["date"].to_numpy(),
                        "ticker": day["ticker"].to_numpy(object),
                        "holding": holding,
                        "decision": [s.decision for s in signals],
                        "conviction": [float(s.conviction) for s in signals],
                    }
                )
            )
    if not parts:
        return check_table(pd.DataFrame(columns=list(TABLE_COLUMNS)))
    return check_table(pd.concat(parts, ignore_index=True), describe(teacher))


class Views:
    """Each teacher's decisions aligned to the rows of one chunk's context frame."""

    def __init__(
        self,
        teachers: Mapping[str, TeacherInput],
        contexts: Contexts,
        limits: Limits,
        needed: np.ndarray,
    ):
        """`needed` marks the rows that are labelled: a table missing one of them is an
        error, while the unlabelled rows (embargoed, past the data) may be absent."""
        frame = contexts.frame
        dates = pd.to_datetime(frame["date"]).to_numpy()
        tickers = frame["ticker"].astype(str).to_numpy(object)
        self.decisions: dict[str, np.ndarray] = {}
        self.convictions: dict[str, np.ndarray] = {}
        for name, teacher in teachers.items():
            if isinstance(teacher, pd.DataFrame):
                table = teacher
            else:
                # asked on the labelled rows only: on a date, those are the universe's
                # members, the rows a backtest's sources see
                asked = Contexts(frame[needed], contexts.benchmark, limits=limits)
                table = teacher_table(teacher, asked, limits)
            by_key = table.set_index(["date", "ticker", "holding"])
            decisions = np.empty((len(frame), 2), dtype=object)
            convictions = np.full((len(frame), 2), np.nan)
            for holding in (False, True):
                at = by_key.reindex(
                    pd.MultiIndex.from_arrays(
                        [dates, tickers, np.full(len(frame), holding)],
                        names=["date", "ticker", "holding"],
                    )
                )
                decisions[:, int(holding)] = at["decision"].to_numpy(object)
                convictions[:, int(holding)] = at["conviction"].to_numpy(float)
            absent = needed & pd.isna(decisions).any(axis=1)
            if absent.any():
                i = int(np.flatnonzero(absent)[0])
                raise ConfigError(
                    f"teacher {name!r} has no decision for {frame['ticker'].iloc[i]} on "
                    f"{pd.Timestamp(frame['date'].iloc[i]).date()} ({int(absent.sum())} such rows)"
                )
            self.decisions[name] = decisions
            self.convictions[name] = convictions

    def row(self, i: int) -> View:
        """Row i's view: per teacher, (not holding, holding)."""
        out: dict[str, tuple[Decided, Decided]] = {}
        for name, decisions in self.decisions.items():
            convictions = self.convictions[name]
            out[name] = (
                Decided(str(decisions[i, 0]), float(convictions[i, 0])),
                Decided(str(decisions[i, 1]), float(convictions[i, 1])),
            )
        return out


def teach(
    teacher: str,
    hindsight: Label,
    conviction: float,
    view: View,
    scenario: Scenario,
    ticker: str,
    sector: str,
    limits: Limits,
    config: LabelConfig,
    tally: Counter | None = None,
) -> tuple[Label, float]:
    """The label and conviction `teacher` gives one context in one scenario, from the
    hindsight label and conviction and the teachers' views (see `labels`' docstring).
    `tally` counts (teacher name, agrees with the hindsight decision) per example."""
    held = int(scenario.state.position(ticker) is not None)
    labels = {
        name: follow(view[name][held].decision, scenario, ticker, sector, limits, config)
        for name in SOURCES[teacher]
    }
    agree = [labels[name].decision == hindsight.decision for name in SOURCES[teacher]]
    if tally is not None:
        tally.update(zip(SOURCES[teacher], agree, strict=True))
    if teacher == "consensus":
        return hindsight, consensus_conviction(conviction, agree)
    (name,) = SOURCES[teacher]
    return labels[name], round(view[name][held].conviction, 2)
