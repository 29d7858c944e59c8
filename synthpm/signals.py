"""`Signal` and `SignalSource`: the contract between whatever decides and the code that trades.

The model (or a baseline) says *what* and *how sure*; the portfolio manager says *how much*.
`conviction` is one quantity for every decision: the calibrated belief that the stock beats
the benchmark, net of costs, over `hold_duration_days` (so a SELL usually carries a low
conviction). Sizing reads it only for BUYs.

The JSON form is compact with a fixed key order (the order of the fields below): the language
model learns and decodes exactly this text, and the decision comes first so a signal-only
decoder can stop after three keys.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from synthpm.context import Contexts

DECISIONS = ("BUY", "SELL", "SKIP")


class Signal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["BUY", "SELL", "SKIP"]
    conviction: float = Field(ge=0.0, le=1.0)
    hold_duration_days: int = Field(ge=1, le=365)  # calendar days
    reasoning: str
    risk_factors: list[str] = Field(default_factory=list)
    catalysts: list[str] = Field(default_factory=list)
    exit_triggers: list[str] = Field(default_factory=list)

    def to_json(self) -> str:
        """Compact JSON, fixed key order, conviction to 2 decimals (what the model writes)."""
        return signal_json(
            self.decision,
            self.conviction,
            self.hold_duration_days,
            self.reasoning,
            self.risk_factors,
            self.catalysts,
            self.exit_triggers,
        )


def signal_json(
    decision: str,
    conviction: float,
    hold_duration_days: int,
    reasoning: str,
    risk_factors: Sequence[str],
    catalysts: Sequence[str],
    exit_triggers: Sequence[str],
) -> str:
    """`Signal.to_json` without building the model: the training-data fast path."""
    return (
        f'{{"decision":"{decision}","conviction":{conviction:.2f},'
        f'"hold_duration_days":{int(hold_duration_days)},'
        f'"reasoning":{json.dumps(reasoning)},'
        f'"risk_factors":{json.dumps(list(risk_factors), separators=(",", ":"))},'
        f'"catalysts":{json.dumps(list(catalysts), separators=(",", ":"))},'
        f'"exit_triggers":{json.dumps(list(exit_triggers), separators=(",", ":"))}}}'
    )


class SignalSource(Protocol):
    """Anything that turns decision contexts into signals: the LM agent or a baseline."""

    name: str

    def signals(self, contexts: Contexts) -> list[Signal]: ...
