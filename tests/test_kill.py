"""Crash safety (issue 23): every write path killed with SIGKILL at random points.

Each writer runs in a subprocess (forked from a server that has imported synthpm, see
`kill_targets`) and is killed after a seeded random delay within its uninterrupted running
time. After each kill, what was committed before is intact and readable: the store holds
the old rows or the new ones, never part of a batch; a folder is the earlier result whole or
the new one whole; a checkpoint loads. After the last kill a rerun completes.

`SYNTHPM_KILL_POINTS` sets the points per path; `make fuzz` runs 50 for each. `make test`
runs 20 for the store and the journal, and 6 for the dataset build, LM training and run
folders, where each point is a build, a training run or a backtest.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import pickle
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import analysts, price_panel, synthetic_inputs, tiny_dataset

from synthpm.backtest import Market
from synthpm.data.importers import run_import
from synthpm.data.store import Store
from synthpm.dataset import build_contexts, decision_points
from synthpm.features import build_features
from synthpm.journal.records import read_journal
from synthpm.lm.train import TrainConfig

POINTS = int(os.environ.get("SYNTHPM_KILL_POINTS", "20"))
COSTLY_POINTS = int(os.environ.get("SYNTHPM_KILL_POINTS", "6"))
CTX = multiprocessing.get_context("forkserver")
# torch._dynamo too: torch imports it when a process makes its first optimizer (seconds)
CTX.set_forkserver_preload(["kill_targets", "synthpm.data.importers", "synthpm.dataset",
                            "synthpm.lm.train", "torch._dynamo", "synthpm.backtest"])  # fmt: skip
TIMINGS = ("seconds", "context_seconds", "examples_per_s")  # the only fields a rerun changes


def run(target, *args, kill_after: float | None = None) -> tuple[bool, int]:
    """Run `target(*args, done)` in a subprocess; SIGKILL it after `kill_after` seconds.
    Returns (whether it was killed, what it counted as committed)."""
    # no lock: a child killed while holding a Value's lock would block the read below forever
    done = CTX.Value("i", 0, lock=False)
    proc = CTX.Process(target=target, args=(*args, done))
    proc.start()
    proc.join(kill_after)
    killed = proc.is_alive()
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    assert killed or proc.exitcode == 0, f"{target.__name__} failed with {proc.exitcode}"
    return killed, done.value


def delays(target, *args, n: int, seed: int = 0) -> np.ndarray:
    """`n` seeded kill delays spread over the writer's uninterrupted running time (measured
    by running it once, so its output is in place before the first kill)."""
    from kill_targets import ready

    run(ready)  # the server is up, its imports done, before the clock starts
    started = time.perf_counter()
    run(target, *args)
    return np.random.default_rng(seed).uniform(0, time.perf_counter() - started, n)


def tree(folder: Path) -> dict[str, str]:
    """A folder's files and their digests; JSON files without their timings."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".json":
            data = json.dumps(_untimed(json.loads(data)), sort_keys=True).encode()
        out[str(path.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return out


def _untimed(doc):
    if isinstance(doc, dict):
        return {k: _untimed(v) for k, v in doc.items() if k not in TIMINGS}
    return doc


def no_partials(folder: Path) -> list[str]:
    return [p.name for p in folder.parent.glob(f".{folder.name}.*")]


# ---------------------------------------------------------------------- the store


def test_store_imports_killed_keep_the_store_whole(priced_store, tmp_path):
    from kill_targets import import_prices

    csv = tmp_path / "more.csv"
    price_panel([f"N{i:02d}" for i in range(40)], days=400).to_csv(csv, index=False)
    original = priced_store.path.read_bytes()
    before = set(priced_store.tickers())
    points = delays(import_prices, priced_store.path, csv, n=POINTS)
    after = set(Store(priced_store.path).tickers())
    killed = 0
    for delay in points:
        priced_store.path.write_bytes(original)  # leftovers of the last kill stay
        was_killed, done = run(import_prices, priced_store.path, csv, kill_after=delay)
        killed += was_killed
        stored = Store(priced_store.path)
        tickers = set(stored.tickers())
        assert tickers in (before, after) and (not done or tickers == after)
        assert len(stored.prices()) == (400 * 40 + 90 if tickers == after else 90)
    assert killed >= POINTS // 2, f"only {killed} of {POINTS} points killed the writer"
    priced_store.path.write_bytes(original)
    run_import(priced_store, "csv", csv)  # and the next import completes
    assert set(Store(priced_store.path).tickers()) == after


def test_journal_writes_killed_keep_every_committed_batch(priced_store):
    from kill_targets import journal_batches

    points = delays(journal_batches, priced_store.path, "a", 6, n=POINTS)
    rows = len(read_journal(priced_store))
    for delay in points:
        _, done = run(journal_batches, priced_store.path, "k", 6, kill_after=delay)
        journal = read_journal(priced_store)
        assert len(journal) % 5 == 0 and journal["id"].is_unique  # whole batches only
        assert len(journal) >= rows + 5 * done  # every batch it committed is there
        rows = len(journal)
    _, done = run(journal_batches, priced_store.path, "last", 1)
    assert done == 1 and len(read_journal(priced_store)) == rows + 5


# ---------------------------------------------------------------------- result folders


@pytest.fixture(scope="module")
def market_world(tmp_path_factory) -> Path:
    # 450 days: forecasts from day 200, so a build or a comparison is seconds, written in pieces
    inputs = synthetic_inputs(tickers=6, days=450, events=True)
    panel, forecasts = analysts(inputs)
    path = tmp_path_factory.mktemp("world") / "world.pickle"
    path.write_bytes(pickle.dumps((inputs, panel, forecasts)))
    return path


def check_folder_kills(target, world: Path, out: Path, old, new, n: int) -> None:
    """`target(world, out, setting, done)`: `out` holds the result of the `old` setting; kills
    of the writer of the `new` one leave the old whole or the new whole; a rerun completes."""
    points = delays(target, world, out.with_name("reference"), new, n=n)
    reference = tree(out.with_name("reference"))
    run(target, world, out, old)
    earlier = tree(out)
    assert earlier != reference  # the two results differ, so the check below tells them apart
    killed = 0
    for delay in points:
        was_killed, done = run(target, world, out, new, kill_after=delay)
        killed += was_killed
        found = tree(out)
        assert found in (earlier, reference) and (not done or found == reference)
        if found == reference:  # back to the earlier result for the next point
            run(target, world, out, old)
    assert killed >= n // 2, f"only {killed} of {n} points killed the writer"
    run(target, world, out, new)
    assert tree(out) == reference and not no_partials(out)


def test_dataset_builds_killed_leave_a_whole_dataset(market_world, tmp_path):
    from kill_targets import build

    check_folder_kills(build, market_world, tmp_path / "ds", 1, 2, COSTLY_POINTS)


def test_run_folders_killed_leave_a_whole_comparison(market_world, tmp_path):
    from kill_targets import compare

    inputs, *_ = pickle.loads(market_world.read_bytes())
    panel = build_features(inputs)
    contexts = build_contexts(inputs, panel, None, decision_points(panel.index, inputs.events))
    world = tmp_path / "contexts.pickle"
    world.write_bytes(pickle.dumps((contexts, Market.from_inputs(inputs))))
    check_folder_kills(compare, world, tmp_path / "cmp", 5.0, 20.0, COSTLY_POINTS)


# ---------------------------------------------------------------------- LM checkpoints


def test_lm_training_killed_again_and_again_resumes_to_the_same_model(tmp_path):
    from kill_targets import train

    data = tmp_path / "data"
    # a small dataset: a run's start (tokenizer, sequences) is short beside its 6 steps, so
    # more of the kill points land among the steps and their checkpoints
    tiny_dataset(data, tickers=4, days=450)
    config = TrainConfig(
        depth=1, seq_len=2048, vocab_size=400, batch_size=2, eval_every=2, eval_batches=1,
        steps=6, save_every=1,
    ).model_dump_json()  # fmt: skip
    points = delays(train, data, tmp_path / "straight", config, n=COSTLY_POINTS)
    straight = torch.load(tmp_path / "straight" / "model.pt", weights_only=True)["model"]
    out, runs, killed = tmp_path / "killed-0", 0, 0
    for delay in points:
        was_killed, done = run(train, data, out, config, kill_after=delay)
        killed += was_killed
        if (out / "checkpoint.pt").exists():  # a checkpoint is always whole
            torch.load(out / "checkpoint.pt", weights_only=False)
        assert (out / "model.pt").exists() or not done  # killed after it, maybe before done
        if (out / "model.pt").exists():  # killed and resumed until finished: a straight run's
            weights = torch.load(out / "model.pt", weights_only=True)["model"]
            assert all(torch.equal(straight[k], weights[k]) for k in straight)
            runs += 1
            out = tmp_path / f"killed-{runs}"
    assert killed >= len(points) // 2
    run(train, data, out, config)  # the last killed run resumes to the end
    weights = torch.load(out / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(straight[k], weights[k]) for k in straight)
