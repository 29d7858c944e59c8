"""The writers `test_kill.py` kills: each runs in a process forked from a server that has
already imported synthpm (so a kill point costs milliseconds, not an interpreter start), and
counts in `done` what it has committed."""

from __future__ import annotations

import pickle
from pathlib import Path

import pandas as pd


def ready(done) -> None:
    """Nothing: the first process started also starts the server (imports included)."""
    done.value = 1


def import_prices(store: Path, csv: Path, done) -> None:
    from synthpm.data.importers import run_import
    from synthpm.data.store import Store

    run_import(Store(store), "csv", csv)
    done.value = 1


def journal_batches(store: Path, tag: str, batches: int, done) -> None:
    from synthpm.context import Context
    from synthpm.data.store import Store
    from synthpm.journal.records import entry, write_entries
    from synthpm.limits import Limits
    from synthpm.signals import Signal

    signal = Signal(decision="BUY", conviction=0.6, hold_duration_days=10, reasoning="x")
    for b in range(batches):
        rows = [
            entry(
                Context(ticker=t, date=pd.Timestamp("2020-01-02").date()),
                signal,
                source=tag,
                account=tag,
                limits=Limits(),
                status="filled",
            )
            for t in ("AAA", "BBB", "CCC", "AAA", "BBB")
        ]
        write_entries(Store(store), rows, tag)
        done.value = b + 1


def build(world: Path, out: Path, seed: int, done) -> None:
    from synthpm.dataset import DatasetConfig, build_dataset
    from synthpm.limits import Limits

    inputs, panel, forecasts = pickle.loads(world.read_bytes())
    config = DatasetConfig(limits=Limits(max_positions=4), seed=seed)
    build_dataset(inputs, panel, forecasts, out, config, log=lambda _: None)
    done.value = 1


def train(data: Path, out: Path, config: str, done) -> None:
    from synthpm.lm.train import TrainConfig
    from synthpm.lm.train import train as train_lm

    train_lm(data, out, TrainConfig.model_validate_json(config), log=lambda _: None)
    done.value = 1


def compare(world: Path, out: Path, commission_bps: float, done) -> None:
    from synthpm.backtest import BacktestConfig, compare
    from synthpm.strategies import make_strategy

    contexts, market = pickle.loads(world.read_bytes())
    strategies = [make_strategy(n) for n in ("always_buy", "rules", "equal_weight")]
    config = BacktestConfig(commission_bps=commission_bps)
    compare(strategies, contexts, market, config, out, log=lambda _: None)
    done.value = 1
