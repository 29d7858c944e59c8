"""HTML reports comparing backtest runs."""

from synthpm.report.html import write_report

__all__ = ["write_report"]
