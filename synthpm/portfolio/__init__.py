"""The portfolio manager (DESIGN §8): deterministic sizing under hard limits, each signal logged."""

from synthpm.portfolio.manager import Book, Order, PortfolioManager

__all__ = ["Book", "Order", "PortfolioManager"]
