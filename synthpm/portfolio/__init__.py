"""The portfolio manager (docs/design.md §8): deterministic sizing under hard limits, each
signal logged."""

from synthpm.portfolio.manager import Book, Order, Outcome, Plan, PortfolioManager

__all__ = ["Book", "Order", "Outcome", "Plan", "PortfolioManager"]
