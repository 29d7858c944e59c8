"""A served world for the service's tests: a store of a synthetic market on the exchange's
sessions, its walk-forward forecasts, a tiny LM trained on its conversations, a backtest
run and a comparison, and a token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from conftest import session_market

TICKERS = [f"T{i}" for i in range(6)]


@dataclass
class World:
    root: Path
    store_path: Path
    model: Path
    forecasts: Path
    runs: Path
    token: str
    fridays: list[pd.Timestamp]  # out-of-sample review days, the store's last ones
    test_start: str


def build_world(root: Path) -> World:
    from synthpm.backtest.engine import BacktestConfig
    from synthpm.backtest.market import Market
    from synthpm.backtest.run import compare
    from synthpm.data.store import ImportBatch, Store
    from synthpm.dataset import DatasetConfig, build_contexts, build_dataset, decision_points
    from synthpm.features import PanelInputs, build_features
    from synthpm.forecast import ForecastConfig, walk_forward
    from synthpm.limits import Limits
    from synthpm.lm.train import TrainConfig, train
    from synthpm.serve.tokens import create_token
    from synthpm.strategies import make_strategy

    data = session_market(TICKERS, "2019-01-02", "2021-09-30", seed=7)
    dates = pd.DatetimeIndex(data["market"]["date"])
    store = Store(root / "store.duckdb")
    store.write(ImportBatch("test", "world", data))
    inputs = PanelInputs.from_store(store)
    panel = build_features(inputs)
    config = ForecastConfig(min_train_days=200, refit_months=6, train_stride=2,
                            model_params={"rounds": 20})  # fmt: skip
    run = walk_forward(panel, inputs, config, log=lambda _: None)
    run.save(root / "forecast")
    limits = Limits(max_positions=4)
    stats = build_dataset(inputs, panel, run.forecasts, root / "data", DatasetConfig(limits=limits),
                          log=lambda _: None)  # fmt: skip
    tiny = TrainConfig(depth=1, seq_len=2048, vocab_size=400, batch_size=4, steps=40, lr=1e-2)
    train(root / "data", root / "lm", tiny, log=lambda _: None)
    test_start = stats["test_start"]
    # a comparison of two baselines over the test dates: one compare folder, two runs
    start = pd.Timestamp(test_start)
    points = decision_points(panel.index, inputs.events, start=start)
    contexts = build_contexts(inputs, panel, run.forecasts, points)
    strategies = [make_strategy("always_buy"), make_strategy("equal_weight")]
    compare(strategies, contexts, Market.from_inputs(inputs),
            BacktestConfig(start=test_start, limits=limits), root / "runs" / "cmp",
            log=lambda _: None)  # fmt: skip
    token = create_token(store, "tests")
    fridays = [d for d in dates[dates >= start] if d.day_of_week == 4][-6:]
    return World(root, store.path, root / "lm", root / "forecast", root / "runs", token, fridays,
                 test_start)  # fmt: skip
