"""Import benchmark on real data from ../shared/data (not a test: it prints figures).

    python benchmarks/import_bench.py [--shared ../shared/data]

Times each phase of importing the 494-stock OHLCV panel (1.49M rows), the EDGAR submissions
folder, the Form 4 file and the embedded default data into a fresh store, and the as-of
reads that later stages use. Goal from the foundation issue: the panel in under 20 s on
2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from synthpm.data.embedded import embedded_batch
from synthpm.data.importers import read_source
from synthpm.data.store import Store


def timed(label: str, fn, results: dict):
    started = time.perf_counter()
    value = fn()
    results[label] = round(time.perf_counter() - started, 3)
    print(f"{label:<44} {results[label]:>8.2f} s", flush=True)
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    panel = args.shared / "us_equities_ohlcv_2005_2017.parquet"
    if not panel.exists():
        print(
            f"skipped: {panel} not found (real data lives in ../shared/data beside the repo; "
            "a fresh clone has none)"
        )
        return 0

    print(f"cores: {os.cpu_count()}  python: {sys.version.split()[0]}")
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.duckdb")
        timed("embedded default (read + write)", lambda: store.write(embedded_batch()), results)
        started = time.perf_counter()
        batch = timed(
            "panel 494 stocks: read + validate", lambda: read_source("parquet", panel), results
        )
        report = timed(
            "panel 494 stocks: write (one transaction)", lambda: store.write(batch), results
        )
        results["panel 494 stocks: total"] = round(time.perf_counter() - started, 3)
        rows = report.rows["prices"]
        print(
            f"{'panel 494 stocks: total':<44} {results['panel 494 stocks: total']:>8.2f} s"
            f"   ({rows:,} rows, {report.tickers['prices']} tickers, "
            f"{rows / results['panel 494 stocks: total']:,.0f} rows/s)"
        )
        edgar = timed(
            "EDGAR submissions folder: read + write",
            lambda: store.write(
                read_source("edgar", args.shared / "edgar_submissions", store=store)
            ),
            results,
        )
        print(
            f"    8-K filings with items: {edgar.notes['8k_filings_with_items']:,}; "
            f"events: {edgar.rows['events']:,}"
        )
        timed(
            "Form 4 transactions: read + write",
            lambda: store.write(
                read_source("form4", args.shared / "form4_transactions_2022_2026.parquet")
            ),
            results,
        )
        timed("read: all prices (1.6M rows)", store.prices, results)
        timed("read: closes, 50 tickers, wide", lambda: store.closes(store.tickers()[:50]), results)
        timed("read: events as of 2016-06-30", lambda: store.events(as_of="2016-06-30"), results)
        size = store.path.stat().st_size / 1e6
        print(f"store size: {size:.1f} MB")
        results["store_mb"] = round(size, 1)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
