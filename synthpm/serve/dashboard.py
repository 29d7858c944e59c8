"""The dashboard at `/`: the page a portfolio manager opens every morning.

Server-rendered HTML (plotly for the charts) from the same `Service` calls the `/v1` routes
answer with, so the page and the API never disagree. It works offline: plotly.js is served
from the installed plotly package (`/static/plotly.min.js`), never from a CDN, and so are
the scripts of the API's console at `/docs` (swagger-ui-bundle). The page
wants the same bearer token as the API, given once at `/login` and kept in an HttpOnly
cookie. Every text from the journal or the model is HTML-escaped.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from urllib.parse import parse_qs, urlencode

import pandas as pd
import plotly
import plotly.graph_objects as go
import plotly.io as pio
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from plotly.subplots import make_subplots
from swagger_ui_bundle import swagger_ui_path

from synthpm.data.errors import SynthpmError
from synthpm.serve.service import Service

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
COOKIE = "synthpm_token"  # the dashboard's login; the API's guard reads it too
SHOWN = 50  # decisions on the page
STATUSES = ["executed", "resized", "rejected", "skipped", "human"]
# the comparison's columns on the page, and their formats (every metric is in /v1/runs/{id})
COMPARED = {"total_return": "+.1%", "cagr": "+.1%", "sharpe": ".2f", "sharpe_ci_low": ".2f",
            "sharpe_ci_high": ".2f", "max_drawdown": ".1%", "exposure": ".0%", "turnover": ".1f",
            "trade_count": ",.0f", "benchmark_total_return": "+.1%"}  # fmt: skip

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222;max-width:1200px}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;width:100%}
th,td{border-bottom:1px solid #eee;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f6f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.BUY{color:#0a7a2f;font-weight:600}.SELL{color:#b3261e;font-weight:600}.SKIP{color:#888}
form.filters{margin:.5rem 0}form.filters *{margin-right:.4rem}.note{color:#666}
td.reasoning{max-width:520px}
"""


def mount_dashboard(app: FastAPI, service: Service) -> None:
    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="application/javascript")

    # the API's console (OpenAPI), its scripts served from the swagger-ui-bundle package
    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_path), name="swagger")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="synthpm API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )

    @app.get("/login", include_in_schema=False)
    def login_form(failed: int = 0) -> HTMLResponse:
        note = "<p class=note>That token is not valid.</p>" if failed else ""
        body = (
            "<h1>synthpm</h1><form method=post action=/login>"
            "<label>API token <input id=token name=token type=password size=50></label> "
            f"<button id=enter type=submit>Open the dashboard</button></form>{note}"
        )
        return HTMLResponse(_page("synthpm: sign in", body), status_code=401 if failed else 200)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode(errors="replace"))
        token = (form.get("token") or [""])[0].strip()
        if not service.tokens.valid(token):
            return RedirectResponse("/login?failed=1", status_code=303)
        reply = RedirectResponse("/", status_code=303)
        reply.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return reply

    @app.get("/", include_in_schema=False)
    def dashboard(
        request: Request,
        ticker: str = "",
        decision: str = "",
        status: str = "",
        account: str = "",
        run: str = "",
        compare: str = "",
    ) -> Response:
        if not service.tokens.valid(request.cookies.get(COOKIE)):
            return RedirectResponse("/login", status_code=303)
        chosen = {"ticker": ticker.strip().upper(), "decision": decision, "status": status,
                  "account": account, "run": run, "compare": compare}  # fmt: skip
        sections = [
            _decisions(service, chosen),
            _book(service, chosen),
            _run(service, chosen),
            _comparison(service, chosen),
            _calibration(service),
        ]
        head = (
            f"<h1>synthpm</h1><p class=note>model {html.escape(service.source)} · store "
            f"{html.escape(str(service.store.path))} · API at <a href=/docs>/docs</a></p>"
        )
        return HTMLResponse(_page("synthpm", head + "".join(sections)))


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title>"
        "<link rel=icon href='data:,'>"  # no favicon request to fail
        f"<style>{STYLE}</style><script src=/static/plotly.min.js></script></head>"
        f"<body>{body}</body></html>"
    )


def _table(frame: pd.DataFrame, table_id: str, numbers: dict[str, str] | None = None) -> str:
    """An escaped HTML table; `numbers` formats columns (and right-aligns them)."""
    numbers = numbers or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for record in frame.itertuples(index=False):
        cells = []
        for column, value in zip(frame.columns, record, strict=True):
            if column in numbers and isinstance(value, int | float) and value == value:
                cells.append(f"<td class=num>{format(value, numbers[column])}</td>")
            elif column == "decision":
                cells.append(f"<td class={html.escape(str(value))}>{html.escape(str(value))}</td>")
            else:
                text = "" if value is None or value != value else str(value)
                kind = " class=reasoning" if column == "reasoning" else ""
                cells.append(f"<td{kind}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    body = "".join(rows)
    return f"<table id={table_id}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _select(name: str, options: list[str], chosen: str, blank: str) -> str:
    items = [f"<option value=''>{blank}</option>"] + [
        f"<option{' selected' if o == chosen else ''}>{html.escape(o)}</option>" for o in options
    ]
    return f"<select name={name}>{''.join(items)}</select>"


def _hidden(chosen: dict, skip: tuple[str, ...]) -> str:
    return "".join(
        f"<input type=hidden name={k} value='{html.escape(v, quote=True)}'>"
        for k, v in chosen.items()
        if v and k not in skip
    )


def _chooser(name: str, options: list[str], chosen: dict, blank: str) -> tuple[str, str]:
    """The option chosen (the first by default) and its form, keeping the page's other
    choices."""
    value = chosen[name] or (options[0] if options else "")
    form = (
        "<form class=filters method=get>"
        + _select(name, options, value, blank)
        + _hidden(chosen, (name,))
        + "<button type=submit>Show</button></form>"
    )
    return value, form


def _decisions(service: Service, chosen: dict) -> str:
    filters = {k: chosen[k] or None for k in ("ticker", "decision", "status")}
    try:
        total, rows = service.journal(filters, SHOWN, 0)
    except SynthpmError as exc:
        return f"<h2>Latest decisions</h2><p class=note>{html.escape(str(exc))}</p>"
    form = (
        "<form class=filters method=get>"
        f"<input name=ticker placeholder=ticker value='{html.escape(chosen['ticker'], True)}'>"
        + _select("decision", ["BUY", "SELL", "SKIP"], chosen["decision"], "any decision")
        + _select("status", STATUSES, chosen["status"], "any status")
        + _hidden(chosen, ("ticker", "decision", "status"))
        + "<button type=submit>Filter</button></form>"
    )
    if rows.empty:
        return f"<h2>Latest decisions</h2>{form}<p class=note>No journal entries match.</p>"
    signal = rows["signal"].map(json.loads)
    shown = pd.DataFrame(
        {
            "date": rows["date"].dt.strftime("%Y-%m-%d"),
            "ticker": rows["ticker"],
            "decision": rows["decision"],
            "conviction": signal.map(lambda s: s["conviction"]),
            "hold days": signal.map(lambda s: s["hold_duration_days"]),
            "status": rows["status"],
            "size": rows["size"],
            "reason": rows["reason"],
            "account": rows["account"],
            "reasoning": signal.map(lambda s: s["reasoning"]),
        }
    )
    note = f"<p class=note>{len(rows)} of {total} entries, newest first.</p>"
    numbers = {"conviction": ".2f", "size": ",.0f"}
    return f"<h2>Latest decisions</h2>{form}{note}" + _table(shown, "decisions", numbers)


def _book(service: Service, chosen: dict) -> str:
    account, form = _chooser("account", service.accounts(), chosen, "choose an account")
    if not account:
        return f"<h2>Book</h2><p class=note>No paper account has decided yet.</p>{form}"
    try:
        day, state = service.book(account)
    except SynthpmError as exc:
        return f"<h2>Book</h2>{form}<p class=note>{html.escape(str(exc))}</p>"
    positions = pd.DataFrame(
        [(p.ticker, p.sector, p.weight, p.unrealised_return, p.days_held) for p in state.positions],
        columns=["ticker", "sector", "weight", "unrealised return", "days held"],
    )
    summary = (
        f"<p>{html.escape(account)} at the close of {day.date()}: equity "
        f"{state.equity:,.0f}, cash {state.cash:,.0f} ({state.cash / state.equity:.0%}), "
        f"{len(positions)} positions.</p>"
    )
    table = _table(positions, "book", {"weight": ".1%", "unrealised return": "+.1%"})
    return f"<h2>Book</h2>{form}{summary}{table}"


def _chosen_run(service: Service, chosen: dict, kind: str, title: str):
    """A section's chosen run or compare folder (`kind`): (its id, `Service.run`'s answer,
    the heading and form), or (None, None, the whole section) when there is none or it
    cannot be read."""
    ids = [r["id"] for r in service.runs() if r["kind"] == kind]
    value, form = _chooser(kind, ids, chosen, f"choose a {kind}")
    head = f"<h2>{title}</h2>{form}"
    if not value:
        where = html.escape(str(service.config.runs))
        return None, None, f"<h2>{title}</h2><p class=note>No {kind} folders under {where}.</p>"
    try:
        return value, service.run(value), head
    except SynthpmError as exc:
        return None, None, f"{head}<p class=note>{html.escape(str(exc))}</p>"


def _run(service: Service, chosen: dict) -> str:
    run_id, found, head = _chosen_run(service, chosen, "run", "Equity against the benchmark")
    if found is None:
        return head
    curve = pd.DataFrame(found["equity"])
    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.7, 0.3],
                           vertical_spacing=0.04)  # fmt: skip
    figure.add_trace(go.Scatter(x=curve["date"], y=curve["equity"], name=run_id), 1, 1)
    benchmark = curve["benchmark"] * curve["equity"].iloc[0] / curve["benchmark"].iloc[0]
    figure.add_trace(go.Scatter(x=curve["date"], y=benchmark, name="benchmark"), 1, 1)
    figure.add_trace(
        go.Scatter(x=curve["date"], y=curve["drawdown"], name="drawdown", fill="tozeroy"), 2, 1
    )
    figure.update_layout(height=460, margin={"l": 50, "r": 20, "t": 20, "b": 30})
    figure.update_yaxes(tickformat=".0%", row=2, col=1)
    chart = pio.to_html(figure, include_plotlyjs=False, full_html=False, div_id="equity")
    metrics = found["metrics"].get("metrics", {})
    keys = ("total_return", "cagr", "sharpe", "max_drawdown", "trade_count")
    line = ", ".join(f"{k} {_fmt(metrics.get(k))}" for k in keys if k in metrics)
    return f"{head}<p>{html.escape(line)}</p>{chart}"


def _comparison(service: Service, chosen: dict) -> str:
    folder, found, head = _chosen_run(service, chosen, "compare", "Comparison")
    if found is None:
        return head
    table = pd.DataFrame(found["comparison"])
    shown = table[[c for c in ("strategy", *COMPARED) if c in table]]
    links = " ".join(
        f"<a href='/?{urlencode({**chosen, 'run': f'{folder}/{s}'})}'>{html.escape(s)}</a>"
        for s in table["strategy"]
    )
    return f"{head}{_table(shown, 'comparison', COMPARED)}<p class=note>equity of: {links}</p>"


def _calibration(service: Service) -> str:
    table = service.calibration()
    if table.empty:
        return "<h2>Calibration</h2><p class=note>No entries with a 21-day outcome yet.</p>"
    table["bucket"] = table["bucket"].astype(str)
    numbers = {"mean_conviction": ".3f", "win_rate": ".3f", "mean_excess_21d": "+.4f"}
    return (
        "<h2>Calibration of the journal's convictions</h2><p class=note>Per source and "
        "conviction bucket, over entries whose 21-day outcome is known (`journal update`): "
        "the share that beat the benchmark against the mean conviction.</p>"
        + _table(table, "calibration", numbers)
    )


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
