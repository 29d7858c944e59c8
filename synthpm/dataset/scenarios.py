"""Ten simulated portfolio states per decision point (docs/design.md §5).

The same context under different states teaches the model that the portfolio changes the
right decision: a strong setup is a BUY for an empty book and a disciplined SKIP when its
sector is already over the limit. Every state is consistent by construction and validated
(`PortfolioState`): position weights plus cash equal equity, the equity history ends at the
current equity and shows the drawdown the state claims, recent trades show the streak.

Point in time: positions are drawn from the tickers that have a decision point on the same
date, so a state never holds a stock that is not trading yet. Positions may sit above the
5% cap where they drifted up after purchase (caps bind at trade time), which is how an
over-concentrated or low-cash book arises in practice.

States are seeded by (seed, date, scenario, sector or ticker), so a build gives the same
examples in any chunking or order. The states that do not depend on the context are made
once per date and shared; a context whose ticker one of them holds gets a copy with that
position swapped for another name.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from synthpm.context import PortfolioState, Position
from synthpm.limits import Limits

SCENARIOS = (
    "empty",
    "healthy",
    "over_concentrated",
    "drawdown",
    "full",
    "low_cash",
    "holding",
    "hot_streak",
    "cold_streak",
    "bear_market",
)
START_EQUITY = 1_000_000.0
HISTORY_WEEKS = 13


@dataclass(frozen=True)
class Scenario:
    """A named portfolio state for one context, and the market stress the bear scenario
    applies. The state is a `PortfolioState`, the one shape the prompt and the labels read,
    as the engine's live book is (the prompt wraps that one as `Scenario("given", state)`)."""

    name: str
    state: PortfolioState
    market: dict[str, float] = field(default_factory=dict)  # MarketContext overrides


UNLIMITED_DRAWDOWN = 0.15  # the fall the `drawdown` scenario shows where no limit is set


def shown_drawdown(lim: Limits) -> float:
    """How far below its peak the `drawdown` scenario's book stands, at least: past the
    de-risk limit where one is set (its buys are refused), else a fall a book may well
    meet (its buys are allowed, and the model learns the fall alone refuses nothing)."""
    return UNLIMITED_DRAWDOWN if lim.derisk_drawdown is None else lim.derisk_drawdown


def _history(rng: np.random.Generator, end: float, peak: float) -> list[float]:
    """Weekly equity from START_EQUITY that touches `peak` and ends at `end`."""
    top = int(rng.integers(2, HISTORY_WEEKS - 1))
    rise = np.linspace(START_EQUITY, peak, top + 1)
    fall = np.linspace(peak, end, HISTORY_WEEKS - top)[1:]
    path = np.concatenate([rise, fall])
    wiggle = 1 + rng.normal(0, 0.004, len(path))
    wiggle[[0, top, -1]] = 1.0  # keep start, peak and end exact
    path = np.minimum(path * wiggle, peak)
    return [round(float(v), 2) for v in path]


def _trades(rng: np.random.Generator, wins: int, n: int = 10) -> list[float]:
    won = rng.uniform(0.01, 0.15, wins)
    lost = -rng.uniform(0.01, 0.08, n - wins)
    out = np.concatenate([won, lost])
    rng.shuffle(out)
    return [round(float(v), 4) for v in out]


class ScenarioBook:
    """The maker of every context's scenarios on one date (a set of books, not a book itself:
    each `Scenario.state` is one)."""

    def __init__(
        self,
        date: np.datetime64,
        universe: dict[str, str],
        limits: Limits | None = None,
        seed: int = 0,
    ):
        self.limits = limits or Limits()
        self.universe = universe  # ticker -> sector, the tickers with a point on this date
        self.day = int(np.datetime64(date, "D").astype(np.int64))
        self.seed = seed
        self.names = np.array(sorted(universe))
        # A typical book holds 60% of the allowed names (12 of 20), so it has room to add.
        self.typical = max(1, round(0.6 * self.limits.max_positions))
        self._shared: dict[str, Scenario | None] = {}
        self._concentrated: dict[str, Scenario | None] = {}

    def _rng(self, *parts: str) -> np.random.Generator:
        return np.random.default_rng(
            [self.seed, self.day, *(zlib.crc32(p.encode()) for p in parts)]
        )

    def _state(
        self,
        rng: np.random.Generator,
        held: list[str],
        weights: np.ndarray,
        equity: float,
        peak: float,
        wins: int | None = None,
        gains: tuple[float, float] = (-0.1, 0.2),
    ) -> PortfolioState:
        positions = [
            Position(
                ticker=t,
                sector=self.universe[t],
                weight=round(float(w), 6),
                unrealised_return=round(float(rng.uniform(*gains)), 4),
                days_held=int(rng.integers(5, 180)),
            )
            for t, w in zip(held, weights, strict=True)
        ]
        invested = sum(p.weight for p in positions)
        return PortfolioState(
            cash=round(equity * (1.0 - invested), 6),
            equity=equity,
            positions=positions,
            equity_history=_history(rng, equity, peak),
            recent_trades=_trades(rng, wins if wins is not None else int(rng.integers(4, 7))),
        )

    def _pick(self, rng, n: int, pool: list[str]) -> list[str]:
        """n distinct names drawn from pool, or none when it is too small."""
        if len(pool) < n:
            return []
        return [str(t) for t in rng.choice(pool, n, replace=False)]

    def _spread(self, rng, held: list[str], total: float, cap: float) -> np.ndarray:
        """Weights summing to `total`, each within the position cap where that is possible,
        and no sector above 30% (so these books have room in every sector)."""
        w = rng.uniform(0.6, 1.0, len(held))
        w = w / w.sum() * total
        w = np.minimum(w, max(cap, total / len(held)))
        sectors = np.array([self.universe[t] for t in held])
        for s in set(sectors):
            mask = sectors == s
            if w[mask].sum() > 0.30:
                w[mask] *= 0.30 / w[mask].sum()
        return w

    def _book(self, name: str) -> Scenario | None:
        """A context-independent state for this date (None when the universe is too small)."""
        rng = self._rng(name)
        lim = self.limits
        cap = lim.max_position
        if name == "empty":
            return Scenario(name, PortfolioState.empty(START_EQUITY))
        n = {"full": lim.max_positions, "low_cash": lim.max_positions - 2}.get(name, self.typical)
        held = self._pick(rng, n, list(self.names))
        if not held:
            return None
        if name == "full":
            weights = self._spread(rng, held, rng.uniform(0.7, 0.85), cap)
            return Scenario(name, self._state(rng, held, weights, 1.05e6, 1.07e6))
        if name == "low_cash":
            cash = rng.uniform(0.01, lim.cash_floor * 0.6)
            weights = self._spread(rng, held, 1.0 - cash, 1.0)
            weights *= (1.0 - cash) / weights.sum()
            return Scenario(name, self._state(rng, held, weights, 1.03e6, 1.05e6, gains=(0, 0.4)))
        weights = self._spread(rng, held, rng.uniform(0.4, 0.6), cap)
        if name == "healthy":
            return Scenario(name, self._state(rng, held, weights, 1.08e6, 1.09e6))
        if name == "drawdown":
            peak = 1.0e6
            equity = peak * (
                1 - rng.uniform(shown_drawdown(lim) + 0.02, shown_drawdown(lim) + 0.06)
            )
            state = self._state(rng, held, weights, round(equity, 2), peak, 3, (-0.3, 0.05))
            return Scenario(name, state)
        if name == "hot_streak":
            state = self._state(rng, held, weights, 1.12e6, 1.12e6, int(rng.integers(8, 11)))
            return Scenario(name, state)
        if name == "cold_streak":
            state = self._state(rng, held, weights, 0.94e6, 1.03e6, int(rng.integers(0, 3)))
            return Scenario(name, state)
        if name == "bear_market":
            state = self._state(rng, held, weights, 0.9e6, 1.02e6, 3, (-0.25, 0.05))
            stress = {
                "vix": float(rng.uniform(32, 45)),
                "vix_z": float(rng.uniform(2.0, 4.0)),
                "index_return_1m": float(rng.uniform(-0.12, -0.06)),
                "index_return_3m": float(rng.uniform(-0.25, -0.12)),
                "index_dist_sma_200": float(rng.uniform(-0.15, -0.06)),
            }
            return Scenario(name, state, stress)
        raise KeyError(name)

    def _over_concentrated(self, sector: str, ticker: str) -> Scenario | None:
        """The context's sector above its limit: in-sector names that ran up, plus others."""
        # One book per sector, whichever context asks first (a holder of the context's own
        # ticker is swapped below), so the examples do not depend on the order of contexts.
        if sector not in self._concentrated:
            rng = self._rng("over_concentrated", sector)
            lim = self.limits
            same = [t for t in self.names if self.universe[t] == sector]
            # leave one name of the sector out, so a holder of the context's ticker can swap
            inside = self._pick(rng, min(5, len(same) - 1), same) if len(same) > 1 else []
            # the rest from other sectors, so the sector weight is the one intended
            outside = [t for t in self.names if self.universe[t] != sector]
            others = self._pick(rng, max(self.typical - len(inside), 1), outside)
            if not inside:
                self._concentrated[sector] = None
            else:
                heavy = lim.max_sector + rng.uniform(0.03, 0.10)
                w_in = rng.uniform(0.8, 1.0, len(inside))
                w_in = w_in / w_in.sum() * heavy
                w_out = self._spread(rng, others, 0.35, lim.max_position) if others else []
                state = self._state(
                    rng, inside + others, np.concatenate([w_in, w_out]), 1.1e6, 1.1e6, 6, (0.2, 0.6)
                )
                self._concentrated[sector] = Scenario("over_concentrated", state)
        found = self._concentrated[sector]
        if found is not None and found.state.position(ticker) is not None:
            return self._swap(found, ticker)
        return found

    def _swap(self, scenario: Scenario, ticker: str) -> Scenario:
        """The same book with `ticker`'s position moved to a name it does not hold."""
        state = scenario.state
        held = {p.ticker for p in state.positions}
        sector = state.position(ticker).sector
        spare = [t for t in self.names if t not in held and t != ticker]
        same = [t for t in spare if self.universe[t] == sector]
        pick = (same or spare or [None])[0]
        if pick is None:
            positions = [p for p in state.positions if p.ticker != ticker]
            cash = state.equity - sum(p.weight for p in positions) * state.equity
        else:
            positions = [
                p.model_copy(update={"ticker": str(pick), "sector": self.universe[pick]})
                if p.ticker == ticker
                else p
                for p in state.positions
            ]
            cash = state.cash
        # Weights are unchanged (or one is moved to cash), so the state stays consistent;
        # copying skips re-validation, which the hot path of a build cannot afford.
        new = state.model_copy(update={"positions": positions, "cash": cash})
        return Scenario(scenario.name, new, scenario.market)

    def _holding(self, ticker: str, sector: str) -> Scenario | None:
        base = self.shared("healthy")
        if base is None:
            return None
        rng = self._rng("holding", ticker)
        if base.state.position(ticker) is not None:
            base = self._swap(base, ticker)
        state = base.state
        weight = float(rng.uniform(0.02, self.limits.max_position))
        if state.cash_weight - weight < self.limits.cash_floor:
            return None
        mine = Position(
            ticker=ticker,
            sector=sector,
            weight=round(weight, 6),
            unrealised_return=round(float(rng.uniform(-0.15, 0.25)), 4),
            days_held=int(rng.integers(5, 120)),
        )
        new = PortfolioState(
            cash=round(state.cash - mine.weight * state.equity, 6),
            equity=state.equity,
            positions=[*state.positions, mine],
            equity_history=state.equity_history,
            recent_trades=state.recent_trades,
        )
        return Scenario("holding", new)

    def shared(self, name: str) -> Scenario | None:
        if name not in self._shared:
            self._shared[name] = self._book(name)
        return self._shared[name]

    def for_context(self, ticker: str, sector: str, names=SCENARIOS) -> list[Scenario]:
        """The context's scenarios in `names` order; those the universe cannot fill are left
        out (a 20-stock universe cannot hold 20 names besides the context's own)."""
        out = []
        for name in names:
            if name == "over_concentrated":
                found = self._over_concentrated(sector, ticker)
            elif name == "holding":
                found = self._holding(ticker, sector)
            else:
                found = self.shared(name)
                if found is not None and found.state.position(ticker) is not None:
                    found = self._swap(found, ticker)
            if found is not None and self._is_what_it_claims(found, ticker, sector):
                out.append(found)
        return out

    def _is_what_it_claims(self, scenario: Scenario, ticker: str, sector: str) -> bool:
        """A swap or a small universe can undo a scenario (19 names are not a full book)."""
        state, lim = scenario.state, self.limits
        return {
            "full": len(state.positions) >= lim.max_positions,
            "over_concentrated": state.sector_weight(sector) > lim.max_sector,
            "low_cash": state.cash_weight < lim.cash_floor,
            "drawdown": state.drawdown <= -shown_drawdown(lim),
            "holding": state.position(ticker) is not None,
        }.get(scenario.name, True)
