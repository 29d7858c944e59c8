"""The prompt: a `Context` as compact natural-language text, and the facts it states.

Sections, always in this order and always present (a section with no data says so in a
few words rather than vanishing, so the model learns "no insider data" from text it sees):
DATE, MARKET, PORTFOLIO, LIMITS, then COMPANY, FORECASTS, EVENTS, INSIDER ACTIVITY,
SOCIAL, TRENDS, POSITION, DECISION REQUIRED. SOCIAL is the one exception to "always": it
is there when the store has a text source (`Context.social`), so a store without one gives
the prompts it gave before. What every stock of a decision date shares (the date,
the market, the book, the limits) comes first and says nothing about the stock, so in a
backtest the prompts of one date start with the same tokens and the decoder computes their
keys and values once (`decode`'s prefix cache); the stock's own part follows, and POSITION
(what the book holds of this stock and its sector) sits just before the question.
SOCIAL quotes the window's most representative post verbatim (cut to a length) between
« and »: the faithfulness check lets an answer quote it and takes no fact from it.
Numbers are rounded for reading: returns to 0.1% (expected excess returns to 0.01%),
volatility to 1%, money to the dollar (insider values to $0.1M). Rendering is
deterministic: the same context always gives the same bytes. No price level is shown: a
back-adjusted close encodes later splits and dividends (see `context`).

Each section also yields `Fact`s: the phrases the training reasoning may cite, formatted by
the same code as the prompt, with a score (> 0 supports buying, < 0 argues against) and a
kind. Reasoning built from them is faithful by construction; `faithfulness` checks it
independently. MARKET, PORTFOLIO and POSITION are rendered per scenario, the stock's part
once per context (`ContextText`), because ten scenarios share one context.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from synthpm.context import Context, MarketContext
from synthpm.dataset.scenarios import Scenario
from synthpm.features.filings import GROUP_OF
from synthpm.forecast.base import CLASSES
from synthpm.limits import Limits

SYSTEM_PROMPT = (
    "You are the signal generator of a portfolio manager. Read the context and answer with "
    "one JSON object: decision (BUY, SELL or SKIP), conviction (0 to 1, the belief that the "
    "stock beats the benchmark after costs), hold_duration_days, reasoning, risk_factors, "
    "catalysts and exit_triggers. Cite only facts stated in the context. Position sizes and "
    "limits are enforced by code, not by you."
)
ODDS_SHOWN = 0.05  # event probabilities below this are not listed
ADVERSE = {t for t, g in GROUP_OF.items() if g == "adverse"}


@dataclass(frozen=True, slots=True)
class Fact:
    text: str
    score: float  # > 0 supports buying, < 0 argues against
    kind: str  # forecast | trend | event | insider | social | market | portfolio


@dataclass
class ContextText:
    """The stock's part of a prompt (COMPANY to TRENDS), rendered once per context."""

    head: str
    facts: list[Fact] = field(default_factory=list)
    best: str | None = None  # best horizon, for exit triggers


def pct(x: float, digits: int = 1) -> str:
    text = f"{x * 100:+.{digits}f}%"
    return "+" + text[1:] if text.startswith("-") and float(text[:-1]) == 0 else text


def pct_abs(x: float) -> str:
    return f"{abs(x) * 100:.1f}%"


def money(x: float) -> str:
    return f"${x:,.0f}"


def millions(x: float) -> str:
    sign = "-" if x < 0 else ""
    return f"{sign}${abs(x) / 1e6:.1f}M"


def _forecasts(ctx: Context, facts: list[Fact]) -> list[str]:
    if not ctx.forecasts:
        return ["FORECASTS: none yet (no walk-forward model covers this date)"]
    bench = "index" if ctx.market.benchmark == "index" else "equal-weight universe"
    lines = [f"FORECASTS (excess return vs the {bench}, out of sample):"]
    for f in ctx.forecasts:
        sharpe = f", Sharpe {f.sharpe:.2f}" if f.sharpe is not None else ""
        head = f"{f.horizon} {f.return_class} (conf {f.confidence:.2f})"
        expected = f"expected {pct(f.expected_return, 2)}"
        lines.append(
            f"  {f.horizon}: {f.return_class} (conf {f.confidence:.2f}), {expected}, "
            f"vol {f.volatility * 100:.0f}%{sharpe}, max drawdown {pct(f.max_drawdown)}"
        )
        if f.horizon in (ctx.best_horizon, "1m"):
            direction = CLASSES.index(f.return_class) - 2
            facts.append(
                Fact(
                    f"{head}, {expected}",
                    direction * f.confidence * 2 + f.expected_return * 20,
                    "forecast",
                )
            )
            if f.max_drawdown < -0.08:
                facts.append(
                    Fact(f"{f.horizon} max drawdown {pct(f.max_drawdown)}", -0.8, "forecast")
                )
            if f.volatility > 0.45:
                facts.append(Fact(f"{f.horizon} vol {f.volatility * 100:.0f}%", -0.6, "forecast"))
    lines.append(f"  best horizon: {ctx.best_horizon}")
    odds = sorted(
        (
            (p, g)
            for g, p in ctx.event_probabilities.items()
            if p >= ODDS_SHOWN and g != "insider_filing"
        ),
        reverse=True,
    )[:4]
    if odds:
        listed = ", ".join(f"{g} {p * 100:.0f}%" for p, g in odds)
        lines.append(f"  event odds, next 21 trading days: {listed}")
        for p, g in odds:
            score = -1.5 * p if g == "adverse" else 0.5 * p
            facts.append(Fact(f"{g} odds {p * 100:.0f}%", score, "event"))
    return lines


def _events(ctx: Context, facts: list[Fact]) -> list[str]:
    if not ctx.events_covered:
        return [f"EVENTS: no filings on record for {ctx.ticker}"]
    if not ctx.events:
        return ["EVENTS (8-K, last 90 days): none"]
    lines = ["EVENTS (8-K, last 90 days):"]
    for e in ctx.events:
        item = f" (item {e.item})" if e.item else ""
        lines.append(f"  {e.date} {e.event_type}{item}: {e.meaning}")
        score = -2.0 if e.event_type in ADVERSE else 0.6 if e.event_type == "results" else 0.2
        facts.append(Fact(f"{e.event_type} 8-K on {e.date}", score, "event"))
    return lines


def _insider(ctx: Context, facts: list[Fact]) -> list[str]:
    ins = ctx.insider
    if not ins.covered:
        return [f"INSIDER ACTIVITY: no Form 4 data on record for {ctx.ticker}"]
    head = "INSIDER ACTIVITY (Form 4, last 90 days):"
    if not (ins.buys_90d or ins.sells_90d):
        return [f"{head} no open-market trades"]
    lines = [
        f"{head} {ins.buys_90d} buys, {ins.sells_90d} sales, net {millions(ins.net_value_90d)}"
    ]
    if ins.buys_90d:
        facts.append(Fact(f"{ins.buys_90d} insider buys in 90 days", 0.8 * ins.buys_90d, "insider"))
    if ins.sells_90d:
        facts.append(
            Fact(f"{ins.sells_90d} insider sales in 90 days", -0.3 * ins.sells_90d, "insider")
        )
    for t in ins.notable:
        role = f" ({t.role})" if t.role else ""
        verb = "bought" if t.code == "P" else "sold"
        value = f" {millions(t.value)}" if t.value is not None else ""
        lines.append(f"  {t.date} {t.owner or 'an insider'}{role} {verb}{value}")
    return lines


def _social(ctx: Context, facts: list[Fact]) -> list[str]:
    social = ctx.social
    if social is None:
        return []
    if not social.covered:
        return [f"SOCIAL: no posts on record for {ctx.ticker}"]
    if social.posts <= 0:
        return ["SOCIAL (posts, recent weeks): none"]
    parts = [f"{social.posts:.1f} weighted posts, {social.posts_today} today"]
    if social.attention is not None:
        text = f"attention {social.attention:+.1f}"
        parts.append(text + " vs usual")
        if abs(social.attention) >= 1.0:
            facts.append(Fact(text, 0.0, "social"))
    tones = []
    for name, value in social.concepts.items():
        value = round(value, 3) + 0.0  # no "-0.000"
        text = f"{name} {value:+.3f}"
        tones.append(text)
        sign = {"bullish": 1.0, "bearish": -1.0}.get(name, 0.0)
        if sign and abs(value) >= 0.02:
            facts.append(
                Fact(f"{name} tone {value:+.3f}", sign * max(-1, min(1, value * 20)), "social")
            )
    lines = [
        "SOCIAL (posts, recent weeks): "
        + ", ".join(parts)
        + ("; " + ", ".join(tones) if tones else "")
    ]
    if social.quote:
        lines.append(f"  post {social.quote_date}: «{social.quote}»")
    return lines


def _trends(ctx: Context, facts: list[Fact]) -> str:
    t = ctx.trends
    parts, groups = [], []
    for name, value in (
        ("1w", t.return_1w),
        ("1m", t.return_1m),
        ("3m", t.return_3m),
        ("6m", t.return_6m),
    ):
        if value is not None:
            parts.append(f"{name} {pct(value)}")
            if name in ("1m", "3m"):
                facts.append(
                    Fact(f"{name} return {pct(value)}", max(-2, min(2, value * 8)), "trend")
                )
    if parts:
        groups.append(", ".join(parts))
    levels = []
    if t.dist_52w_high is not None:
        text = f"{pct_abs(t.dist_52w_high)} below 52-week high"
        levels.append(text)
        score = 0.5 if t.dist_52w_high > -0.05 else -1.0 if t.dist_52w_high < -0.3 else 0.0
        if score:
            facts.append(Fact(text, score, "trend"))
    if t.dist_52w_low is not None:
        levels.append(f"{pct_abs(t.dist_52w_low)} above 52-week low")
    if levels:
        groups.append(", ".join(levels))
    smas = []
    for days, value in ((50, t.dist_sma_50), (200, t.dist_sma_200)):
        if value is not None:
            text = f"{pct_abs(value)} {'above' if value >= 0 else 'below'} {days}-day SMA"
            smas.append(text)
            if days == 200:
                facts.append(Fact(text, 0.6 if value >= 0 else -0.6, "trend"))
    if smas:
        groups.append(", ".join(smas))
    if t.rsi_14 is not None:
        groups.append(f"RSI {t.rsi_14:.0f}")
        if t.rsi_14 > 70 or t.rsi_14 < 30:
            facts.append(Fact(f"RSI {t.rsi_14:.0f}", -0.5 if t.rsi_14 > 70 else 0.3, "trend"))
    if t.volatility_1m is not None:
        groups.append(f"volatility {t.volatility_1m * 100:.0f}%")
        if t.volatility_1m > 0.45:
            facts.append(Fact(f"volatility {t.volatility_1m * 100:.0f}%", -0.7, "trend"))
    if t.sector_relative_1m is not None:
        text = f"vs sector 1m {pct(t.sector_relative_1m)}"
        groups.append(text)
        facts.append(Fact(text, max(-1, min(1, t.sector_relative_1m * 10)), "trend"))
    return "TRENDS: " + ("; ".join(groups) if groups else "not enough price history")


def context_text(ctx: Context) -> ContextText:
    """Render the stock's sections once; scenarios add the shared part and POSITION."""
    facts: list[Fact] = []
    trigger = "8-K filing day" if ctx.trigger == "filing" else "weekly review"
    lines = [
        f"COMPANY: {ctx.ticker} ({ctx.sector}), {trigger}",
        *_forecasts(ctx, facts),
        *_events(ctx, facts),
        *_insider(ctx, facts),
        *_social(ctx, facts),
        _trends(ctx, facts),
    ]
    return ContextText("\n".join(lines), facts, ctx.best_horizon)


class MarketText(NamedTuple):
    """The prompt's MARKET line, and the facts it states that reasoning may cite."""

    line: str
    facts: list[Fact]


def market_text(market: MarketContext) -> MarketText:
    facts: list[Fact] = []
    name = "index" if market.benchmark == "index" else "equal-weight universe"
    parts = []
    for label, value in (("1m", market.index_return_1m), ("3m", market.index_return_3m)):
        if value is not None:
            parts.append(f"{label} {pct(value)}")
            if label == "3m":
                facts.append(
                    Fact(f"{name} 3m {pct(value)}", max(-1.5, min(0.5, value * 5)), "market")
                )
    text = f"MARKET: {name} " + (", ".join(parts) if parts else "returns n/a")
    if market.index_dist_sma_200 is not None:
        side = "above" if market.index_dist_sma_200 >= 0 else "below"
        text += f", {pct_abs(market.index_dist_sma_200)} {side} its 200-day SMA"
    if market.vix is not None:
        z = f" (z {market.vix_z:+.1f})" if market.vix_z is not None else ""
        proxy = ", proxy: realised volatility" if market.vix_is_proxy else ""
        text += f"; VIX {market.vix:.1f}{z}{proxy}"
        if market.vix > 25:
            facts.append(Fact(f"VIX {market.vix:.1f}", -1.0 - (market.vix - 25) / 10, "market"))
    return MarketText(text, facts)


def limits_text(limits: Limits) -> str:
    """The limits a prompt states; one that is off (None) is left out."""
    parts = [
        f"position {limits.max_position * 100:.0f}%",
        f"sector {limits.max_sector * 100:.0f}%",
        f"cash floor {limits.cash_floor * 100:.0f}%",
        f"max {limits.max_positions} positions",
    ]
    if limits.derisk_drawdown is not None:
        parts.append(f"no new positions in a drawdown beyond {pct(-limits.derisk_drawdown, 0)}")
    if limits.stop_loss is not None:
        parts.append(f"stop loss {pct(-limits.stop_loss, 0)}")
    parts.append(f"take profit {pct(limits.take_profit, 0)}")
    return "LIMITS: " + ", ".join(parts)


def date_text(ctx: Context) -> str:
    return f"DATE: {ctx.date}"


def portfolio_text(scenario: Scenario, limits: Limits) -> str:
    """The book as a whole: the same for every stock reviewed on its date."""
    s = scenario.state
    if not s.positions:
        trades = _trades_text(s.recent_trades)
        return f"PORTFOLIO: all cash, equity {money(s.equity)}; no positions; {trades}"
    largest = sorted(s.positions, key=lambda p: -p.weight)[:3]
    return (
        f"PORTFOLIO: equity {money(s.equity)}, peak {money(s.peak_equity)}, drawdown "
        f"{pct(s.drawdown)}; cash {money(s.cash)} ({pct_abs(s.cash_weight)} of equity); "
        f"{len(s.positions)}/{limits.max_positions} positions, largest "
        + ", ".join(f"{p.ticker} {pct_abs(p.weight)}" for p in largest)
        + f"; {_trades_text(s.recent_trades)}"
    )


HOLDING = "POSITION: holding "  # how `position_text` opens for a stock the book holds


def holds_stock(user: str) -> bool:
    """Whether a rendered prompt says the book holds its stock (`position_text`)."""
    return f"\n{HOLDING}" in user or user.startswith(HOLDING)


def position_text(scenario: Scenario, ticker: str, sector: str) -> str:
    """What the book holds of this stock and of its sector."""
    s = scenario.state
    held = s.position(ticker)
    mine = (
        f"holding {ticker}: {pct_abs(held.weight)} of equity, {pct(held.unrealised_return)} "
        f"unrealised, {held.days_held} days"
        if held
        else f"not holding {ticker}"
    )
    return f"POSITION: {mine}; {sector} {pct_abs(s.sector_weight(sector))} of equity"


def _trades_text(trades: list[float]) -> str:
    if not trades:
        return "no closed trades yet"
    won = sum(r > 0 for r in trades)
    return f"last {len(trades)} trades: {won} won, {len(trades) - won} lost"


def decision_text(ticker: str) -> str:
    return (
        f"DECISION REQUIRED: BUY, SELL or SKIP {ticker}, with conviction (0-1), hold days, "
        "reasoning, risk factors, catalysts and exit triggers."
    )


def scenario_market(ctx: Context, scenario: Scenario | None) -> MarketContext:
    if scenario is None or not scenario.market:
        return ctx.market
    m = ctx.market
    stress = scenario.market
    return m.model_copy(
        update={
            "vix": max(m.vix or 0.0, stress["vix"]),
            "vix_z": max(m.vix_z or 0.0, stress["vix_z"]),
            "vix_is_proxy": False if (m.vix or 0.0) < stress["vix"] else m.vix_is_proxy,
            "index_return_1m": min(m.index_return_1m or 0.0, stress["index_return_1m"]),
            "index_return_3m": min(m.index_return_3m or 0.0, stress["index_return_3m"]),
            "index_dist_sma_200": min(m.index_dist_sma_200 or 0.0, stress["index_dist_sma_200"]),
        }
    )


def render_prompt(
    ctx: Context,
    limits: Limits | None = None,
    scenario: Scenario | None = None,
    text: ContextText | None = None,
) -> str:
    """The user prompt for a context under its own portfolio or a scenario's: the one
    renderer, called by the training data (with the stock's part, `text`, rendered once for
    its ten scenarios) and by the agent, so the model reads at inference what it trained on."""
    limits = limits or Limits()
    text = text or context_text(ctx)
    market = market_text(scenario_market(ctx, scenario)).line
    scenario = scenario or Scenario("given", ctx.portfolio)
    return "\n".join(
        [
            date_text(ctx),
            market,
            portfolio_text(scenario, limits),
            limits_text(limits),
            text.head,
            position_text(scenario, ctx.ticker, ctx.sector),
            decision_text(ctx.ticker),
        ]
    )
