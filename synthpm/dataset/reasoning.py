"""The assistant's words for a labelled example: reasoning, risks, catalysts, exit triggers.

Written only from the prompt's own `Fact`s (formatted by the prompt code) and the portfolio
state, choosing the facts that support the label: the strongest bullish facts for a BUY,
the strongest bearish ones for a SELL or a weak SKIP, the binding limit for a disciplined
SKIP. Nothing here sees the outcome beyond the decision itself, so the text never mentions
future prices; `faithfulness` checks every example anyway.
"""

from __future__ import annotations

from dataclasses import dataclass

from synthpm.dataset.prompt import Fact, pct, pct_abs
from synthpm.dataset.scenarios import Scenario
from synthpm.limits import Limits

TOP = 2  # facts cited per argument


@dataclass(frozen=True, slots=True)
class Words:
    reasoning: str
    risk_factors: list[str]
    catalysts: list[str]
    exit_triggers: list[str]


def _join(facts: list[Fact]) -> str:
    return "; ".join(f.text for f in facts)


def _limit_phrase(reason: str, scenario: Scenario, ticker: str, sector: str, lim: Limits) -> str:
    s = scenario.state
    if reason == "drawdown":  # only where the limit is set (`room_for_buy`)
        assert lim.derisk_drawdown is not None
        return (
            f"the book is in a {pct(s.drawdown)} drawdown, beyond the "
            f"{pct(-lim.derisk_drawdown, 0)} de-risk limit"
        )
    if reason == "max_positions":
        return f"the book is full at {len(s.positions)}/{lim.max_positions} positions"
    if reason == "cash_floor":
        floor = f"{lim.cash_floor * 100:.0f}%"
        return f"cash is {pct_abs(s.cash_weight)} of equity, below the {floor} floor"
    if reason == "sector_limit":
        return (
            f"{sector} is already {pct_abs(s.sector_weight(sector))} of equity, above the "
            f"{lim.max_sector * 100:.0f}% sector limit"
        )
    held = s.position(ticker)
    return (
        f"{ticker} is already {pct_abs(held.weight)} of equity, at the "
        f"{lim.max_position * 100:.0f}% position cap"
    )


def write(
    decision: str,
    reason: str,
    facts: list[Fact],
    scenario: Scenario,
    ticker: str,
    sector: str,
    best: str | None,
    limits: Limits,
) -> Words:
    """Reasoning and lists for one example; `facts` are the prompt's, market included."""
    ranked = sorted(facts, key=lambda f: -f.score)
    bullish = [f for f in ranked if f.score > 0][:TOP]
    bearish = [f for f in reversed(ranked) if f.score < 0][:TOP]
    state = scenario.state
    held = state.position(ticker)
    holding = (
        f"holding {ticker} at {pct_abs(held.weight)} of equity, "
        f"{pct(held.unrealised_return)} unrealised"
        if held
        else ""
    )
    lead = bullish or ranked[:1]
    if reason == "buy":
        room = (
            f"room in the book: {len(state.positions)}/{limits.max_positions} positions, "
            f"cash {pct_abs(state.cash_weight)} of equity"
            if state.positions
            else "room in the book: all cash"
        )
        text = f"{_join(lead) or 'no standout signal'}; {holding or room}."
    elif reason == "sell":
        text = f"Exit: {_join(bearish) or 'the setup has lost its support'}; {holding}."
    elif reason == "hold":
        text = f"Keep without adding: {holding}; {_join(bearish or lead) or 'signals are mixed'}."
    elif reason == "bear_bar":
        market = [f for f in ranked if f.kind == "market" and f.score < 0][:TOP]
        text = (
            f"{_join(lead)} is not enough with {_join(market) or 'the market under stress'}: "
            "a bear market needs a stronger setup."
        )
    elif reason == "weak":
        text = (
            f"Signals do not clear the bar: {_join(bearish or ranked[-1:]) or 'no forecast yet'}."
        )
    else:
        limit = _limit_phrase(reason, scenario, ticker, sector, limits)
        text = f"{_join(lead) or 'the setup'}, but {limit}."
    text = text[0].upper() + text[1:]
    risks = [f.text for f in reversed(ranked) if f.score < 0][:3]
    catalysts = [
        f.text for f in ranked if f.score > 0 and f.kind in ("event", "insider", "forecast")
    ][:3]
    exits: list[str] = []
    if decision == "BUY" or reason == "hold":
        exits = [f"take profit {pct(limits.take_profit, 0)}"]
        if limits.stop_loss is not None:
            exits.insert(0, f"stop loss {pct(-limits.stop_loss, 0)}")
        if best:
            exits.append(f"{best} forecast turns negative")
    return Words(text, risks, catalysts, exits)
