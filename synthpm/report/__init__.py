"""HTML reports comparing backtest runs."""

from synthpm.report.html import model_eval, write_report

__all__ = ["model_eval", "write_report"]
