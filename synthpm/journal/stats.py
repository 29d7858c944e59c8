"""What the journal says about each source (`synthpm journal stats`).

Per source, over entries whose 21-day outcome is known: the hit rate (a BUY beat the
benchmark, a SELL trailed it) and the realised P&L of the positions its BUYs opened; the
conviction's reliability (conviction is the belief of beating the benchmark,
`synthpm.signals`: per bucket, the mean conviction against the share that did) and the
realised excess return by conviction bucket; and the manager's outcomes by status and
reason over every entry.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

BUCKETS = np.linspace(0.0, 1.0, 6)  # conviction quintiles of the unit interval


def hit_rates(rows: pd.DataFrame) -> pd.DataFrame:
    known = rows[rows["excess_21d"].notna()]
    acted = known[known["decision"].isin(["BUY", "SELL"])]
    hit = np.where(acted["decision"] == "BUY", acted["excess_21d"] > 0, acted["excess_21d"] < 0)
    out = pd.DataFrame(
        {
            "entries": rows.groupby("source").size(),
            "with_outcome": known.groupby("source").size(),
            "buys": acted[acted["decision"] == "BUY"].groupby("source").size(),
            "sells": acted[acted["decision"] == "SELL"].groupby("source").size(),
            "hit_rate": pd.Series(hit, index=acted.index).groupby(acted["source"]).mean(),
            "mean_excess_21d_buys": acted[acted["decision"] == "BUY"]
            .groupby("source")["excess_21d"]
            .mean(),
            # positions are credited to the BUY that opened them; a SELL's own P&L is part
            # of its position's, so summing every row would count it twice
            "realised_pnl": rows[rows["decision"] == "BUY"]
            .groupby("source")["pnl"]
            .sum(min_count=1),
        }
    )
    return out.fillna({"with_outcome": 0, "buys": 0, "sells": 0}).rename_axis("source")


def reliability(rows: pd.DataFrame) -> pd.DataFrame:
    """Per source and conviction bucket: entries, mean conviction, share that beat the
    benchmark over 21 days, mean excess return."""
    known = rows[rows["excess_21d"].notna()].copy()
    known["bucket"] = pd.cut(known["conviction"], BUCKETS, include_lowest=True)
    known["won"] = known["excess_21d"] > 0
    table = known.groupby(["source", "bucket"], observed=True).agg(
        entries=("won", "size"),
        mean_conviction=("conviction", "mean"),
        win_rate=("won", "mean"),
        mean_excess_21d=("excess_21d", "mean"),
    )
    return table


def by_reason(rows: pd.DataFrame) -> pd.DataFrame:
    reason = rows["reason"].fillna("").replace("", "-")
    return (
        rows.assign(reason=reason)
        .groupby(["source", "decision", "status", "reason"])
        .size()
        .rename("entries")
        .to_frame()
    )
