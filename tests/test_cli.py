"""The command line, run as a user runs it: a subprocess, exit codes, printed errors.

Each command family keeps tests that start `python -m synthpm.cli` as a user does (its
imports, its exit status, what reaches a pipe); other calls, most of the requests that must
exit 2, run `synthpm.cli.main` in the test's process (`conftest.synthpm_here`), the same code
without an interpreter's start-up and imports, seconds a call."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import file_digest, price_panel, synthpm_here


def synthpm(*args, store=None, check=True):
    env = {**os.environ, "SYNTHPM_STORE": str(store)} if store else dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-m", "synthpm.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(result.stdout + result.stderr)
    return result


@pytest.mark.slow
def test_init_import_info_round_trip(tmp_path):
    store = tmp_path / "s.duckdb"
    synthpm("data", "init", "--store", store)
    panel = tmp_path / "panel.csv"
    price_panel(("ZZZ",)).to_csv(panel, index=False)
    out = synthpm("data", "import", "csv", panel, store=store).stdout  # store from the env
    assert "csv import" in out and "│ prices │   30 │       1 │" in out
    info = json.loads(synthpm_here("data", "info", "--json", "--store", store).stdout)
    assert info["tables"]["prices"]["tickers"] == 21
    assert info["tables"]["prices"]["rows"] == 166_260 + 30
    assert info["tables"]["market"]["vix_sources"]["arch:vix"]["rows"] == 1259
    table = synthpm_here("data", "info", "--store", store).stdout
    assert "prices" in table and "proxy:realised_vol_21d" in table


def test_bad_import_prints_one_clear_line_exits_2_and_changes_nothing(tmp_path):
    store = tmp_path / "s.duckdb"
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    price_panel(("AAA",)).to_csv(good, index=False)
    synthpm_here("data", "import", "csv", good, "--store", store)
    before = file_digest(store)
    frame = price_panel(("BBB",))
    frame.loc[4, "high"] = frame.loc[4, "low"] / 10
    frame.to_csv(bad, index=False)
    result = synthpm("data", "import", "csv", bad, "--strict", "--store", store, check=False)
    assert result.returncode == 2
    assert "error:" in result.stderr and "bad.csv, ticker BBB, row 5" in result.stderr
    assert "Traceback" not in result.stderr
    assert file_digest(store) == before


def test_missing_store_and_unknown_kind_are_clear(tmp_path):
    result = synthpm_here("data", "info", "--store", tmp_path / "none.duckdb", check=False)
    assert result.returncode == 2 and "synthpm data init" in result.stderr
    result = synthpm_here(
        "data", "import", "xls", tmp_path, "--store", tmp_path / "s.duckdb", check=False
    )
    assert result.returncode == 2 and "unknown import kind 'xls'" in result.stderr


def test_options_are_declared_once_on_the_configs():
    """A command's option takes its default and help from its config's field, and
    `backtest` and `compare` offer one option set (but the strategies and the folder)."""
    import typer

    from synthpm.backtest.engine import BacktestConfig
    from synthpm.cli import app
    from synthpm.dataset import DatasetConfig
    from synthpm.executor import ExecutorConfig
    from synthpm.forecast import ForecastConfig
    from synthpm.limits import Limits
    from synthpm.lm.train import TrainConfig

    root = typer.main.get_command(app)

    def params(path: str) -> dict:
        command = root
        for name in path.split():
            command = command.commands[name]
        return {p.name: p for p in command.params}

    for path, flag, field in [
        ("lm train", "eval_every", TrainConfig.model_fields["eval_every"]),
        ("lm train", "schedule", TrainConfig.model_fields["schedule"]),
        ("forecast train", "stride", ForecastConfig.model_fields["train_stride"]),
        ("dataset build", "filings", DatasetConfig.model_fields["filings"]),
        ("dataset build", "max_positions", Limits.model_fields["max_positions"]),
        ("backtest", "idle_cash", BacktestConfig.model_fields["idle_cash"]),
        ("compare", "commission_bps", BacktestConfig.model_fields["commission_bps"]),
        ("forecast train", "workers", ExecutorConfig.model_fields["workers"]),
        ("sweep", "executor", ExecutorConfig.model_fields["executor"]),
    ]:
        option = params(path)[flag]
        assert option.help and option.help == field.description, (path, flag)
        assert option.default == field.default, (path, flag)

    def shared(path: str) -> list:
        # a journaled run is backtest's only; where runs go is compare's (one run: nowhere)
        own = {"strategy", "strategies", "out", "journal", "executor", "workers", "ray_address"}
        return [(p.opts, p.default, p.help) for n, p in params(path).items() if n not in own]

    assert shared("backtest") == shared("compare")


def test_an_in_process_run_answers_as_a_subprocess_and_leaves_no_trace(tmp_path):
    """`synthpm_here`, which most exit-2 checks use: the status and the one line a user
    sees, and this process's environment, arguments, progress bars and torch threads as
    they were."""
    import torch

    import synthpm.cli  # noqa: F401 (its imports set KMP_* variables, once)
    from synthpm import progress

    before = (dict(os.environ), list(sys.argv), progress._enabled, torch.get_num_threads())
    result = synthpm_here("data", "info", store=tmp_path / "none.duckdb", check=False)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
    assert (dict(os.environ), sys.argv, progress._enabled, torch.get_num_threads()) == before
    assert synthpm_here("data", "--help").returncode == 0
    with pytest.raises(AssertionError, match="synthpm data init"):
        synthpm_here("data", "info", store=tmp_path / "none.duckdb")
