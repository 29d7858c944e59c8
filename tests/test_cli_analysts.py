"""`synthpm features|forecast|research` as a user runs them: files written, errors named.

The store is `conftest.small_store`. `features build`, `forecast train`, `research scan` and
a refused `forecast predict` run as subprocesses; the reports, the prediction compared with
training's and the requests that must exit 2 run in process (`conftest.synthpm_here`)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import synthpm_here
from tests.test_cli import synthpm

pytestmark = pytest.mark.slow


def test_features_build_writes_the_panel(small_store, tmp_path):
    out = tmp_path / "f.parquet"
    result = synthpm(
        "features", "build", "--features", "returns,rsi_14", "--out", out, store=small_store
    )
    assert "4,800 rows x 6 columns, 6 tickers" in result.stdout
    panel = pd.read_parquet(out)
    assert list(panel.columns) == ["ret_5d", "ret_21d", "ret_63d", "ret_126d", "ret_1d", "rsi_14"]


def test_forecast_train_report_predict(small_store, tmp_path):
    run = tmp_path / "run"
    result = synthpm(
        "forecast",
        "train",
        "--min-train-days",
        "250",
        "--refit-months",
        "6",
        "--param",
        "rounds=30",
        "--param",
        "min_data_in_leaf=50",
        "--out",
        run,
        store=small_store,
    )
    assert "out-of-sample forecast quality" in result.stdout
    config = json.loads((run / "config.json").read_text())
    assert config["model_params"] == {"rounds": 30, "min_data_in_leaf": 50}
    assert {"forecasts.parquet", "quality.json", "config.json", "folds.json", "models"} <= {
        p.name for p in run.iterdir()
    }
    report = synthpm_here("forecast", "report", "--run", run).stdout
    assert "rank IC per fold" in report
    quality = json.loads(synthpm_here("forecast", "report", "--run", run, "--json").stdout)
    assert set(quality["horizons"]) == {"1d", "1w", "1m", "3m"}
    out = tmp_path / "pred.parquet"
    folds = json.loads((run / "folds.json").read_text())
    synthpm_here(
        "forecast",
        "predict",
        "--run",
        run,
        "--start",
        folds[0]["test_start"],
        "--out",
        out,
        store=small_store,
    )
    predicted = pd.read_parquet(out)
    trained = pd.read_parquet(run / "forecasts.parquet")
    pd.testing.assert_frame_equal(predicted, trained.loc[predicted.index], check_categorical=False)
    early = synthpm(
        "forecast", "predict", "--run", run, "--start", "2015-06-01", store=small_store, check=False
    )
    assert early.returncode == 2 and "no model of" in early.stderr


def test_research_scan(small_store):
    out = synthpm("research", "scan", "T0", "--n", "3", store=small_store).stdout
    assert "least correlated with T0" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("features", "build", "--features", "rsi_41"), "unknown feature 'rsi_41'"),
        (("features", "build", "--start", "2031-01-01"), "empty universe"),
        (("forecast", "train", "--min-train-days", "5000"), "too short for horizon 3m"),
        (("forecast", "train", "--model", "xgboost"), "--model must be lightgbm, mlp or lstm"),
        (("forecast", "train", "--param", "rounds"), "--param wants KEY=VALUE"),
        (("forecast", "report", "--run", "nowhere"), "is not a forecast run"),
        (("research", "scan", "T9"), "T9"),
    ],
)
def test_bad_requests_exit_2_with_the_reason(small_store, args, message):
    result = synthpm_here(*args, store=small_store, check=False)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
