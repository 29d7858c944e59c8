"""Live downloads, only when the user asks: prices from Yahoo (yfinance), EDGAR submissions.

Nothing else in synthpm touches the network. Both downloaders take their transport as an
argument (`download=`, `get=`), so tests drive them with recorded responses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd

from synthpm.data.errors import DataError, SynthpmError
from synthpm.data.importers.tabular import with_provenance
from synthpm.data.store import ImportBatch
from synthpm.data.validate import validate_prices
from synthpm.progress import track

EDGAR_SUBMISSIONS = "https://data.sec.gov/submissions/{name}"
EDGAR_MAX_RATE = 10.0  # requests per second: the SEC's fair-access limit


def yahoo_prices(
    tickers: Sequence[str],
    start: str | None = None,
    end: str | None = None,
    *,
    download: Callable[..., pd.DataFrame] | None = None,
) -> ImportBatch:
    """Split- and dividend-adjusted daily bars from Yahoo Finance via yfinance."""
    if download is None:
        try:
            import yfinance
        except ImportError as exc:
            raise SynthpmError("live prices need yfinance: pip install 'synthpm[live]'") from exc
        download = yfinance.download
    tickers = [t.strip().upper() for t in tickers]
    raw = download(
        tickers,
        start=start,
        end=end,
        auto_adjust=True,
        group_by="column",
        progress=False,
        threads=False,
    )
    if raw is None or raw.empty:
        raise DataError(f"Yahoo returned no prices for {', '.join(tickers)}", source="yahoo")
    long = _yahoo_long(raw, tickers)
    missing = sorted(set(tickers) - set(long["ticker"]))
    prices, warnings = validate_prices(with_provenance(long, "yahoo"))
    if missing:
        warnings.append(f"Yahoo returned no rows for {', '.join(missing)}")
    return ImportBatch("yahoo", f"yahoo:{','.join(tickers)}", {"prices": prices}, warnings)


def _yahoo_long(raw: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
    """yfinance's frame (columns (field, ticker), or plain fields for one ticker) made long."""
    if isinstance(raw.columns, pd.MultiIndex):
        field_level = next(
            i for i in range(raw.columns.nlevels) if "Close" in raw.columns.get_level_values(i)
        )
        ticker_level = 1 - field_level
        long = raw.stack(level=ticker_level, future_stack=True).rename_axis(["date", "ticker"])
        long = long.reset_index()
    else:
        long = raw.rename_axis("date").reset_index().assign(ticker=tickers[0])
    long.columns = [str(c).lower() for c in long.columns]
    long = long.dropna(subset=["close"])
    return long[
        [c for c in ("ticker", "date", "open", "high", "low", "close", "volume") if c in long]
    ]


class RateLimiter:
    """At most `rate` calls per second: each call waits until 1/rate after the previous one."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval, self.clock, self.sleep = 1.0 / rate, clock, sleep
        self._next = float("-inf")

    def wait(self) -> None:
        now = self.clock()
        if now < self._next:
            self.sleep(self._next - now)
            now = self._next
        self._next = now + self.interval


def fetch_edgar(
    ciks: Iterable[str | int],
    out: Path,
    *,
    user_agent: str,
    get: Callable[..., object] | None = None,
    limiter: RateLimiter | None = None,
) -> list[Path]:
    """Download each CIK's submissions JSON, and its older `-submissions-NNN` files, into `out`.

    EDGAR requires a User-Agent naming the requester (e.g. "Jane Doe jane@example.com").
    Returns the files written; import them with `synthpm data import edgar OUT`.
    """
    if "@" not in user_agent or len(user_agent.split()) < 2:
        raise SynthpmError(
            "EDGAR needs a User-Agent with a name and an email, e.g. 'Jane Doe jane@example.com'"
        )
    if get is None:
        import requests

        get = requests.Session().get
    limiter = limiter or RateLimiter(EDGAR_MAX_RATE)
    headers = {"User-Agent": user_agent, "Accept-Encoding": "gzip, deflate"}
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for cik in track([str(int(c)) for c in ciks], "downloading EDGAR submissions"):
        main = f"CIK{int(cik):010d}.json"
        doc = _get_json(get, limiter, main, headers)
        written.append(_save(out / main, doc))
        for older in doc.get("filings", {}).get("files", []):
            written.append(
                _save(out / older["name"], _get_json(get, limiter, older["name"], headers))
            )
    return written


def _get_json(get: Callable[..., object], limiter: RateLimiter, name: str, headers: dict) -> dict:
    limiter.wait()
    url = EDGAR_SUBMISSIONS.format(name=name)
    response = get(url, headers=headers, timeout=30)
    status = getattr(response, "status_code", 200)
    if status != 200:
        raise SynthpmError(f"EDGAR answered {status} for {url}")
    return response.json()


def _save(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path
