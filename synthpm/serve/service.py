"""The service's work, apart from HTTP: the model loaded once behind the micro-batcher, the
store read as of a date (cached), and the queries the API and the dashboard share.

Every answer comes from the code the CLI runs: contexts from `journal.live.as_of`, prompts
from the agent (`render_prompt`), orders from `journal.live.decide` (the account's journal
replayed through the engine, or a given book) and journal rows from `write_decided`, whose
check under the store's writer lock keeps two concurrent decides of one account and date
from both being journaled.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

import pandas as pd
import torch

from synthpm.agent import PortfolioAgent
from synthpm.backtest.engine import BacktestConfig
from synthpm.backtest.run import model_dates
from synthpm.context import Contexts, PortfolioState
from synthpm.data.errors import ConfigError, SynthpmError
from synthpm.data.store import Store
from synthpm.journal import stats
from synthpm.journal.live import Today, account_book, as_of, decide, parse_book, write_decided
from synthpm.journal.records import read_journal
from synthpm.lm.train import weights_hash
from synthpm.serve.batcher import MicroBatcher
from synthpm.serve.config import ServeConfig
from synthpm.serve.tokens import TokenCheck
from synthpm.signals import Signal

SMALL_PASS = 64  # prompts: below this a decoder pass runs on one thread (`Service._decode`)


class NotFound(SynthpmError):
    """A date, run or account the store or the runs folder does not hold."""


class Service:
    """One per server: the store, the agent behind its batcher, the caches."""

    CACHED_DATES = 8  # `Today`s kept: a day's contexts serve every request of that day

    def __init__(self, store: Store, config: ServeConfig, agent: PortfolioAgent | None = None):
        if not store.path.exists():
            raise ConfigError(f"no store at {store.path}: run `synthpm data init` first")
        self.store, self.config = store, config
        self.agent = agent or PortfolioAgent.load(config.model, mode="signal")
        self.source = f"lm:{config.model.name}@{weights_hash(config.model)}"
        self.threads = torch.get_num_threads()
        self.batcher = MicroBatcher(self._decode, config.max_batch, config.max_wait_ms)
        self.tokens = TokenCheck(store)
        # per date: the store as of it, and the prompts rendered from it by ticker
        self._days: OrderedDict[tuple, tuple[Today, dict[str, list[int]]]] = OrderedDict()
        self._lock = threading.Lock()  # one `as_of` at a time: it may fit and save a fold
        self._prices: tuple = ()
        self._prices_at = -math.inf
        self.started = time.time()

    def close(self) -> None:
        self.batcher.close()

    def _decode(self, prompts: list[list[int]], mode: str) -> list[Signal]:
        # A small pass runs on one torch thread: from the batcher's thread, two threads made
        # one full answer 2.2x slower (OpenMP's threads waiting on each other between the
        # many small ops of a step); a large pass's prefill gains from every thread.
        torch.set_num_threads(1 if len(prompts) < SMALL_PASS else self.threads)
        decoder, batch = self.agent.decoder, self.config.max_batch
        return decoder.decode(prompts, mode=mode, batch_size=batch, **self.agent.options)

    # ------------------------------------------------------------------ dates and contexts
    def prices_state(self) -> tuple:
        """(first date, last date, rows) of the stored prices, read at most once a second:
        the cache's key, so newly imported prices are seen without a restart."""
        now = time.monotonic()
        if now - self._prices_at > 1.0:
            row = self.store.query("SELECT min(date), max(date), count(*) FROM prices")
            self._prices = tuple(row.iloc[0])
            self._prices_at = now
        return self._prices

    def today(self, date) -> Today:
        """The store as of `date`'s close (`as_of`), cached by date and the prices' state."""
        return self._day(date)[0]

    def _day(self, date) -> tuple[Today, dict[str, list[int]]]:
        day, prices = pd.Timestamp(date), self.prices_state()
        first, last, _ = prices
        if not (pd.Timestamp(first) <= day <= pd.Timestamp(last)):
            raise NotFound(f"{day.date()} is outside the store's prices ({first} .. {last})")
        key = (day, prices)
        kept = self._days.get(key)  # a kept date never waits for another date's `as_of`
        if kept is not None:
            return kept
        with self._lock:
            if key in self._days:
                self._days.move_to_end(key)
                return self._days[key]
            try:
                found = as_of(self.store, day, self.config.forecasts)
            except SynthpmError as exc:
                if "no prices on" in str(exc):
                    raise NotFound(str(exc)) from exc
                raise
            self._days[key] = (found, {})
            while len(self._days) > self.CACHED_DATES:
                self._days.popitem(last=False)
            return self._days[key]

    def prompts(self, items: Sequence[tuple[str, object]]) -> list[list[int]]:
        """The prompt of each (ticker, date), in order: rendered once per date and ticker
        (with no book, under the model's limits), then kept with the date's contexts."""
        out: list[list[int]] = [[] for _ in items]
        for where, day in _dates(items):
            today, kept = self._day(day)
            missing = sorted({items[i][0] for i in where} - set(kept))
            for context in today.contexts_for(missing) if missing else []:
                kept[context.ticker] = self.agent.prompt_ids(context)
            for i in where:
                out[i] = kept[items[i][0]]
        return out

    # ------------------------------------------------------------------ the model
    def decide(
        self,
        date,
        *,
        account: str,
        book: dict | None,
        mode: str = "full",
        dry_run: bool = False,
        allow_in_sample: bool = False,
    ) -> dict:
        """`synthpm decide` for one date: the decisions, the orders for the next bar, and
        how many rows were journaled (none on a dry run or a refused request)."""
        day = pd.Timestamp(date)
        sample = model_dates(self.agent, str(day.date()), allow_in_sample)
        today = self.today(day)
        config = BacktestConfig(limits=self.agent.limits)
        broker = None if book is None else parse_book(book, today.market, config, "book")
        strategy = _Batched(self, mode)
        decided = decide(
            self.store, strategy, today, source=self.source, account=account, config=config,
            book=broker,
        )  # fmt: skip
        if sample and sample["in_sample"]:
            for row in decided.rows:
                row["notes"] = sample["note"]
        written = 0
        if decided.rows and not dry_run:
            written = write_decided(
                self.store, decided, account, self.source, config, book is not None
            )
        return {"rows": decided.rows, "orders": decided.orders, "journaled": written}

    # ------------------------------------------------------------------ reading
    def journal(self, filters: dict, limit: int, offset: int) -> tuple[int, pd.DataFrame]:
        """(total matching, the page): newest first."""
        rows = read_journal(
            self.store,
            source=filters.get("source"),
            account=filters.get("account"),
            tickers=[filters["ticker"]] if filters.get("ticker") else None,
            start=filters.get("start"),
            end=filters.get("end"),
            columns=JOURNAL_VIEW,
        )
        for column in ("decision", "status"):
            if filters.get(column):
                rows = rows[rows[column] == filters[column]]
        rows = rows.sort_values(["date", "created_at"], ascending=False, kind="stable")
        return len(rows), rows.iloc[offset : offset + limit]

    def calibration(self) -> pd.DataFrame:
        rows = read_journal(self.store, columns=["source", "conviction", "excess_21d"])
        if rows.empty:
            return pd.DataFrame()
        return stats.reliability(rows).reset_index()

    def accounts(self) -> list[str]:
        if not self.store.has_table("accounts"):
            return []
        return self.store.query("SELECT name FROM accounts ORDER BY name")["name"].tolist()

    def book(self, account: str) -> tuple[pd.Timestamp, PortfolioState]:
        found = account_book(self.store, account)
        if found is None:
            raise NotFound(f"no paper account {account!r} with decisions in {self.store.path}")
        return found

    def runs(self) -> list[dict]:
        """Run folders (`metrics.json`) and compare folders (`comparison.csv`) under the runs
        folder, two levels down at most, newest first."""
        root = self.config.runs
        found = []
        for pattern, kind in (("metrics.json", "run"), ("comparison.csv", "compare")):
            for mark in [*root.glob(f"*/{pattern}"), *root.glob(f"*/*/{pattern}")]:
                folder = mark.parent
                found.append(
                    {"id": folder.relative_to(root).as_posix(), "kind": kind,
                     "modified": mark.stat().st_mtime}
                )  # fmt: skip
        return sorted(found, key=lambda r: (-r["modified"], r["id"]))

    def run(self, run_id: str) -> dict:
        """A run's metrics, equity (with the benchmark and drawdown) and trades, or a
        compare folder's table and runs; only ids that `runs` lists (no path escapes)."""
        known = {r["id"]: r["kind"] for r in self.runs()}
        if run_id not in known:
            raise NotFound(f"no run {run_id!r} under {self.config.runs}")
        folder = self.config.runs / run_id
        if known[run_id] == "compare":
            table = pd.read_csv(folder / "comparison.csv", index_col=0).T
            for column in table:  # a strategy per row: its metrics' numbers as numbers again
                numbers = pd.to_numeric(table[column], errors="coerce")
                if numbers.notna().sum() == table[column].notna().sum():
                    table[column] = numbers
            members = sorted(p.parent.name for p in folder.glob("*/metrics.json"))
            return {"id": run_id, "kind": "compare",
                    "comparison": _records(table.reset_index(names="strategy")),
                    "runs": [f"{run_id}/{m}" for m in members]}  # fmt: skip
        metrics = json.loads((folder / "metrics.json").read_text())
        equity = pd.read_csv(folder / "equity.csv", parse_dates=["date"])
        curve = equity[["date", "equity", "benchmark"]].copy()
        curve["drawdown"] = curve["equity"] / curve["equity"].cummax() - 1.0
        curve["date"] = curve["date"].dt.strftime("%Y-%m-%d")
        trades = pd.read_csv(folder / "trades.csv")
        return {"id": run_id, "kind": "run", "metrics": metrics, "equity": _records(curve),
                "trades": _records(trades)}  # fmt: skip


def _dates(items: Sequence[tuple[str, object]]) -> list[tuple[list[int], pd.Timestamp]]:
    """The items' positions grouped by date."""
    by_date: dict[pd.Timestamp, list[int]] = {}
    for i, (_, date) in enumerate(items):
        by_date.setdefault(pd.Timestamp(date), []).append(i)
    return [(where, day) for day, where in by_date.items()]


JOURNAL_VIEW = ["id", "created_at", "source", "account", "ticker", "date", "trigger", "signal",
                "decision", "status", "size", "reason", "excess_5d", "excess_21d", "excess_63d",
                "pnl", "notes"]  # fmt: skip


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts (NaN as null)."""
    return json.loads(frame.to_json(orient="records", date_format="iso"))


class _Batched:
    """The agent as the engine's `SignalSource`, its decoding through the batcher."""

    name = "lm"

    def __init__(self, service: Service, mode: str):
        self.service, self.mode = service, mode

    def signals(self, contexts: Contexts) -> list[Signal]:
        agent = self.service.agent
        prompts = [agent.prompt_ids(c, contexts.limits) for c in contexts]
        return self.service.batcher.submit(prompts, self.mode).result()
