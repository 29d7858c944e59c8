"""Baseline signal sources: always-buy and fixed thresholds on the forecaster and 8-K events.

Each works on the columns of one decision date's context frame at once (masks, not a loop of
rules per row) and builds its signals with `Signal.model_construct`: the values are valid by
construction (conviction clipped to 0..1, hold days checked once in the constructor), so the
per-row pydantic validation would only cost time at hundreds of rows a date.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from synthpm.columns import RECENT, event_col, forecast_col
from synthpm.context import Contexts
from synthpm.data.errors import ConfigError
from synthpm.features.filings import GROUP_OF
from synthpm.signals import Signal
from synthpm.strategies.base import check_horizon

ADVERSE = frozenset(t for t, group in GROUP_OF.items() if group == "adverse")
UP_CLASSES = ("up_a_little", "up_a_lot")


def make_signals(
    decisions: Sequence[str],
    convictions: np.ndarray,
    hold_days: int,
    reasonings: Sequence[str],
    risk_factors: Sequence[list[str]] | None = None,
    exit_triggers: Sequence[list[str]] | None = None,
) -> list[Signal]:
    """Signals from per-row arrays, unvalidated (callers guarantee the field ranges)."""
    n = len(decisions)
    risks = risk_factors if risk_factors is not None else [[] for _ in range(n)]
    exits = exit_triggers if exit_triggers is not None else [[] for _ in range(n)]
    conv = np.nan_to_num(np.clip(np.asarray(convictions, dtype=float), 0.0, 1.0), nan=0.0)
    return [
        Signal.model_construct(
            decision=d,
            conviction=float(c),
            hold_duration_days=hold_days,
            reasoning=r,
            risk_factors=list(rf),
            catalysts=[],
            exit_triggers=list(ex),
        )
        for d, c, r, rf, ex in zip(decisions, conv, reasonings, risks, exits, strict=True)
    ]


def _check_hold(hold_days: int) -> None:
    if not 1 <= hold_days <= 365:
        raise ConfigError(f"hold_days must be 1..365 calendar days, not {hold_days}")


@dataclass(frozen=True)
class AlwaysBuy:
    """BUY every context: the 'hold everything the manager allows' baseline."""

    conviction: float = 1.0
    hold_days: int = 30
    name: str = field(default="always_buy", init=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.conviction <= 1.0:
            raise ConfigError(f"conviction must be in 0..1, not {self.conviction}")
        _check_hold(self.hold_days)

    def signals(self, contexts: Contexts) -> list[Signal]:
        n = len(contexts.frame)
        return make_signals(
            ["BUY"] * n, np.full(n, self.conviction), self.hold_days, ["rule: always buy"] * n
        )


def adverse_events(frame: pd.DataFrame) -> list[list[str]]:
    """Per row, the adverse 8-Ks among the recent events ('impairment 2021-06-30'), latest
    first; empty when none. The ev columns are already limited to the last 90 days."""
    out: list[list[str]] = [[] for _ in range(len(frame))]
    for k in range(1, RECENT + 1):
        if event_col(k, "type") not in frame:
            continue
        types = frame[event_col(k, "type")]
        hit = np.flatnonzero(types.isin(ADVERSE).to_numpy())
        dates = pd.to_datetime(frame[event_col(k, "date")]).iloc[hit]
        for i, etype, day in zip(hit, types.iloc[hit], dates, strict=True):
            out[i].append(f"{etype} {day:%Y-%m-%d}" if pd.notna(day) else str(etype))
    return out


def _numbers(column: pd.Series) -> np.ndarray:
    return pd.to_numeric(column, errors="coerce").to_numpy(float)


@dataclass(frozen=True)
class FixedRules:
    """Thresholds on the walk-forward forecast at `horizon` and on recent adverse 8-Ks.

    BUY: expected excess return >= `min_expected`, class up_a_little/up_a_lot, confidence
    >= `min_confidence` and no adverse 8-K among the recent events. SELL: expected <=
    `sell_below`, or an adverse 8-K is recent. Otherwise SKIP; a row without a forecast
    (before the first walk-forward fold) is always SKIP: the rule has nothing to act on.
    Conviction is the forecast's confidence (0 without one); sizing reads it only for BUYs.
    """

    horizon: str = "1m"
    min_expected: float = 0.01
    min_confidence: float = 0.3
    sell_below: float = -0.01
    hold_days: int = 30
    name: str = field(default="rules", init=False)

    def __post_init__(self) -> None:
        check_horizon(self.horizon)
        _check_hold(self.hold_days)
        if self.sell_below >= self.min_expected:
            # otherwise one forecast could be both a BUY and a SELL
            raise ConfigError(
                f"sell_below ({self.sell_below}) must be below min_expected ({self.min_expected})"
            )

    def signals(self, contexts: Contexts) -> list[Signal]:
        f, h = contexts.frame, self.horizon
        expected = _numbers(f[forecast_col("expected_return", h)])
        confidence = _numbers(f[forecast_col("confidence", h)])
        classes = f[forecast_col("return_class", h)].astype(object).to_numpy()
        known = np.isfinite(expected) & pd.notna(classes)
        adverse = adverse_events(f)
        has_adverse = np.array([bool(a) for a in adverse], dtype=bool)
        is_up = pd.Series(classes).isin(UP_CLASSES).to_numpy()
        buy_ok = (expected >= self.min_expected) & is_up & (confidence >= self.min_confidence)
        buy = known & buy_ok & ~has_adverse
        sell = known & ~buy & ((expected <= self.sell_below) | has_adverse)
        decisions = np.where(buy, "BUY", np.where(sell, "SELL", "SKIP")).tolist()

        reasons = [
            self._reason(d, ok, e, c, cls, adv)
            for d, ok, e, c, cls, adv in zip(
                decisions, known, expected, confidence, classes, adverse, strict=True
            )
        ]
        exits = [
            [f"{h} expected return <= {self.sell_below:+.1%}", "an adverse 8-K"] if b else []
            for b in buy
        ]
        risks = [[f"adverse 8-K: {a}" for a in adv] for adv in adverse]
        conviction = np.where(known, confidence, 0.0)
        return make_signals(decisions, conviction, self.hold_days, reasons, risks, exits)

    def _reason(
        self, decision: str, known: bool, er: float, conf: float, cls: str, adv: list[str]
    ) -> str:
        h = self.horizon
        if not known:
            return f"rule: no {h} forecast yet"
        forecast = f"{h} expected {er:+.1%}"
        tail = f"{cls} conf {conf:.2f}"
        if decision == "BUY":
            return f"rule: {forecast} >= {self.min_expected:+.1%}, {tail}"
        if decision == "SELL":
            why = [f"{forecast} <= {self.sell_below:+.1%}"] if er <= self.sell_below else []
            why += [f"adverse 8-K {a}" for a in adv[:1]]
            return f"rule: {', '.join(why)}, {tail}"
        missing = []
        if er < self.min_expected:
            missing.append(f"{forecast} < {self.min_expected:+.1%}")
        if cls not in UP_CLASSES:
            missing.append(f"class {cls} not up")
        if not conf >= self.min_confidence:
            missing.append(f"conf {conf:.2f} < {self.min_confidence:.2f}")
        return f"rule: no threshold met ({'; '.join(missing) or forecast})"
