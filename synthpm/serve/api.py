"""The versioned JSON API (`/v1/...`, OpenAPI at `/docs`) and the app that also serves the
dashboard (`serve.dashboard`).

Rules every route keeps:
- **Auth.** Every `/v1` route but `/v1/health` wants `Authorization: Bearer <token>` (the
  dashboard's pages accept the same token from its login cookie); none or a wrong one is a
  401 before anything is read.
- **Bad input is a 4xx naming the problem**, never a 500 or a traceback: a schema violation
  422 (pydantic's message names the field), an unknown ticker or a date or run the store does
  not hold 404, a request that conflicts with the journal or the model's dates 409, other
  bad values 400, a body over `max_body_kb` 413, a full decoder queue 503.
- **Nothing is journaled on a rejected request**: `decide` validates everything before its
  one store transaction.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from datetime import date as Date
from datetime import datetime
from typing import Annotated, Literal

import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from synthpm.context import Context, PortfolioState
from synthpm.data.errors import ConfigError, SynthpmError, UnknownTickerError
from synthpm.data.validate import TICKER
from synthpm.serve.batcher import Busy
from synthpm.serve.dashboard import COOKIE, mount_dashboard
from synthpm.serve.service import NotFound, Service
from synthpm.signals import Signal

log = logging.getLogger("synthpm.serve")
Ticker = Annotated[str, StringConstraints(pattern=f"^{TICKER}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@\-]{1,64}$")]
Mode = Literal["signal", "full"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pair(_In):
    ticker: Ticker
    date: Date


class SignalsRequest(_In):
    """Either `contexts` (whole contexts, as `Context`) or `items` ((ticker, date) pairs the
    store resolves to the contexts it knows at that date's close)."""

    contexts: list[Context] | None = None
    items: list[Pair] | None = None
    mode: Mode = "signal"

    @model_validator(mode="after")
    def _one(self) -> SignalsRequest:
        if (self.contexts is None) == (self.items is None):
            raise ValueError("give exactly one of 'contexts' and 'items'")
        return self


class Scored(BaseModel):
    ticker: str
    date: Date
    signal: Signal


class SignalsResponse(BaseModel):
    model: str
    mode: Mode
    signals: list[Scored]


class Holding(_In):
    ticker: Ticker
    shares: float = Field(gt=0)
    cost_basis: float = Field(gt=0, description="per share, entry costs included")
    entry_date: Date


class BookIn(_In):
    cash: float = Field(ge=0)
    positions: list[Holding] = Field(default_factory=list)


class DecideRequest(_In):
    """Decide on `date` in `account`: its book is its journal replayed, or `book` when
    given (a real book; the rows are journaled under `account`)."""

    date: Date
    account: Name = "service"
    book: BookIn | None = None
    mode: Mode = "full"
    dry_run: bool = False
    allow_in_sample: bool = False


class Decision(BaseModel):
    id: str
    ticker: str
    trigger: str
    signal: Signal
    status: str
    size: float
    reason: str


class OrderOut(BaseModel):
    ticker: str
    shares: float
    value: float
    reason: str
    hold_days: int


class DecideResponse(BaseModel):
    date: Date
    account: str
    source: str
    decisions: list[Decision]
    orders: list[OrderOut]
    journaled: int


class JournalEntry(BaseModel):
    id: str
    created_at: datetime
    source: str
    account: str
    ticker: str
    date: Date
    trigger: str | None
    signal: Signal
    status: str | None
    size: float | None
    reason: str | None
    excess_5d: float | None
    excess_21d: float | None
    excess_63d: float | None
    pnl: float | None
    notes: str | None


class JournalPage(BaseModel):
    total: int
    offset: int
    limit: int
    entries: list[JournalEntry]


class RunSummary(BaseModel):
    id: str
    kind: Literal["run", "compare"]
    modified: datetime


class RunDetail(BaseModel):
    id: str
    kind: Literal["run", "compare"]
    metrics: dict | None = None
    equity: list[dict] | None = None  # date, equity, benchmark, drawdown
    trades: list[dict] | None = None
    comparison: list[dict] | None = None  # one row per strategy
    runs: list[str] | None = None  # a compare folder's run ids


class Book(BaseModel):
    account: str
    date: Date
    portfolio: PortfolioState


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    prices_from: Date
    prices_to: Date
    uptime_seconds: float
    batches: int
    prompts_decoded: int
    decoding_seconds: float


def entries(rows: pd.DataFrame) -> list[JournalEntry]:
    frame = rows.astype(object).where(rows.notna(), None)
    out = []
    for row in frame.to_dict("records"):
        row["signal"] = Signal.model_validate_json(row["signal"])
        out.append(JournalEntry.model_validate(row))
    return out


BEARER = HTTPBearer(auto_error=False)


def authorised(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> None:
    """The route's guard: the bearer token, or the dashboard's cookie, must be valid."""
    token = credentials.credentials if credentials else request.cookies.get(COOKIE)
    if not request.app.state.service.tokens.valid(token):
        raise HTTPException(
            401,
            "a valid bearer token is required (Authorization: Bearer <token>; "
            "`synthpm serve token create` makes one)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def create_app(service: Service) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        service.close()

    app = FastAPI(
        title="synthpm",
        version="1",
        summary="A synthetic portfolio manager: the language model's signals, decisions "
        "under hard limits, the journal and the runs.",
        lifespan=lifespan,
        docs_url=None,  # served by the dashboard's module, from local files
        redoc_url=None,
    )
    app.state.service = service
    _errors(app)
    _body_limit(app, service.config.max_body_kb * 1024)
    auth = [Depends(authorised)]

    @app.get("/v1/health", response_model=Health, tags=["service"])
    def health() -> Health:
        first, last, _ = service.prices_state()
        return Health(
            status="ok",
            model=service.source,
            prices_from=pd.Timestamp(first).date(),
            prices_to=pd.Timestamp(last).date(),
            uptime_seconds=round(datetime.now().timestamp() - service.started, 3),
            batches=service.batcher.stats.batches,
            prompts_decoded=service.batcher.stats.prompts,
            decoding_seconds=round(service.batcher.stats.seconds, 3),
        )

    @app.post("/v1/signals", response_model=SignalsResponse, dependencies=auth, tags=["model"])
    async def signals(body: SignalsRequest) -> SignalsResponse:
        """Signals for a batch of contexts or of (ticker, date) pairs; `mode=full` adds the
        reasoning, risks, catalysts and exit triggers."""
        given = body.contexts if body.contexts is not None else body.items or []
        _check_batch(len(given), service.config.max_items)
        if body.items is not None:
            pairs = [(p.ticker, p.date) for p in body.items]
            prompts = await run_in_threadpool(service.prompts, pairs)
        else:
            contexts = body.contexts or []
            pairs = [(c.ticker, c.date) for c in contexts]
            prompts = await run_in_threadpool(
                lambda: [service.agent.prompt_ids(c) for c in contexts]
            )
        found = await asyncio.wrap_future(service.batcher.submit(prompts, body.mode))
        scored = [
            Scored(ticker=ticker, date=date, signal=signal)
            for (ticker, date), signal in zip(pairs, found, strict=True)
        ]
        return SignalsResponse(model=service.source, mode=body.mode, signals=scored)

    @app.post("/v1/decide", response_model=DecideResponse, dependencies=auth, tags=["model"])
    def decide(body: DecideRequest) -> DecideResponse:
        """The portfolio manager's orders for the next bar, every decision journaled (none
        on `dry_run`)."""
        book = body.book.model_dump(mode="json") if body.book is not None else None
        done = service.decide(
            body.date, account=body.account, book=book, mode=body.mode, dry_run=body.dry_run,
            allow_in_sample=body.allow_in_sample,
        )  # fmt: skip
        decisions = [
            Decision.model_validate({**r, "signal": Signal.model_validate_json(r["signal"])})
            for r in done["rows"]
        ]
        orders = [OrderOut.model_validate(o) for o in done["orders"].to_dict("records")]
        return DecideResponse(
            date=body.date, account=body.account, source=service.source, decisions=decisions,
            orders=orders, journaled=done["journaled"],
        )  # fmt: skip

    @app.get("/v1/journal", response_model=JournalPage, dependencies=auth, tags=["journal"])
    def journal(
        source: str | None = None,
        account: str | None = None,
        ticker: Annotated[str | None, Query(pattern=f"^{TICKER}$")] = None,
        decision: Literal["BUY", "SELL", "SKIP"] | None = None,
        status: str | None = None,
        start: Date | None = None,
        end: Date | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> JournalPage:
        """Journal entries matching every filter, newest first, a page at a time."""
        filters = {"source": source, "account": account, "ticker": ticker,
                   "decision": decision, "status": status, "start": start, "end": end}  # fmt: skip
        total, rows = service.journal(filters, limit, offset)
        return JournalPage(total=total, offset=offset, limit=limit, entries=entries(rows))

    @app.get("/v1/runs", response_model=list[RunSummary], dependencies=auth, tags=["runs"])
    def runs() -> list[RunSummary]:
        """Backtest runs and compare folders under the server's runs folder, newest first."""
        return [
            RunSummary(id=r["id"], kind=r["kind"], modified=datetime.fromtimestamp(r["modified"]))
            for r in service.runs()
        ]

    @app.get("/v1/runs/{run_id:path}", response_model=RunDetail, dependencies=auth, tags=["runs"])
    def run(run_id: str) -> RunDetail:
        """A run's metrics, equity against the benchmark with drawdowns, and trades; or a
        compare folder's table and its runs."""
        return RunDetail.model_validate(service.run(run_id))

    @app.get("/v1/book/{account}", response_model=Book, dependencies=auth, tags=["journal"])
    def book(account: str) -> Book:
        """A paper account's book at its last decision date: its journal replayed."""
        day, state = service.book(account)
        return Book(account=account, date=day.date(), portfolio=state)

    mount_dashboard(app, service)
    return app


def _check_batch(n: int, most: int) -> None:
    if n == 0:
        raise HTTPException(422, "the batch is empty")
    if n > most:
        raise HTTPException(413, f"the batch has {n} entries; the server takes {most} at most")


def _errors(app: FastAPI) -> None:
    """Map synthpm's errors to the statuses of the module docstring."""

    def reply(status: int):
        async def handler(_: Request, exc: Exception) -> JSONResponse:
            return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=status)

        return handler

    app.add_exception_handler(UnknownTickerError, reply(404))
    app.add_exception_handler(NotFound, reply(404))
    app.add_exception_handler(ConfigError, reply(409))
    app.add_exception_handler(SynthpmError, reply(400))
    app.add_exception_handler(Busy, reply(503))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": "internal error: see the server's log"}, status_code=500)


def _body_limit(app: FastAPI, limit: int) -> None:
    """Refuse a body over `limit` bytes (413) before it is parsed: by its declared length,
    or, sent in chunks, as soon as the received bytes pass the limit."""

    @app.middleware("http")
    async def limited(request: Request, call_next):
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return _too_large(limit)
        if declared is None and request.method in ("POST", "PUT", "PATCH"):
            size = 0
            chunks = []
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return _too_large(limit)
                chunks.append(chunk)
            request._body = b"".join(chunks)  # starlette reads a consumed body from here
        return await call_next(request)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"detail": f"the request body is over the server's limit of {limit // 1024} KiB"},
        status_code=413,
    )
