"""Where the work runs never changes what it computes: the walk-forward, the dataset build
and a comparison give the same files in this process, in local worker processes and on Ray
(a local runtime of 2 workers, as on a cluster)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import same_files, synthetic_inputs

from synthpm.backtest import BacktestConfig, Market, compare
from synthpm.data.errors import ConfigError
from synthpm.dataset import DatasetConfig, build_contexts, build_dataset, decision_points
from synthpm.executor import LOCAL, ExecutorConfig, parallel_map
from synthpm.features import build_features
from synthpm.forecast import ForecastConfig, walk_forward
from synthpm.limits import Limits
from synthpm.strategies import make_strategy

pytestmark = pytest.mark.slow
FORKED = ExecutorConfig(workers=2)
# one thread a fit, so that 2 workers run 2 folds at once (a fold reserves its threads)
TINY = ForecastConfig(
    min_train_days=200, refit_months=6, train_stride=2,
    model_params={"rounds": 20, "num_threads": 1},
)  # fmt: skip


def _square_minus(shared: int, item: int) -> tuple[int, int]:
    return item * item - shared, os.getpid()


def test_results_come_back_in_the_items_order_from_workers_with_room():
    items = list(range(7))
    expected = [i * i - 3 for i in items]
    here = list(parallel_map(_square_minus, 3, items, LOCAL))
    forked = list(parallel_map(_square_minus, 3, items, FORKED))
    assert [r for r, _ in here] == [r for r, _ in forked] == expected
    assert {pid for _, pid in here} == {os.getpid()}
    assert os.getpid() not in {pid for _, pid in forked}
    # an item that keeps 2 threads busy leaves no room for a second worker on 2 CPUs
    crowded = list(parallel_map(_square_minus, 3, items, FORKED, threads=2))
    assert {pid for _, pid in crowded} == {os.getpid()}
    assert list(parallel_map(_square_minus, 3, [], FORKED)) == []  # nothing to read: no pool


@pytest.fixture(scope="module")
def world():
    inputs = synthetic_inputs(tickers=6, days=700, events=True)
    return inputs, build_features(inputs)


@pytest.fixture(scope="module")
def forecasts(world, tmp_path_factory):
    """The walk-forward in this process, saved: the reference for every other executor."""
    inputs, panel = world
    result = walk_forward(panel, inputs, TINY, log=lambda _: None)
    out = tmp_path_factory.mktemp("wf") / "local"
    result.save(out)
    return result, out


def test_walk_forward_folds_anywhere_give_the_same_run(world, forecasts, ray_workers, tmp_path):
    inputs, panel = world
    reference, saved = forecasts
    assert len(reference.folds) >= 3  # several folds to spread
    for name, executor in (("forked", FORKED), ("ray", ray_workers)):
        result = walk_forward(panel, inputs, TINY, log=lambda _: None, executor=executor)
        result.save(tmp_path / name)
        # folds.json holds each fold's seconds; everything else is byte for byte the same
        same_files(saved, tmp_path / name, skip=("folds.json",))
        strip = [{k: v for k, v in f.items() if k != "seconds"} for f in result.folds]
        assert strip == [{k: v for k, v in f.items() if k != "seconds"} for f in reference.folds]


def test_dataset_chunks_anywhere_give_the_same_dataset(world, forecasts, ray_workers, tmp_path):
    inputs, panel = world
    config = DatasetConfig(limits=Limits(max_positions=4), chunk_dates=40, jsonl=True)
    built = {}
    for name, executor in (("local", LOCAL), ("ray", ray_workers)):
        stats = build_dataset(
            inputs, panel, forecasts[0].forecasts, tmp_path / name, config,
            log=lambda _: None, executor=executor,
        )  # fmt: skip
        built[name] = {k: v for k, v in stats.items() if "seconds" not in k and "_per_s" not in k}
    assert built["local"] == built["ray"] and built["local"]["examples"] > 0
    assert len(list((tmp_path / "local" / "contexts").glob("*.parquet"))) >= 3  # several chunks
    same_files(tmp_path / "local", tmp_path / "ray", skip=("stats.json",))


def test_a_comparison_anywhere_gives_the_same_folder(world, forecasts, ray_workers, tmp_path):
    inputs, panel = world
    frame = forecasts[0].forecasts
    points = decision_points(panel.index, inputs.events, start=frame.index.levels[0].min())
    contexts = build_contexts(inputs, panel, frame, points)
    market = Market.from_inputs(inputs)
    config = BacktestConfig(limits=Limits(max_positions=4))
    names = ("always_buy", "rules", "equal_weight", "lgbm_topk", "hrp")
    tables = {}
    for name, executor in (("local", LOCAL), ("ray", ray_workers)):
        strategies = [make_strategy(n) for n in names]
        tables[name] = compare(
            strategies, contexts, market, config, tmp_path / name, log=lambda _: None,
            executor=executor,
        )  # fmt: skip
        # metrics.json records the seconds each run took; the rest is the same to the byte
        same_files(tmp_path / "local", tmp_path / name, skip=("metrics.json",))
        for run in names:
            metrics = json.loads((tmp_path / name / run / "metrics.json").read_text())
            local = json.loads((tmp_path / "local" / run / "metrics.json").read_text())
            assert {**metrics, "seconds": 0} == {**local, "seconds": 0}
    assert list(tables["ray"].columns) == list(names)


def test_a_bad_executor_is_refused_by_name():
    with pytest.raises(ValueError, match="executor"):
        ExecutorConfig(executor="spark")
    with pytest.raises(ValueError, match="workers"):
        ExecutorConfig(workers=-1)


def test_ray_missing_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"synthpm\[dist\]"):
        list(parallel_map(_square_minus, 0, [1], ExecutorConfig(executor="ray")))


class FakeRay:
    """Ray's API as the executor calls it, recording the calls (no runtime started)."""

    def __init__(self, cpus: int):
        self.cpus, self.inits, self.puts, self.reserved = cpus, [], [], []

    def is_initialized(self):
        return bool(self.inits)

    def init(self, **options):
        self.inits.append(options)

    def cluster_resources(self):
        return {"CPU": float(self.cpus)}

    def put(self, value):
        self.puts.append(value)
        return ("ref", len(self.puts) - 1)

    def get(self, value):
        return value

    def remote(self, num_cpus):
        self.reserved.append(num_cpus)

        def wrap(fn):
            class Task:
                @staticmethod
                def remote(ref, item):
                    return fn(self.puts[ref[1]], item)

            return Task

        return wrap


def test_ray_joins_the_given_cluster_ships_the_shared_input_once_and_reserves_threads(
    monkeypatch,
):
    import sys

    fake = FakeRay(cpus=3)
    monkeypatch.setitem(sys.modules, "ray", fake)
    joined = ExecutorConfig(executor="ray", ray_address="10.0.0.5:6379")
    results = list(parallel_map(_square_minus, 3, range(5), joined, threads=8))
    assert [r for r, _ in results] == [i * i - 3 for i in range(5)]
    assert fake.inits == [{"address": "10.0.0.5:6379", "log_to_driver": False}]
    assert fake.puts == [3]  # once, whatever the number of items
    assert fake.reserved == [3]  # 8 threads wanted, the cluster has 3 CPUs
    local = FakeRay(cpus=2)
    monkeypatch.setitem(sys.modules, "ray", local)
    list(parallel_map(_square_minus, 0, [1], ExecutorConfig(executor="ray", workers=2)))
    assert local.inits == [{"num_cpus": 2, "include_dashboard": False, "log_to_driver": False}]
