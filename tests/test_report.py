"""The HTML report: sections present, plotly.js inlined once, user text escaped, caps hold."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from synthpm.report import html as report_html
from synthpm.report import write_report

PLOTLY_BANNER = "* plotly.js v"  # the licence header at the top of the library source
HEADINGS = [
    "Equity curves",
    "Drawdowns",
    "Monthly returns",
    "Rolling Sharpe",
    "Metrics",
    "Decisions with reasoning",
    "Rejection and resize reasons",
]


def make_run(
    root: Path,
    name: str,
    *,
    days: int = 300,
    seed: int = 0,
    sharpe: float = 1.2345,
    decisions: pd.DataFrame | None = None,
) -> Path:
    """A fake run directory in the engine's layout."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=days)
    equity = 100_000 * np.exp(np.cumsum(rng.normal(3e-4, 0.01, days)))
    bench = 100_000 * np.exp(np.cumsum(rng.normal(2e-4, 0.01, days)))
    run = root / name
    run.mkdir(parents=True)
    pd.DataFrame(
        {
            "date": dates.strftime("%Y-%m-%d"),
            "equity": equity,
            "cash": equity * 0.1,
            "benchmark": bench,
            "exposure": 0.9,
            "positions": 5,
        }
    ).to_csv(run / "equity.csv", index=False)
    pd.DataFrame(
        {
            "date": dates[[5, 20, 40]].strftime("%Y-%m-%d"),
            "ticker": ["AAA", "AAA", "BBB"],
            "side": ["BUY", "SELL", "SHORT"],
            "shares": [10, 10, 5],
            "price": [100.0, 110.0, 50.0],
            "value": [1000.0, 1100.0, 250.0],
            "cost": [1.0, 1.1, 0.25],
            "reason": ["signal", "exit", "signal"],
            "pnl": [np.nan, 99.0, np.nan],
            "holding_days": [np.nan, 35, np.nan],
        }
    ).to_csv(run / "trades.csv", index=False)
    metrics = {
        "total_return": 0.4567,
        "cagr": 0.12,
        "annual_volatility": 0.15,
        "sharpe": sharpe,
        "max_drawdown": -0.2,
        "trade_count": 3,
        "costs": 2.35,
        "beta": None,
    }
    meta = {
        "strategy": name,
        "metrics": metrics,
        "fills": "next bar open",
        "dividends": "reinvested via total-return prices",
        "costs": {"commission_bps": 1.0, "slippage_bps": 5.0},
        "start": str(dates[0].date()),
        "end": str(dates[-1].date()),
    }
    (run / "metrics.json").write_text(json.dumps(meta))
    if decisions is not None:
        decisions.to_parquet(run / "decisions.parquet")
    return run


def make_decisions(n: int = 20) -> pd.DataFrame:
    dates = pd.bdate_range("2020-01-01", periods=n)
    status = ["executed", "rejected", "resized", "skipped"] * (n // 4)
    reason = ["", "max_position_limit", "liquidity_cap", "no_signal"] * (n // 4)
    df = pd.DataFrame(
        {
            "date": dates,
            "ticker": "AAA",
            "source": "lm",
            "decision": ["BUY", "BUY", "SELL", "SKIP"] * (n // 4),
            "conviction": 0.7,
            "hold_days": 10,
            "reasoning": "momentum looks fine",
            "status": status,
            "size": 5_000.0,
            "reason": reason,
        }
    )
    df.loc[1, "reasoning"] = "<script>alert('x')</script> & more"
    return df


@pytest.fixture
def report(tmp_path: Path) -> str:
    runs = {
        "lm_picker": make_run(tmp_path, "a", seed=1, decisions=make_decisions()),
        "equal_weight": make_run(tmp_path, "b", seed=2, sharpe=0.5),
    }
    out = write_report(runs, tmp_path / "out" / "report.html", title="My <test> report")
    assert out.exists()
    return out.read_text(encoding="utf-8")


def test_sections_and_names(report: str) -> None:
    for heading in HEADINGS:
        assert f"<h2>{heading}</h2>" in report
    assert "lm_picker" in report and "equal_weight" in report
    assert "My &lt;test&gt; report" in report
    assert "2020-01-01 to 2021-02-23" in report  # the date range at the top


def test_plotly_inlined_once(report: str) -> None:
    assert report.count(PLOTLY_BANNER) == 1  # library source embedded exactly once
    # No external scripts (the library itself mentions cdn.plot.ly only as a geo-topojson default).
    assert not re.search(r"<script[^>]*\bsrc=", report)
    assert report.count('class="plotly-graph-div"') == 5  # equity, dd, heatmap, sharpe, reasons


def test_metrics_formatted(report: str) -> None:
    assert ">1.23<" in report and ">0.50<" in report  # sharpe, 2 decimals
    assert ">45.67%<" in report and ">-20.00%<" in report  # percent for returns/drawdowns
    assert ">$2<" in report and ">—<" in report  # costs in dollars; None as a dash
    assert "next bar open" in report and "5.0 bps slippage" in report


def test_decisions_escaped_and_reasons(report: str) -> None:
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in report
    assert "<script>alert" not in report
    assert "max_position_limit" in report and "liquidity_cap" in report
    assert "no decisions (portfolio rule)" in report  # equal_weight has no decisions.parquet
    assert 'id="dfilter"' in report
    # SKIP rows are not embedded: 15 acted rows, 5 skips reported
    assert "showing the latest 15 of 15 non-SKIP decisions (0 left out; 5 SKIPs" in report
    assert "no_signal" not in report


def test_decision_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_html, "MAX_DECISIONS", 4)
    run = make_run(tmp_path, "a", decisions=make_decisions(40))
    text = write_report({"lm": run}, tmp_path / "r.html").read_text(encoding="utf-8")
    assert "showing the latest 4 of 30 non-SKIP decisions (26 left out; 10 SKIPs" in text
    assert text.count("<tr><td>") == 4


def test_run_without_decisions_or_trades(tmp_path: Path) -> None:
    run = make_run(tmp_path, "rule", days=60)  # shorter than the rolling window
    (run / "trades.csv").write_text(
        "date,ticker,side,shares,price,value,cost,reason,pnl,holding_days\n"
    )
    empty = make_decisions().iloc[:0]
    run2 = make_run(tmp_path, "rule2", days=60, decisions=empty)
    text = write_report({"rule": run, "rule2": run2}, tmp_path / "r.html").read_text()
    assert text.count("no decisions (portfolio rule)") == 2
    assert "no rejected or resized decisions" in text
    assert text.count('class="plotly-graph-div"') == 4
