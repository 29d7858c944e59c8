"""BUY sizing by conviction rank: conviction changes a size, the limits still cut it."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from synthpm.limits import Limits
from synthpm.portfolio.manager import Book, Outcome, PortfolioManager
from synthpm.signals import Signal

# room for every wanted size: no limit binds, so the sizes are the rule's own
LOOSE = Limits(max_position=0.1, max_sector=1.0, cash_floor=0.0, max_positions=20)


def sizes(decisions: list[str], convictions: list[float], limits: Limits = LOOSE):
    """Each signal's `Outcome` on an all-cash book worth 1000, one sector each."""
    n = len(decisions)
    book = Book(1000.0, np.zeros(n), np.full(n, 10.0), peak_equity=1000.0)
    signals = [
        Signal(decision=d, conviction=c, hold_duration_days=20, reasoning="")
        for d, c in zip(decisions, convictions, strict=True)
    ]
    return (
        PortfolioManager(limits).decide(book, np.arange(n), np.arange(n), signals, set()).outcomes
    )


def test_higher_conviction_buys_strictly_more_when_no_limit_binds():
    out = sizes(["BUY"] * 4, [0.6, 0.95, 0.7, 0.8])
    assert all(o.status == "executed" and o.reason == "" for o in out)
    by_conviction = [out[i].size for i in (0, 2, 3, 1)]
    assert by_conviction == sorted(by_conviction) and len(set(by_conviction)) == 4
    # max_position x (1 + r) / 2 of equity, r = rank / count
    assert by_conviction == pytest.approx([100 * (1 + r / 4) / 2 for r in (1, 2, 3, 4)])


def test_a_lone_buy_gets_the_cap_whatever_its_conviction():
    out = sizes(["SKIP", "BUY", "SELL"], [0.9, 0.2, 0.9])  # only BUYs are ranked
    assert out[1] == Outcome("executed", pytest.approx(100.0), "")


def test_tied_convictions_get_equal_sizes():
    out = sizes(["BUY", "BUY", "BUY"], [0.8, 0.8, 0.5])
    assert out[0].size == out[1].size == pytest.approx(100 * (1 + 2.5 / 3) / 2)  # average rank
    assert out[2].size == pytest.approx(100 * (1 + 1 / 3) / 2)


def test_the_limits_still_cut_a_ranked_size():
    tight = LOOSE.model_copy(update={"cash_floor": 0.85})  # 150 of cash above the floor
    out = sizes(["BUY", "BUY"], [0.9, 0.5], tight)
    assert out[0] == Outcome("executed", pytest.approx(100.0), "")  # strongest first: the cap
    assert out[1] == Outcome("resized", pytest.approx(50.0), "cash_floor")  # 75 wanted


def test_limits_from_an_old_model_folder_still_load():
    # dataset.json of models trained when BUYs were sized conviction x base_allocation
    old = {"max_position": 0.05, "max_positions": 10, "base_allocation": 0.1}
    assert Limits(**old) == Limits(max_position=0.05, max_positions=10)
    assert "base_allocation" not in Limits.model_validate(old).model_dump()
    with pytest.raises(ValidationError, match="max_postion"):
        Limits(max_postion=0.05)  # any other unknown key is still refused
