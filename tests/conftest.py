"""Small fixtures built in code: tests never read ../shared."""

from __future__ import annotations

import atexit
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

# OpenMP threads (LightGBM's, torch's) that wait for work sleep instead of spinning: on a
# machine whose cores other work shares, spinning threads of a 2-thread fit crowd out the one
# doing the work, and a fold takes many times longer. Set before anything loads OpenMP (the
# runtime reads it once); inherited by the subprocesses tests start. Results do not change.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import numpy as np
import pandas as pd
import pytest

from synthpm.data.store import Store


def price_panel(tickers=("AAA", "BBB"), days: int = 30, start: str = "2020-01-01", seed: int = 0):
    """A long OHLCV panel of business days with consistent bars."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=days)
    frames = []
    for ticker in tickers:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, days)))
        open_ = close * (1 + rng.normal(0, 0.003, days))
        high = np.maximum(open_, close) * 1.01
        low = np.minimum(open_, close) * 0.99
        volume = rng.integers(1_000, 10_000, days)
        frames.append(
            pd.DataFrame(
                {
                    "ticker": ticker,
                    "date": dates.strftime("%Y-%m-%d"),
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                    "volume": volume,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def session_market(tickers: list[str], start: str, end: str, seed: int = 0) -> dict:
    """Random-walk OHLCV for `tickers` and a total-return index on the NYSE's sessions from
    `start` to `end` (so the data's weekly review days are the exchange calendar's), and
    alternating sectors: the frames a store imports (prices, market, sectors)."""
    import exchange_calendars

    sessions = exchange_calendars.get_calendar("XNYS").sessions_in_range(start, end)
    dates = pd.DatetimeIndex(sessions.tz_localize(None) if sessions.tz else sessions)
    rng = np.random.default_rng(seed)
    frames = []
    for ticker in tickers:
        close = 50 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, len(dates))))
        frames.append(pd.DataFrame({"ticker": ticker, "date": dates, "open": close * 0.999,
                                    "high": close * 1.01, "low": close * 0.98, "close": close,
                                    "volume": 1e6}))  # fmt: skip
    index = 100 * np.exp(np.cumsum(rng.normal(0.0002, 0.008, len(dates))))
    market = pd.DataFrame({"date": dates, "index_close": index, "index_kind": "total_return",
                           "index_source": "test"})  # fmt: skip
    sectors = pd.DataFrame({"ticker": tickers, "sector": ["Tech", "Energy"] * (len(tickers) // 2)})
    return {"prices": pd.concat(frames, ignore_index=True), "market": market, "sectors": sectors}


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store.duckdb")


@pytest.fixture
def priced_store(store: Store, tmp_path: Path) -> Store:
    from synthpm.data.importers import run_import

    path = tmp_path / "panel.csv"
    price_panel(("AAA", "BBB", "CCC")).to_csv(path, index=False)
    run_import(store, "csv", path)
    return store


def edgar_company(cik: int, ticker: str | None, filings: list[dict], name: str = "Co") -> dict:
    """A submissions JSON in EDGAR's `filings.recent` layout."""
    keys = ("accessionNumber", "filingDate", "reportDate", "acceptanceDateTime", "form", "items")
    recent = {k: [f.get(k, "") for f in filings] for k in keys}
    return {
        "cik": f"{cik:010d}",
        "name": name,
        "tickers": [ticker] if ticker else [],
        "sic": "3571",
        "sicDescription": "Electronic Computers",
        "filings": {"recent": recent, "files": []},
    }


def write_json(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def synthetic_inputs(tickers: int = 4, days: int = 300, seed: int = 0, events: bool = False):
    """`PanelInputs` built in memory: OHLCV for T0..Tn, an index, a VIX, two sectors, and
    (with `events`) quarterly results filings and monthly insider buys."""
    from synthpm.features import PanelInputs

    names = [f"T{i}" for i in range(tickers)]
    prices = price_panel(names, days=days, seed=seed)
    prices["date"] = pd.to_datetime(prices["date"])
    prices["volume"] = prices["volume"].astype(float)
    dates = pd.DatetimeIndex(prices["date"].unique())
    rng = np.random.default_rng(seed + 1)
    index = 100 * np.exp(np.cumsum(rng.normal(0, 0.008, len(dates))))
    market = pd.DataFrame(
        {
            "date": dates,
            "index_close": index,
            "vix": 15 + 5 * rng.random(len(dates)),
            "vix_source": "proxy:realised_vol_21d",
        }
    )
    ev = pd.DataFrame(columns=["ticker", "date_known", "event_type"])
    ins = pd.DataFrame(columns=["ticker", "date_known", "code", "value"])
    if events:
        ev = pd.DataFrame(
            [(t, d, "results") for t in names[:2] for d in dates[10::63]]
            + [(names[0], d, "officer_change") for d in dates[30::90]],
            columns=["ticker", "date_known", "event_type"],
        ).replace({"officer_change": "officer_director_change"})
        ins = pd.DataFrame(
            [
                (names[1], d, "P" if i % 2 else "S", 1e5 * (i + 1))
                for i, d in enumerate(dates[5::21])
            ],
            columns=["ticker", "date_known", "code", "value"],
        )
    sectors = pd.Series({t: ("Tech" if i % 2 else "Energy") for i, t in enumerate(names)})
    return PanelInputs(prices=prices, events=ev, insider=ins, market=market, sectors=sectors)


def analysts(inputs):
    """Feature panel and a quick walk-forward (tiny folds, 20 rounds) of `inputs`."""
    from synthpm.features import build_features
    from synthpm.forecast import ForecastConfig, walk_forward

    config = ForecastConfig(
        min_train_days=200, refit_months=6, train_stride=2, model_params={"rounds": 20}
    )
    panel = build_features(inputs)
    return panel, walk_forward(panel, inputs, config, log=lambda _: None).forecasts


# What tiny_dataset and tiny_trained built, by their arguments: built once per session and
# copied to each caller's folder (the build is seeded, so a copy is what a rebuild would be).
_BUILT: dict[tuple, tuple] = {}
_BUILT_ROOT = Path(tempfile.mkdtemp(prefix="synthpm-tests-"))
atexit.register(shutil.rmtree, _BUILT_ROOT, ignore_errors=True)


def tiny_dataset(out: Path, tickers: int = 6, days: int = 700, max_positions: int = 4):
    """Training conversations of a synthetic market written to `out`: (inputs, panel, forecasts)."""
    from synthpm.dataset import DatasetConfig, build_dataset
    from synthpm.limits import Limits

    key = ("dataset", tickers, days, max_positions)
    if key not in _BUILT:
        inputs = synthetic_inputs(tickers=tickers, days=days, events=True)
        panel, forecasts = analysts(inputs)
        config = DatasetConfig(limits=Limits(max_positions=max_positions))
        built = _BUILT_ROOT / "-".join(map(str, key))
        build_dataset(inputs, panel, forecasts, built, config, log=lambda _: None)
        _BUILT[key] = (built, inputs, panel, forecasts)
    built, *frames = _BUILT[key]
    shutil.copytree(built, out, dirs_exist_ok=True)
    return copy.deepcopy(tuple(frames))  # a test may change its copy


def tiny_trained(data: Path, model: Path, max_positions: int = 4):
    """`tiny_dataset` in `data`, a tiny LM trained on it in `model`, and the contexts of every
    forecast date: (inputs, contexts)."""
    from synthpm.dataset import build_contexts, decision_points
    from synthpm.lm.train import TrainConfig, train

    inputs, panel, forecasts = tiny_dataset(data, max_positions=max_positions)
    key = ("model", max_positions)
    if key not in _BUILT:
        tiny = TrainConfig(depth=1, seq_len=2048, vocab_size=400, batch_size=4, steps=40, lr=1e-2)
        built = _BUILT_ROOT / "-".join(map(str, key))
        train(data, built, tiny, log=lambda _: None)
        _BUILT[key] = (built,)
    shutil.copytree(_BUILT[key][0], model, dirs_exist_ok=True)
    start = forecasts.index.get_level_values("date").min()
    points = decision_points(panel.index, inputs.events, start=start)
    return inputs, build_contexts(inputs, panel, forecasts, points)


CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def tiny_llama(texts: list[str], out: Path, extra_vocab: int = 0, **config):
    """A random 2-layer Llama and a chat tokenizer trained on `texts`, saved to `out` like a
    local pretrained model (no hub): (model, tokenizer). `extra_vocab` pads the lm_head."""
    import torch
    import transformers

    from synthpm.lm.tokenizer import ChatTokenizer

    tokenizer = ChatTokenizer.train(texts, 400).to_huggingface()
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.split_special_tokens = False  # so the template's role markers are control tokens
    settings = dict(
        vocab_size=len(tokenizer) + extra_vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**settings | config)).eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model, tokenizer


@pytest.fixture(scope="session")
def ray_workers():
    """A local Ray runtime of 2 worker CPUs, started once for the session; the executor
    config that runs on it. Skipped where Ray (the `dist` extra) is not installed."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'synthpm[dist]')")
    from synthpm.executor import ExecutorConfig

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ExecutorConfig(executor="ray", workers=2)
    ray.shutdown()


def same_files(a: Path, b: Path, skip: tuple[str, ...] = ()) -> None:
    """Two output folders hold the same files, byte for byte (`skip`: names that hold
    timings)."""
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name not in skip)
    assert names == sorted(
        p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name not in skip
    )
    differ = [str(n) for n in names if file_digest(a / n) != file_digest(b / n)]
    assert not differ, differ


@pytest.fixture(scope="session")
def serve_world(tmp_path_factory):
    """The service's world (`tests/serve_world.py`), built once for the API's tests."""
    from tests.serve_world import build_world

    return build_world(tmp_path_factory.mktemp("serve"))


def synthpm_here(*args, store=None, check=True) -> subprocess.CompletedProcess:
    """`synthpm ARGS` run in this process: `tests.test_cli.synthpm` without the subprocess,
    so without an interpreter's start-up and synthpm's imports (seconds a call). It calls
    `synthpm.cli.main` (what `python -m synthpm.cli` runs) with `sys.argv` and
    `SYNTHPM_STORE` set, and answers as `subprocess.run` does: exit status, stdout, stderr.
    An exception `main` lets through fails the test, as a traceback would fail its status.
    What a command may change in this process (the environment, the working folder,
    progress bars, torch's threads, warning filters) is put back after each call."""
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    from synthpm import progress
    from synthpm.cli import main

    argv = ["synthpm", *map(str, args)]
    saved_argv, env, cwd, bars = sys.argv, dict(os.environ), os.getcwd(), progress._enabled
    torch = sys.modules.get("torch")  # imported by synthpm.cli
    threads = torch.get_num_threads() if torch else None
    out, err = StringIO(), StringIO()
    code = 0
    try:
        sys.argv = argv
        if store:
            os.environ["SYNTHPM_STORE"] = str(store)
        with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
            try:
                main()
            except SystemExit as exit_:  # as the interpreter turns it into a status
                code = exit_.code
                if code is not None and not isinstance(code, int):
                    print(code, file=sys.stderr)
                    code = 1
    finally:
        sys.argv = saved_argv
        for name in set(os.environ) - set(env):
            del os.environ[name]
        os.environ.update(env)
        os.chdir(cwd)
        progress.enable(bars)
        if threads is not None:
            torch.set_num_threads(threads)
    result = subprocess.CompletedProcess(argv, code or 0, out.getvalue(), err.getvalue())
    if check and result.returncode != 0:
        raise AssertionError(result.stdout + result.stderr)
    return result


@pytest.fixture(scope="session")
def small_store(tmp_path_factory):
    """Six tickers over three years, imported through the CLI (in process); the CLI's tests
    share it, and none writes to it."""
    tmp = tmp_path_factory.mktemp("cli")
    store = tmp / "s.duckdb"
    panel = tmp / "panel.csv"
    price_panel([f"T{i}" for i in range(6)], days=800, start="2015-01-01").to_csv(
        panel, index=False
    )
    synthpm_here("data", "import", "csv", panel, "--store", store)
    return store


@pytest.fixture(scope="session")
def forecast_run(small_store, tmp_path_factory):
    """A forecast run of `small_store` trained by the CLI (in process), shared as the store."""
    run = tmp_path_factory.mktemp("fc") / "run"
    synthpm_here(
        "forecast", "train", "--min-train-days", "250", "--refit-months", "6",
        "--param", "rounds=20", "--out", run, store=small_store,
    )  # fmt: skip
    return run
