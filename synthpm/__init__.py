"""synthpm: a synthetic portfolio manager.

A small language model writes signals (decision, conviction, reasoning); deterministic code
turns them into a risk-limited portfolio; an honest backtest compares it with baselines.
See docs/design.md for the data flow; the package's folders follow it.
"""

from synthpm.data.store import Store, open_store

__all__ = ["Store", "open_store"]
__version__ = "0.1.0"
