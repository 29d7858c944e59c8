"""`synthpm dataset build|show` as a user runs them: files written, errors named.

The store and forecast run are `conftest.small_store` and `conftest.forecast_run`. `build`
and a refused `show` run as subprocesses; the shown example and the builds that must exit 2
run in process (`conftest.synthpm_here`)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import synthpm_here
from tests.test_cli import synthpm

pytestmark = pytest.mark.slow


def test_dataset_build_and_show(small_store, forecast_run, tmp_path):
    out = tmp_path / "ds"
    result = synthpm(
        "dataset", "build", "--forecasts", forecast_run, "--max-positions", "4",
        "--scenarios", "empty,full,holding", "--jsonl", "--workers", "1", "--out", out,
        store=small_store,
    )  # fmt: skip
    assert "examples by split and decision" in result.stdout
    stats = json.loads((out / "stats.json").read_text())
    assert set(stats["by_scenario"]) == {"empty", "full", "holding"}
    assert stats["examples"] > 0 and (out / "train" / "part-00000.jsonl").exists()
    shown = synthpm_here("dataset", "show", "3", "--data", out).stdout
    for part in ("<system>", "<user>", "COMPANY: T", "DECISION REQUIRED", "<assistant>"):
        assert part in shown
    assert '"decision":"' in shown and "never shown to the model" in shown
    late = synthpm("dataset", "show", "999999", "--data", out, check=False)
    assert late.returncode == 2 and "out of range" in late.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenarios", "sideways"], "unknown scenarios"),
        (["--schedule", "daily"], "schedule: Input should be 'weekly', 'monthly' or 'none'"),
        (["--forecasts", "/nonexistent"], "no forecasts at"),
    ],
)
def test_bad_dataset_requests_exit_2(small_store, tmp_path, args, message):
    result = synthpm_here(
        "dataset", "build", "--out", tmp_path, *args, store=small_store, check=False
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
