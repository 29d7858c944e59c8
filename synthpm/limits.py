"""The portfolio's hard limits, in one typed config.

The portfolio manager enforces them; the training data reads the same values, so a
hindsight label turns a BUY into a disciplined SKIP exactly where the manager would refuse
the trade, and the prompt states them so the reasoning can cite them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_position: float = Field(0.05, gt=0, le=1, description="largest weight of one position")
    max_sector: float = Field(0.40, gt=0, le=1, description="largest weight of one sector")
    cash_floor: float = Field(0.10, ge=0, lt=1, description="cash kept as a share of equity")
    max_positions: int = Field(20, ge=1, description="portfolio limit: positions held at most")
    # The drawdown limit, its window and the stop loss were chosen before the test years
    # (`benchmarks/limits_choice.py`); a 252-day peak locked a book out for most of a year
    # after each fall. None turns a limit off.
    derisk_drawdown: float | None = Field(
        0.15, gt=0, lt=1, description="no new positions below this fall from the equity peak"
    )
    # The peak is that of the trailing window: measured from the all-time high, one bad year
    # would stop a book that has gone to cash from ever buying again.
    derisk_window: int = Field(21, ge=1, description="trading days the equity peak looks back")
    stop_loss: float | None = Field(0.15, gt=0, lt=1, description="exit after this loss from entry")
    take_profit: float = Field(0.25, gt=0, description="exit after this gain from entry")

    @model_validator(mode="before")
    @classmethod
    def _drop_retired(cls, data: Any) -> Any:
        # Model folders written before buys were sized by conviction rank record a
        # `base_allocation` in their limits; it no longer sizes anything, so it is ignored.
        if isinstance(data, dict) and "base_allocation" in data:
            data = {k: v for k, v in data.items() if k != "base_allocation"}
        return data


MIN_ORDER = 0.001  # of equity: smaller buys are not worth their costs
LIMIT_REASONS = ("drawdown", "max_positions", "cash_floor", "sector_limit", "position_limit")


def drawdown(equity: float, peak: float) -> float:
    """The one drawdown: the fall of equity from the peak of the trailing `derisk_window`
    trading days (the caller's `peak`); 0 at or above the peak."""
    return equity / peak - 1.0 if peak > 0 else 0.0


class Room(NamedTuple):
    """How much of a BUY the limits allow (a share of equity), and the reason it was cut."""

    size: float
    reason: str  # "" when the whole buy fits, else the binding limit or "too_small"


def room_for_buy(
    limits: Limits,
    *,
    wanted: float,
    drawdown: float,
    holds: int,
    holding: bool,
    cash: float,
    sector: float,
    position: float,
    cost_rate: float = 0.0,
) -> Room:
    """How much of a BUY the limits allow, and why: (size, reason), all as shares of equity.

    The one place a limit is judged: the portfolio manager sizes real orders with it and the
    hindsight labels call it on a scenario's book, so a disciplined SKIP in training is
    exactly a trade the manager refuses. `cash`, `sector` and `position` are the weights
    already committed (after the date's earlier orders); `holds` counts names held. The
    reason is "" when the whole `wanted` fits, the binding limit when it is cut or refused,
    and "too_small" when what is left is under `MIN_ORDER` without any limit binding.
    """
    if limits.derisk_drawdown is not None and drawdown <= -limits.derisk_drawdown:
        return Room(0.0, "drawdown")
    if not holding and holds >= limits.max_positions:
        return Room(0.0, "max_positions")
    rooms = {
        "position_limit": limits.max_position - position,
        "sector_limit": limits.max_sector - sector,
        "cash_floor": (cash - limits.cash_floor) / (1 + cost_rate),
    }
    binding = min(rooms, key=rooms.__getitem__)
    size = min(wanted, rooms[binding])
    if size < MIN_ORDER:
        return Room(0.0, binding if rooms[binding] < wanted else "too_small")
    return Room(size, binding if size < wanted else "")
