"""The portfolio's hard limits, in one typed config.

The portfolio manager enforces them; the training data reads the same values, so a
hindsight label turns a BUY into a disciplined SKIP exactly where the manager would refuse
the trade, and the prompt states them so the reasoning can cite them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_position: float = Field(0.05, gt=0, le=1, description="largest weight of one position")
    max_sector: float = Field(0.40, gt=0, le=1, description="largest weight of one sector")
    cash_floor: float = Field(0.10, ge=0, lt=1, description="cash kept as a share of equity")
    max_positions: int = Field(20, ge=1)
    derisk_drawdown: float = Field(
        0.15, gt=0, lt=1, description="no new positions below this fall from the equity peak"
    )
    # The peak is that of the trailing window: measured from the all-time high, one bad year
    # would stop a book that has gone to cash from ever buying again.
    derisk_window: int = Field(252, ge=1, description="trading days the equity peak looks back")
    stop_loss: float = Field(0.08, gt=0, lt=1, description="exit after this loss from entry")
    take_profit: float = Field(0.25, gt=0, description="exit after this gain from entry")
    base_allocation: float = Field(
        0.10, gt=0, le=1, description="size = conviction x base_allocation x equity"
    )
