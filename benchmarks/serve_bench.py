"""The decision service under a bounded load on loopback (not a test: it prints figures).

    python benchmarks/serve_bench.py                    # 1, 8 and 32 clients, 20 s each
    python benchmarks/serve_bench.py --seconds 5 --clients 1,8

Starts `synthpm serve` as a subprocess on 127.0.0.1 (a free port), drives it with asyncio
clients (httpx), each sending its next request as soon as its last one is answered, and
stops it. Every figure is over HTTP: the client's wall time from sending a request to
reading its whole answer. The server and the clients share this machine's cores.

1. **One full decision**: `POST /v1/signals` with one (ticker, date) and `mode=full` (the
   whole answer, reasoning included), against the demo's model and store (`make demo`).
2. **Signal-only batches of 64**: 64 (ticker, date) pairs per request, `mode=signal`.
3. **`/v1/decide` for ~500 names**: the point-in-time S&P 500 store of
   `benchmarks/decision_quality.py` on 2019-12-27 (456 names decided), every request a
   new paper account, journaled; then the journal is checked (each account holds exactly
   the decisions its answer listed, ids unique). Reads ../shared/data; left out, saying so,
   where it is missing.

Each server runs on a copy of its store (the bench's tokens and journal rows never reach
the original). Writes `benchmarks/results/serve_bench.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from synthpm.data.store import Store
from synthpm.journal.records import read_journal
from synthpm.serve.tokens import create_token

RESULTS = Path(__file__).parent / "results" / "serve_bench.json"
BIN = Path(sys.executable).parent
DECIDE_DAY = "2019-12-27"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(store: Path, model: Path, forecasts: Path, runs: Path, log: Path):
    """`synthpm serve` on a free loopback port; yields (url, token)."""
    token = create_token(Store(store), f"bench-{os.getpid()}-{time.time_ns()}")
    port = free_port()
    command = [str(BIN / "synthpm"), "serve", "--store", str(store), "--model", str(model),
               "--forecasts", str(forecasts), "--runs", str(runs), "--port", str(port)]  # fmt: skip
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(600):
            try:
                if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                raise RuntimeError(f"the server exited: see {log}")
            time.sleep(0.2)
        yield url, token
    finally:
        process.terminate()
        process.wait(30)


async def drive(url: str, token: str, path: str, bodies, clients: int, seconds: float,
                count: int | None = None) -> dict:  # fmt: skip
    """`clients` concurrent clients posting `bodies` (a function of the request number) to
    `path` for `seconds` (or `count` requests in all); latency percentiles and rates."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    answers: list[dict] = []
    sent = 0
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal sent
        while time.perf_counter() < deadline and (count is None or sent < count):
            number = sent
            sent += 1
            started = time.perf_counter()
            try:
                reply = await http.post(path, json=bodies(number), headers=headers)
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
                continue
            latencies.append(time.perf_counter() - started)
            if reply.status_code != 200:
                errors.append(f"{reply.status_code}: {reply.text[:200]}")
            else:
                answers.append(reply.json())

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - began
    ms = np.array(latencies) * 1e3
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "first_errors": errors[:3],
        "seconds": round(wall, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p95_ms": round(float(np.percentile(ms, 95)), 1) if len(ms) else None,
        "requests_per_s": round(len(latencies) / wall, 2),
        "answers": answers,
    }


def report(name: str, found: dict, per_request: int = 1) -> dict:
    rate = found["requests_per_s"] * per_request
    found = {k: v for k, v in found.items() if k != "answers"}
    if per_request > 1:
        found["signals_per_s"] = round(rate, 1)
    print(f"  {name:28s} {found['clients']:3d} clients: p50 {found['p50_ms']} ms, p95 "
          f"{found['p95_ms']} ms, {found['requests_per_s']} req/s"
          + (f", {rate:,.0f} signals/s" if per_request > 1 else "")
          + f", {found['errors']} errors")  # fmt: skip
    return found


def model_benchmarks(args, work: Path) -> dict:
    demo = args.demo
    store = work / "demo_store.duckdb"
    shutil.copyfile(demo / "store.duckdb", store)
    with server(store, demo / "lm", demo / "forecast", demo, work / "demo_server.log") as (
        url,
        token,
    ):
        tickers = Store(store).tickers()
        import httpx

        fridays = ["2022-12-16", "2022-12-09", "2022-12-02", "2022-11-25"]
        pairs = [{"ticker": t, "date": d} for d in fridays for t in tickers][:64]
        warm = httpx.post(url + "/v1/signals", json={"items": pairs, "mode": "signal"},
                          headers={"Authorization": f"Bearer {token}"}, timeout=600)  # fmt: skip
        assert warm.status_code == 200, warm.text

        def one_full(n: int) -> dict:
            return {"items": [{"ticker": tickers[n % len(tickers)], "date": fridays[0]}],
                    "mode": "full"}  # fmt: skip

        def batch(n: int) -> dict:
            return {"items": pairs, "mode": "signal"}

        out: dict = {"full_decision": [], "signal_batch_64": []}
        print("1. one full decision (POST /v1/signals, 1 pair, mode=full)")
        for c in args.clients:
            found = asyncio.run(drive(url, token, "/v1/signals", one_full, c, args.seconds))
            out["full_decision"].append(report("full decision", found))
        print("2. signal-only batches of 64 (POST /v1/signals, 64 pairs, mode=signal)")
        for c in args.clients:
            found = asyncio.run(drive(url, token, "/v1/signals", batch, c, args.seconds))
            out["signal_batch_64"].append(report("batch of 64", found, 64))
        out["health"] = httpx.get(url + "/v1/health").json()
        h = out["health"]
        print(f"  server: {h['prompts_decoded']:,} prompts in {h['batches']:,} decoder passes, "
              f"{h['decoding_seconds']:.1f} s decoding")  # fmt: skip
    return out


def decide_benchmark(args, work: Path) -> dict | None:
    from decide_bench import fit_fold_for
    from decision_quality import PANELS, make_store

    panel = PANELS["pit_2005_2022"]
    if not (args.shared / panel["prices"]).exists():
        print(f"3. /v1/decide: skipped, {args.shared / panel['prices']} not found (real data "
              "lives in ../shared/data beside the repository; a fresh clone has none)")  # fmt: skip
        return None
    import pandas as pd

    home = args.pit_work
    home.mkdir(parents=True, exist_ok=True)
    original = make_store(args.shared, home / "store.duckdb", panel)
    day = pd.Timestamp(DECIDE_DAY)
    run = home / f"forecast_for_{day.year}"
    if not (run / "folds.json").exists():
        fit_fold_for(original, day, run)
    store = work / "pit_store.duckdb"
    shutil.copyfile(original.path, store)
    runs = work / "no_runs"
    runs.mkdir(exist_ok=True)
    out: dict = {"date": DECIDE_DAY, "levels": []}
    with server(store, args.demo / "lm", run, runs, work / "pit_server.log") as (url, token):
        accounts = iter(range(10**6))

        def body(n: int) -> dict:
            return {"date": DECIDE_DAY, "account": f"bench-{next(accounts)}", "mode": "signal"}

        print(f"3. /v1/decide on {DECIDE_DAY}, point-in-time S&P 500, each a new account, "
              "journaled")  # fmt: skip
        t = time.perf_counter()
        first = asyncio.run(drive(url, token, "/v1/decide", body, 1, 10**6, count=1))
        out["first_request_seconds"] = round(time.perf_counter() - t, 2)
        out["names_decided"] = len(first["answers"][0]["decisions"]) if first["answers"] else 0
        print(f"  first request (the store read as of D, its features and forecasts, then "
              f"cached): {out['first_request_seconds']} s, "
              f"{out['names_decided']} names")  # fmt: skip
        answers = list(first["answers"])
        for clients, count in ((1, args.decides), (4, args.decides)):
            found = asyncio.run(drive(url, token, "/v1/decide", body, clients, 10**6, count))
            answers += found["answers"]
            out["levels"].append(report("decide (journaled)", found))
    journal = read_journal(Store(store), columns=["id", "account"])
    consistent = journal["id"].is_unique and all(
        sorted(journal.loc[journal["account"] == a["account"], "id"])
        == sorted(d["id"] for d in a["decisions"])
        for a in answers
    )
    out["journal_rows"] = len(journal)
    out["journal_consistent"] = bool(consistent)
    out["store_mb"] = round(store.stat().st_size / 2**20, 1)
    print(f"  journal: {len(journal):,} rows from {len(answers)} decides, consistent: "
          f"{consistent}; store {out['store_mb']} MB "
          "(each journaled decide rewrites it)")  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="`make demo` output")
    parser.add_argument("--seconds", type=float, default=20.0, help="per load level")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--decides", type=int, default=8, help="journaled decides per level")
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument(
        "--pit-work", type=Path, default=Path("runs/decision_quality/pit_2005_2022")
    )
    parser.add_argument("--work", type=Path, default=Path("runs/serve_bench"))
    parser.add_argument("--skip-decide", action="store_true")
    args = parser.parse_args()
    args.clients = [int(c) for c in args.clients.split(",")]
    if not (args.demo / "lm" / "model.pt").exists():
        print(f"skipped: no model in {args.demo / 'lm'}: run `make demo` first")
        return 0
    work = args.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    print(f"cores: {os.cpu_count()}; server and clients on this machine; {args.seconds:g} s "
          "per level")  # fmt: skip
    document = {"cores": os.cpu_count(), "seconds_per_level": args.seconds}
    document.update(model_benchmarks(args, work))
    if not args.skip_decide:
        document["decide_500"] = decide_benchmark(args, work)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=1, default=str) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
