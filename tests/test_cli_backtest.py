"""`synthpm backtest|compare|sweep` as a user runs them: run folders written, errors named.

The store and forecast run are `conftest.small_store` and `conftest.forecast_run`. The runs
are subprocesses; the backtest a sweep's cell is checked against and the requests that must
exit 2 run in process (`conftest.synthpm_here`)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import synthpm_here
from tests.test_cli import synthpm

pytestmark = pytest.mark.slow


def test_backtest_writes_a_run_folder(small_store, forecast_run, tmp_path):
    out = tmp_path / "run"
    result = synthpm(
        "backtest", "--strategy", "rules", "--forecasts", forecast_run, "--out", out,
        store=small_store,
    )  # fmt: skip
    assert "fills: next bar open" in result.stdout
    for name in ("equity.csv", "trades.csv", "decisions.parquet", "metrics.json", "report.html"):
        assert (out / name).exists(), name
    equity = pd.read_csv(out / "equity.csv")
    assert list(equity.columns) == ["date", "equity", "cash", "benchmark", "exposure", "positions"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["strategy"] == "rules" and metrics["convention"]["periods_per_year"] == 252
    assert "dividends" in metrics and metrics["costs"]["commission_bps"] == 5.0
    decisions = pd.read_parquet(out / "decisions.parquet")
    assert set(decisions["status"]) <= {"executed", "resized", "rejected", "skipped"}


def test_compare_runs_every_strategy_on_the_same_dates(small_store, forecast_run, tmp_path):
    out = tmp_path / "cmp"
    # a learner too (fitted on the run's history before it trades; the others are wired alike
    # and tested in test_learners.py, test_online_lora.py)
    names = ["benchmark", "equal_weight", "lgbm_topk", "qlearn"]
    result = synthpm(
        "compare", "--strategies", ",".join(names), "--param", "lgbm_topk.k=2",
        "--param", "qlearn.episodes=2", "--forecasts", forecast_run, "--out", out,
        store=small_store,
    )  # fmt: skip
    assert "comparison" in result.stdout
    table = pd.read_csv(out / "comparison.csv", index_col=0)
    assert list(table.columns) == names
    assert table.loc["start"].nunique() == 1 and table.loc["end"].nunique() == 1
    assert (out / "report.html").exists() and (out / "lgbm_topk" / "report.html").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategies", "equal_wieght"], "did you mean 'equal_weight'"),
        (["--strategies", "ppo", "--param", "ppo.seeds=3"], "no parameter 'seeds'"),
        (["--strategies", "qlearm"], "did you mean 'qlearn'"),
        (["--strategies", "hrp", "--param", "hrp.lookbak=10"], "no parameter 'lookbak'"),
        (["--strategies", "hrp", "--param", "rules.k=1"], "names no chosen strategy"),
    ],
)
def test_bad_compare_requests_exit_2(small_store, forecast_run, tmp_path, args, message):
    result = synthpm_here(
        "compare", "--forecasts", forecast_run, "--out", tmp_path, *args,
        store=small_store, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_sweep_runs_every_cell_and_ranks_them(small_store, forecast_run, tmp_path):
    out = tmp_path / "sweep"
    synthpm(
        "sweep", "--strategy", "lgbm_topk", "--grid", "k=1,2", "--grid", "commission_bps=0,20",
        "--forecasts", forecast_run, "--out", out, store=small_store,
    )  # fmt: skip
    table = pd.read_csv(out / "sweep.csv")
    assert sorted(table["cell"]) == sorted(
        f"k={k},commission_bps={c}" for k in (1, 2) for c in (0, 20)
    )
    assert table["sharpe"].is_monotonic_decreasing and (out / "report.html").exists()
    # a cell is the run `backtest` makes with the same settings
    synthpm_here(
        "backtest", "--strategy", "lgbm_topk", "--param", "lgbm_topk.k=2", "--commission-bps",
        "20", "--forecasts", forecast_run, "--out", tmp_path / "one", store=small_store,
    )  # fmt: skip
    cell = json.loads((out / "k=2,commission_bps=20" / "metrics.json").read_text())["metrics"]
    alone = json.loads((tmp_path / "one" / "metrics.json").read_text())["metrics"]
    assert cell["sharpe"] == alone["sharpe"] and cell["trade_count"] == alone["trade_count"]
    costs = table.set_index("cell")["costs"]
    assert costs["k=2,commission_bps=0"] < costs["k=2,commission_bps=20"]


def test_a_sweep_over_the_limits_changes_the_books_exits(small_store, forecast_run, tmp_path):
    out = tmp_path / "sweep"
    synthpm_here(
        "sweep", "--strategy", "always_buy", "--grid", "stop_loss=0.01,null",
        "--forecasts", forecast_run, "--out", out, store=small_store,
    )  # fmt: skip
    stops = {}
    for cell, limit in (("stop_loss=0.01", 0.01), ("stop_loss=None", None)):
        assert json.loads((out / cell / "metrics.json").read_text())["limits"]["stop_loss"] == limit
        trades = pd.read_csv(out / cell / "trades.csv")
        stops[cell] = int((trades["reason"] == "stop_loss").sum())
    assert stops["stop_loss=0.01"] > 0 and stops["stop_loss=None"] == 0, stops


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--grid", "stop_loss=-0.1"], "stop_loss: Input should be greater"),
        (["--grid", "kk=1,2"], "'kk' (did you mean 'k'?) is not a setting of lgbm_topk"),
        (["--grid", "commission_bps=-5"], "commission_bps: Input should be greater"),
        (["--grid", "k=1", "--strategy", "lm"], "a sweep runs one of"),
    ],
)
def test_bad_sweeps_exit_2_and_write_nothing(small_store, forecast_run, tmp_path, args, message):
    result = synthpm_here(
        "sweep", "--forecasts", forecast_run, "--out", tmp_path / "sweep", *args,
        store=small_store, check=False,
    )  # fmt: skip
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert not (tmp_path / "sweep").exists()


def test_a_grid_is_parsed_or_named():
    from synthpm.cli.backtest import parse_grid
    from synthpm.data.errors import ConfigError

    assert parse_grid(["k=5, 10", "every=week", "fill=open,close"]) == {
        "k": [5, 10], "every": ["week"], "fill": ["open", "close"]
    }  # fmt: skip
    for bad, message in ((["k=1", "k=2"], "names 'k' twice"), (["k="], "wants KEY=V1,V2")):
        with pytest.raises(ConfigError, match=message):
            parse_grid(bad)
