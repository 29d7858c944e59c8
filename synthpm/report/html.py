"""One self-contained HTML report comparing backtest runs (plotly.js inlined once, no network)."""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from synthpm.folders import write_atomic

MAX_DECISIONS = 5_000  # per strategy: a 300k-decision run must not become a 500 MB page
MAX_REASONING = 2_000  # characters per reasoning cell, for the same reason
ROLL = 126  # rolling-Sharpe window: half a trading year
PCT = {"total_return", "cagr", "annual_volatility", "max_drawdown", "exposure", "win_rate", "alpha"}
METRIC_ORDER = [
    "total_return", "cagr", "annual_volatility", "sharpe", "sharpe_ci_low", "sharpe_ci_high",
    "sortino", "max_drawdown", "calmar", "alpha", "beta", "information_ratio", "win_rate",
    "profit_loss_ratio", "avg_holding_days", "turnover", "trade_count", "exposure", "costs",
]  # fmt: skip
DECISION_COLS = ["date", "strategy", "ticker", "decision", "conviction", "status", "size"]
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1300px;color:#222;padding:0 1em}
h1{margin-bottom:.2em} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:13px} th,td{border:1px solid #ddd;padding:3px 8px}
th{background:#f3f3f3;position:sticky;top:0}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#666;font-size:13px} .scroll{max-height:700px;overflow:auto}
td.why{max-width:520px;white-space:pre-wrap} #dfilter{width:420px;padding:4px;margin:.5em 0}
"""
# Client-side filter: hide rows whose text lacks the query (case-insensitive).
FILTER_JS = """
document.getElementById('dfilter').addEventListener('input', function () {
  const q = this.value.toLowerCase();
  for (const tr of document.querySelectorAll('#decisions tbody tr'))
    tr.style.display = tr.textContent.toLowerCase().includes(q) ? '' : 'none';
});
"""


def _load(run: Path) -> dict[str, Any]:
    """Read one run directory; decisions is None when absent/empty (portfolio-rule strategies)."""
    eq = pd.read_csv(run / "equity.csv", parse_dates=["date"]).set_index("date").sort_index()
    meta = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").exists() else {}
    dec = None
    if (run / "decisions.parquet").exists():
        dec = pd.read_parquet(run / "decisions.parquet")
        dec = dec if len(dec) else None
    return {"equity": eq, "meta": meta, "decisions": dec}


def _fmt(key: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, str):  # start / end dates
        return html.escape(v)
    v = float(v)
    if key in PCT:
        return f"{v:.2%}"
    if key == "costs":
        return f"${v:,.0f}"
    if key == "trade_count":
        return f"{v:,.0f}"
    if key == "avg_holding_days":
        return f"{v:.1f}"
    return f"{v:.2f}"


def _fig(fig: go.Figure, title: str, height: int = 420, hover: str = "x unified") -> str:
    # plotly.js is inlined once in <head>, so every figure is emitted without it. The title is
    # centred so it never collides with the top-left buttons/dropdowns.
    fig.update_layout(title={"text": title, "x": 0.5}, height=height, template="plotly_white")
    fig.update_layout(hovermode=hover)
    # an id from the title (unique on a page), not plotly's random one: a rerun's report is
    # byte-identical
    div_id = "fig-" + "-".join(re.findall(r"\w+", title.lower()))
    return pio.to_html(
        fig, full_html=False, include_plotlyjs=False, default_height=f"{height}px", div_id=div_id
    )


def _dates(idx: pd.Index) -> np.ndarray:
    # Plain ISO dates are ~half the size of plotly's default datetime serialization.
    return np.asarray(idx.strftime("%Y-%m-%d"), dtype=object)


def _equity_fig(runs: dict[str, dict[str, Any]]) -> str:
    fig = go.Figure()
    first = next(iter(runs.values()))["equity"]
    if "benchmark" in first:
        bench = first["benchmark"].dropna()
        fig.add_scatter(x=_dates(bench.index), y=bench.to_numpy(), name="benchmark",
                        line={"color": "#888", "dash": "dot"})  # fmt: skip
    for name, r in runs.items():
        fig.add_scatter(x=_dates(r["equity"].index), y=r["equity"]["equity"].to_numpy(), name=name)
    scale = [
        {"label": s, "method": "relayout", "args": [{"yaxis.type": s}]} for s in ("linear", "log")
    ]
    fig.update_layout(updatemenus=[{"buttons": scale, "type": "buttons", "direction": "right",
                                    "x": 0, "y": 1.12, "xanchor": "left"}])  # fmt: skip
    return _fig(fig, "Equity ($)")


def _drawdown_fig(runs: dict[str, dict[str, Any]]) -> str:
    fig = go.Figure()
    for name, r in runs.items():
        eq = r["equity"]["equity"]
        fig.add_scatter(x=_dates(eq.index), y=(eq / eq.cummax() - 1).to_numpy(), name=name,
                        fill="tozeroy")  # fmt: skip
    fig.update_yaxes(tickformat=".0%")
    return _fig(fig, "Drawdown from peak")


def _heatmap_fig(runs: dict[str, dict[str, Any]]) -> str:
    fig = go.Figure()
    for i, (name, r) in enumerate(runs.items()):
        ret = r["equity"]["equity"].pct_change().dropna()
        # Compound daily returns within each calendar month.
        monthly = (1 + ret).groupby([ret.index.year, ret.index.month]).prod() - 1
        grid = monthly.unstack().reindex(columns=range(1, 13)) * 100
        fig.add_heatmap(
            z=grid.to_numpy(), x=[pd.Timestamp(2000, m, 1).strftime("%b") for m in range(1, 13)],
            y=[str(y) for y in grid.index], name=name, visible=i == 0, colorscale="RdYlGn",
            zmid=0, texttemplate="%{z:.1f}", hovertemplate="%{y} %{x}: %{z:.2f}%<extra></extra>",
        )  # fmt: skip
    # One heatmap per strategy; the dropdown shows exactly one at a time.
    show = [{"visible": [j == i for j in range(len(runs))]} for i in range(len(runs))]
    buttons = [
        {"label": n, "method": "update", "args": [v]} for n, v in zip(runs, show, strict=True)
    ]
    fig.update_layout(updatemenus=[{"buttons": buttons, "x": 0, "y": 1.15, "xanchor": "left"}])
    fig.update_yaxes(autorange="reversed", type="category")
    height = max(300, 26 * len(fig.data[0].y) + 150)
    return _fig(fig, "Monthly returns (%)", height=height, hover="closest")


def _sharpe_fig(runs: dict[str, dict[str, Any]]) -> str:
    fig = go.Figure()
    for name, r in runs.items():
        ret = r["equity"]["equity"].pct_change()
        roll = ret.rolling(ROLL).mean() / ret.rolling(ROLL).std(ddof=1) * np.sqrt(252)
        fig.add_scatter(x=_dates(roll.index), y=roll.to_numpy(), name=name)
    return _fig(fig, f"Rolling {ROLL}-day Sharpe (annualized)")


def _metrics_table(runs: dict[str, dict[str, Any]]) -> str:
    mets = {name: r["meta"].get("metrics", {}) for name, r in runs.items()}
    keys = [k for k in METRIC_ORDER if any(k in m for m in mets.values())]
    # Engine-specific extras follow the known ones, in first-seen order across runs.
    keys = list(dict.fromkeys(keys + [k for m in mets.values() for k in m]))
    head = "".join(f"<th>{html.escape(n)}</th>" for n in runs)
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th>"
        + "".join(f'<td class="num">{_fmt(k, m.get(k))}</td>' for m in mets.values())
        + "</tr>"
        for k in keys
    )
    notes = []
    for name, r in runs.items():
        m, c = r["meta"], r["meta"].get("costs", {})
        notes.append(
            f"<li><b>{html.escape(name)}</b>: {html.escape(str(m.get('start', '?')))} to "
            f"{html.escape(str(m.get('end', '?')))}; fills: {html.escape(str(m.get('fills', '?')))}"
            f"; dividends: {html.escape(str(m.get('dividends', '?')))}; costs: "
            f"{html.escape(str(c.get('commission_bps', '?')))} bps commission + "
            f"{html.escape(str(c.get('slippage_bps', '?')))} bps slippage; "
            f"{html.escape(str(m.get('idle_cash_note', 'idle cash earns nothing')))}; benchmark: "
            f"{html.escape(str(m.get('benchmark', '?')))} "
            f"({html.escape(str(m.get('benchmark_note', m.get('benchmark_kind', '?'))))})"
            + _sample_note(m)
            + "</li>"
        )
    return (
        f"<table><thead><tr><th>metric</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
        f'<ul class="note">{"".join(notes)}</ul>'
    )


def _sample_note(meta: dict[str, Any]) -> str:
    """A language model's run says whether it trades dates the model trained on."""
    sample = meta.get("model_dates")
    if not sample:
        return ""
    style = ' style="color:#b00"' if sample.get("in_sample") else ""
    return f"; <b{style}>{html.escape(sample['note'])}</b>"


def _decisions_table(runs: dict[str, dict[str, Any]]) -> str:
    frames, notes = [], []
    for name, r in runs.items():
        dec = r["decisions"]
        if dec is None:
            notes.append(f"{html.escape(name)}: no decisions (portfolio rule)")
            continue
        acted = dec[dec["decision"].astype(str).str.upper() != "SKIP"].assign(strategy=name)
        acted = acted.assign(date=pd.to_datetime(acted["date"])).sort_values("date", kind="stable")
        kept = acted.tail(MAX_DECISIONS)
        frames.append(kept)
        notes.append(
            f"{html.escape(name)}: showing the latest {len(kept):,} of {len(acted):,} non-SKIP "
            f"decisions ({len(acted) - len(kept):,} left out; {len(dec) - len(acted):,} SKIPs "
            "not shown)"
        )
    note = '<p class="note">' + "<br>".join(notes) + "</p>"
    if not frames:
        return note
    df = pd.concat(frames, ignore_index=True).sort_values("date", ascending=False, kind="stable")
    cols = [*DECISION_COLS, "reason", "reasoning"]
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = []
    for row in df.reindex(columns=cols).itertuples(index=False):
        d = row._asdict()
        cells = [d["date"].strftime("%Y-%m-%d"), d["strategy"], d["ticker"], d["decision"]]
        cells += [_num(d["conviction"], "{:.2f}"), d["status"], _num(d["size"], "${:,.0f}")]
        cells += [d["reason"], _txt(d["reasoning"])[:MAX_REASONING]]
        attrs = [""] * 8 + [' class="why"']  # only the reasoning cell wraps
        tds = "".join(
            f"<td{a}>{html.escape(_txt(c))}</td>" for a, c in zip(attrs, cells, strict=True)
        )
        body.append(f"<tr>{tds}</tr>")
    return (
        f'{note}<input id="dfilter" type="search" placeholder="filter rows (any text)…">'
        f'<div class="scroll"><table id="decisions"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div><script>{FILTER_JS}</script>"
    )


def _num(v: Any, fmt: str) -> str:
    return "" if v is None or pd.isna(v) else fmt.format(float(v))


def _txt(v: Any) -> str:
    return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def _reasons_fig(runs: dict[str, dict[str, Any]]) -> str:
    fig = go.Figure()
    for name, r in runs.items():
        dec = r["decisions"]
        if dec is None or "status" not in dec:
            continue
        hit = dec[dec["status"].isin(["rejected", "resized"])]
        counts = hit.groupby(["status", hit["reason"].fillna("(none)")]).size()
        for status, sub in counts.groupby(level=0):
            sub = sub.droplevel(0).sort_values(ascending=False)
            fig.add_bar(x=list(sub.index), y=sub.to_numpy(), name=f"{name} · {status}")
    if not fig.data:
        return '<p class="note">no rejected or resized decisions</p>'
    fig.update_layout(barmode="group")
    return _fig(fig, "Rejection / resize reasons (count)")


def model_eval(model_dir: str | Path) -> dict | None:
    """A model folder's `lm eval` report (`eval.json`), None without one."""
    path = Path(model_dir) / "eval.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _reliability_fig(evals: dict[str, dict]) -> str:
    """Predicted vs observed win rate of each model's conviction (its eval's `calibration`
    section, test split), raw and calibrated, with the diagonal and the bins' counts."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                    line={"color": "#888", "dash": "dot"}, hoverinfo="skip")  # fmt: skip
    notes = []
    for name, report in evals.items():
        section = report.get("calibration") or {}
        for reading in ("raw", "calibrated"):
            rel = section.get(reading)
            if not rel:
                continue
            rows = [r for r in rel["reliability"] if r["count"]]
            label = f"{name} · {reading}"
            fig.add_scatter(
                x=[r["mean_predicted"] for r in rows], y=[r["observed"] for r in rows],
                mode="lines+markers", name=label, customdata=[r["count"] for r in rows],
                hovertemplate="predicted %{x:.2f}, observed %{y:.2f}, %{customdata} contexts",
            )  # fmt: skip
            fig.add_bar(
                x=[(r["low"] + r["high"]) / 2 for r in rows], y=[r["count"] for r in rows],
                name=f"{label}: contexts per bin", yaxis="y2", opacity=0.25, width=0.08,
            )  # fmt: skip
            notes.append(f"{html.escape(label)}: Brier {rel['brier']:.3f}, ECE {rel['ece']:.3f}")
        if section:
            notes.append(
                f"{html.escape(name)}: {section.get('examples', '?')} contexts of the test split"
                f" (scenario {html.escape(str(section.get('scenario', '?')))}), win rate "
                + (f"{section['win_rate']:.1%}" if section.get("win_rate") is not None else "?")
                + ("" if section.get("calibrated") else "; not calibrated (`lm calibrate`)")
            )
    fig.update_layout(
        xaxis={"title": "predicted (conviction)", "range": [0, 1]},
        yaxis={"title": "observed win rate", "range": [0, 1]},
        yaxis2={"title": "contexts", "overlaying": "y", "side": "right", "showgrid": False},
        barmode="overlay", legend={"x": 1.08},
    )  # fmt: skip
    chart = _fig(fig, "Reliability of the model's conviction (test split)", hover="closest")
    return chart + f'<p class="note">{"<br>".join(notes)}</p>'


def write_report(
    runs: dict[str, Path],
    out: Path,
    title: str = "synthpm backtest",
    model_evals: dict[str, dict] | None = None,
) -> Path:
    """Write one self-contained HTML file comparing `runs` (name -> run dir, in display order).
    `model_evals`: a strategy's model evaluation (`model_eval`), by name, whose reliability
    table (its `calibration` section) the report draws."""
    if not runs:
        raise ValueError("write_report needs at least one run")
    data = {name: _load(Path(d)) for name, d in runs.items()}
    evals = {n: e for n, e in (model_evals or {}).items() if n in runs and e.get("calibration")}
    start = min(r["equity"].index.min() for r in data.values()).strftime("%Y-%m-%d")
    end = max(r["equity"].index.max() for r in data.values()).strftime("%Y-%m-%d")
    sections = [
        ("Equity curves", _equity_fig(data)),
        ("Drawdowns", _drawdown_fig(data)),
        ("Monthly returns", _heatmap_fig(data)),
        ("Rolling Sharpe", _sharpe_fig(data)),
        ("Metrics", _metrics_table(data)),
        ("Decisions with reasoning", _decisions_table(data)),
        ("Rejection and resize reasons", _reasons_fig(data)),
    ]
    if evals:
        sections.append(("Conviction calibration", _reliability_fig(evals)))
    body = "".join(f"<section><h2>{h}</h2>{content}</section>" for h, content in sections)
    page = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style><script>window.PlotlyConfig = {{MathJaxConfig: 'local'}};</script>"
        f"<script>{get_plotlyjs()}</script></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="note">{start} to {end} · strategies: '
        f"{html.escape(', '.join(runs))}</p>{body}</body></html>"
    )
    return write_atomic(out, page)
