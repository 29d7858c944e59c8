"""Training: schedules, loss on the assistant turn, and a resume that ends with the same weights."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_dataset

from synthpm.data.errors import ConfigError, SynthpmError
from synthpm.lm.train import TrainConfig, load_model, lr_at, train

TINY = dict(depth=1, seq_len=2048, vocab_size=400, batch_size=2, eval_every=2, eval_batches=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    # a small market: every run here tokenizes the whole dataset before its first step
    tiny_dataset(out, tickers=4, days=450)
    return out


def weights(folder):
    return torch.load(folder / "model.pt", weights_only=True)["model"]


def test_schedules():
    cosine = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr_frac=0.1)
    assert lr_at(0, cosine) == pytest.approx(0.1) and lr_at(9, cosine) == pytest.approx(1.0)
    assert lr_at(100, cosine) == pytest.approx(0.1)
    wsd = TrainConfig(steps=100, warmup=0, lr=1.0, schedule="wsd", decay_frac=0.2, min_lr_frac=0.0)
    assert lr_at(50, wsd) == 1.0 and lr_at(90, wsd) == pytest.approx(0.5)
    assert lr_at(100, wsd) == pytest.approx(0.0)


def crash_and_resume(data: Path, out: Path, config: TrainConfig, step: int) -> list[str]:
    """Train into `out`, interrupted when `step` is logged (before its checkpoint), then
    again to the end: the second run's log lines."""

    def crash(line: str) -> None:
        if json.loads(line)["step"] == step:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(data, out, config, log=lambda s: crash(s) if s.startswith("{") else None)
    assert not (out / "model.pt").exists()
    lines: list[str] = []
    train(data, out, config, log=lines.append)
    return lines


def test_a_crash_and_resume_ends_with_the_same_weights(data, tmp_path):
    config = TrainConfig(steps=6, save_every=1, **TINY)
    train(data, tmp_path / "straight", config, log=lambda _: None)
    lines = crash_and_resume(data, tmp_path / "resumed", config, 4)
    assert "resuming from step 3" in lines
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_other_settings_cannot_resume_a_checkpoint(data, tmp_path):
    config = TrainConfig(steps=2, save_every=1, **TINY)
    train(data, tmp_path, config, log=lambda _: None)
    (tmp_path / "model.pt").unlink()
    with pytest.raises(Exception, match="other settings"):
        train(data, tmp_path, TrainConfig(steps=3, save_every=1, **TINY), log=lambda _: None)
    # nor another world size (it draws other batches): as if torchrun had written it with 2
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["world_size"] == 1
    torch.save(state | {"world_size": 2}, tmp_path / "checkpoint.pt")
    with pytest.raises(ConfigError, match="2 process"):
        train(data, tmp_path, config, log=lambda _: None)


def test_a_folder_trained_on_other_data_is_refused(data, tmp_path):
    """A rebuilt dataset keeps its folder's name: resuming would mix two datasets."""
    config = TrainConfig(steps=1, **TINY)
    train(data, tmp_path / "lm", config, log=lambda _: None)
    copy = tmp_path / "rebuilt"
    shutil.copytree(data, copy)
    stats = json.loads((copy / "stats.json").read_text())
    stats["by_split"]["train"]["SKIP"] += 1  # as if the labels had changed
    (copy / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(ConfigError, match="other data"):
        train(copy, tmp_path / "lm", config, log=lambda _: None)
    train(data, tmp_path / "lm", config, log=lambda _: None)  # its own data: resumes


def test_it_learns_and_logs(data, tmp_path):
    config = TrainConfig(steps=30, lr=1e-2, warmup=3, **TINY | {"eval_every": 10})
    train(data, tmp_path, config, log=lambda _: None)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert rows[-1]["val_loss"] < rows[9]["val_loss"] and rows[-1]["tokens_per_s"] > 0
    model, tokenizer = load_model(tmp_path)
    assert model.config.depth == 1 and tokenizer.vocab_size <= 400


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A tiny model trained on `data`, for the runs that continue from it (left unchanged)."""
    out = tmp_path_factory.mktemp("base")
    train(data, out, TrainConfig(steps=20, lr=1e-2, warmup=3, **TINY), log=lambda _: None)
    return out


def first_loss(folder) -> float:
    return json.loads((folder / "metrics.jsonl").read_text().splitlines()[0])["loss"]


def test_init_continues_from_a_trained_models_weights_and_tokenizer(data, trained, tmp_path):
    # a depth and vocab_size of its own: the init's shape wins (the weights have it)
    config = TrainConfig(steps=1, init=trained, **TINY | {"depth": 2, "vocab_size": 4096})
    lines = []
    train(data, tmp_path, config, log=lines.append)
    # the same seed draws the same first batch, so the base run's first loss is a fresh
    # model's on it: far above one from the trained weights
    assert first_loss(tmp_path) < 0.6 * first_loss(trained)
    assert any(line.startswith(f"starting from {trained}") for line in lines)
    assert any("(not depth 2, vocab_size 4096)" in line for line in lines)
    tokenizer = sorted(p.name for p in (trained / "tokenizer").iterdir())
    assert sorted(p.name for p in (tmp_path / "tokenizer").iterdir()) == tokenizer
    for name in tokenizer:  # never refitted: the ids are the weights'
        assert (tmp_path / "tokenizer" / name).read_bytes() == (
            trained / "tokenizer" / name
        ).read_bytes()
    assert load_model(tmp_path).model.config == load_model(trained).model.config
    assert json.loads((tmp_path / "train_config.json").read_text())["depth"] == 1
    # the lineage: which folder and which weights it started from, and their record
    record = json.loads((tmp_path / "dataset.json").read_text())
    before = json.loads((trained / "dataset.json").read_text())
    sha = hashlib.sha256((trained / "model.pt").read_bytes()).hexdigest()[:16]
    assert record["init"] == {"path": str(trained.resolve()), "weights_sha256": sha} | {
        "dataset": before
    }
    assert record["limits"] == before["limits"] and record["test_start"] == before["test_start"]


def test_a_continued_run_resumes_to_the_same_weights(data, trained, tmp_path):
    config = TrainConfig(steps=4, save_every=1, init=trained, **TINY)
    train(data, tmp_path / "straight", config, log=lambda _: None)
    lines = crash_and_resume(data, tmp_path / "resumed", config, 2)  # eval_every 2 logs it
    assert "resuming from step 1" in lines  # its checkpoint, not the init weights again
    assert not any(line.startswith("starting from") for line in lines)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], weights(trained)[k]) for k in a)  # it did train


def test_a_bad_init_is_refused(data, trained, tmp_path):
    from typer.main import get_command

    from synthpm.cli import app

    lm_train = get_command(app).commands["lm"].commands["train"]
    assert any("--init" in param.opts for param in lm_train.params)
    config = dict(steps=1, **TINY)
    (tmp_path / "empty").mkdir()
    half = tmp_path / "half"  # a model whose tokenizer is gone
    shutil.copytree(trained, half)
    shutil.rmtree(half / "tokenizer")
    for init, missing in (
        (tmp_path / "empty", "no model.pt and no tokenizer/tokenizer.json"),
        (data, "no model.pt"),  # a dataset, not a model
        (half, "no tokenizer/tokenizer.json"),
    ):
        with pytest.raises(SynthpmError, match=f"{init} is not a trained model folder.*{missing}"):
            train(data, tmp_path / "out", TrainConfig(init=init, **config), log=lambda _: None)
    # itself, however it is spelled
    itself = TrainConfig(init=os.path.relpath(half), **config)
    with pytest.raises(SynthpmError, match="is the output folder itself"):
        train(data, half, itself, log=lambda _: None)
    # a folder trained afresh cannot go on from an init: two tokenizers, two starting points
    train(data, tmp_path / "fresh", TrainConfig(**config), log=lambda _: None)
    with pytest.raises(SynthpmError, match=f"other data than {data} starting from {trained}"):
        train(data, tmp_path / "fresh", TrainConfig(init=trained, **config), log=lambda _: None)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_two_processes_match_one_with_twice_the_grad_accum(data, tmp_path):
    """torchrun with 2 CPU processes (gloo) draws the micro-batches of grad_accum=2 in one
    process, and DDP's mean of the gradients is grad accumulation's mean."""
    options = {k: v for k, v in TINY.items() if k != "eval_batches"} | {"steps": 3}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", "-m", "synthpm.cli", "lm", "train"]
    command += [f"--data={data}", f"--out={tmp_path / 'ddp'}"]
    command += [f"--{k.replace('_', '-')}={v}" for k, v in options.items()]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    train(data, tmp_path / "one", TrainConfig(grad_accum=2, **options), log=lambda _: None)
    a, b = weights(tmp_path / "one"), weights(tmp_path / "ddp")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    # rank 0 alone wrote: one metrics line a step (mean loss over ranks), no other files
    one, ddp = (
        [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        for name in ("one", "ddp")
    )
    assert [r["step"] for r in ddp] == [1, 2, 3]
    assert all(r.pop("tokens_per_s") > 0 for r in one + ddp)
    for r, s in zip(one, ddp, strict=True):  # loss (mean over ranks), lr, validation loss
        assert s == pytest.approx(r, abs=1e-4)
    assert sorted(os.listdir(tmp_path / "ddp")) == sorted(os.listdir(tmp_path / "one"))
    assert torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)["world_size"] == 2


def test_a_training_budget_samples_every_date_not_the_first_rows(tmp_path):
    from synthpm.lm.train import sample_split

    dates = pd.bdate_range("2000-01-03", periods=40)
    for part in range(4):  # shards in date order, as `dataset build` writes them
        days = dates[part * 10 : (part + 1) * 10]
        frame = pd.DataFrame(
            {
                "date": np.repeat(days, 50),
                "decision": np.tile(["SKIP"] * 45 + ["BUY"] * 3 + ["SELL"] * 2, 10),
                "system": "s",
                "user": "u",
                "assistant": "a",
            }
        )
        (tmp_path / "train").mkdir(exist_ok=True)
        frame.to_parquet(tmp_path / "train" / f"part-{part:05d}.parquet")
    columns = ("date", "decision", "user")
    drawn = sample_split(tmp_path, "train", 200, seed=1, columns=columns)
    assert len(drawn) == 200 and drawn["date"].is_monotonic_increasing
    assert drawn["date"].nunique() >= 35  # all four shards, not the first 200 rows
    shares = drawn["decision"].value_counts(normalize=True)
    # decisions keep their frequencies (90/6/4): drawn equally, they taught the book's prior
    assert abs(shares["SKIP"] - 0.9) < 0.06 and shares["BUY"] < 0.15
    again = sample_split(tmp_path, "train", 200, seed=1, columns=columns)
    pd.testing.assert_frame_equal(drawn, again)
    assert len(sample_split(tmp_path, "train", None)) == 2000


def test_eval_compares_a_continued_model_with_its_start(data, trained, tmp_path):
    from typer.testing import CliRunner

    from synthpm.cli import app

    later = tmp_path / "later"
    train(data, later, TrainConfig(steps=2, init=trained, **TINY), log=lambda _: None)
    result = CliRunner().invoke(
        app, ["lm", "eval", "--model", str(later), "--data", str(data), "--n", "12",
              "--before", str(trained)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "before and after on the same 12 test examples" in result.output
    before = json.loads((later / "eval-before.json").read_text())
    after = json.loads((later / "eval.json").read_text())
    assert before["examples"] == after["examples"] == 12
    assert not (trained / "eval.json").exists()  # the start's folder is left as it was


def test_rename_tickers_renames_a_share_of_the_rows_in_prompt_and_answer_alike():
    from synthpm.dataset.faithfulness import check_faithfulness
    from synthpm.lm.train import rename_tickers

    frame = pd.DataFrame(
        {
            "ticker": ["KO", "BRK.B", "KO"] * 200,
            "user": ["COMPANY: KO; holding KOF, KO.", "COMPANY: BRK.B (BRK)", "KO: 1m +2.0%"] * 200,
            "assistant": ["SKIP KO", "BUY BRK.B", "KO +2.0%"] * 200,
        }
    )
    out = rename_tickers(frame, 0.5, seed=1)
    assert out.equals(rename_tickers(frame, 0.5, seed=1))  # seeded
    changed = out["user"] != frame["user"]
    assert (
        0.4 < changed.mean() < 0.6 and (changed == (out["assistant"] != frame["assistant"])).all()
    )
    for row, new in zip(frame[changed].itertuples(), out[changed].itertuples(), strict=True):
        (name,) = set(new.assistant.split()) - {"SKIP", "BUY", "+2.0%"}
        assert name.isalpha() and name.isupper() and 2 <= len(name) <= 4
        assert name not in {"KO", "BRK", "KOF"}
        assert new.user == row.user.replace(row.ticker, name).replace(name + "F", "KOF")
        assert check_faithfulness(new.assistant, new.user).ok
    assert rename_tickers(frame, 0.0, 1).equals(frame)
    assert rename_tickers(frame.drop(columns="ticker"), 0.5, 1).equals(frame.drop(columns="ticker"))


def test_the_answers_opening_weighs_as_much_as_the_rest_of_it(data, trained):
    """The decision and conviction (what the manager acts on) are half of an answer's loss;
    and the weighted loss is the weighted mean of the tokens' cross-entropies."""
    from synthpm.lm.model import GPT
    from synthpm.lm.tokenizer import ChatTokenizer
    from synthpm.lm.train import Batches, read_split

    tokenizer = ChatTokenizer.load(trained / "tokenizer")
    frame = read_split(data, "train", 20)
    rows = Batches(frame, tokenizer, TrainConfig(**TINY)).rows
    for row, answer in zip(rows, frame["assistant"], strict=True):
        start = next(i for i, w in enumerate(row.mask) if w > 0)
        weights = np.array(row.mask[start:], dtype=float)
        heavy = weights > 1
        opening = tokenizer.decode(row.ids[start : start + int(heavy.sum())])
        assert heavy[: heavy.sum()].all() and not heavy[heavy.sum() :].any()  # a prefix
        assert opening == answer[: answer.index(',"hold_duration_days"')]
        assert weights[heavy].sum() == pytest.approx(weights[~heavy].sum())

    model = GPT(load_model(trained)[0].config)
    batch = Batches(frame.iloc[:3], tokenizer, TrainConfig(**TINY)).collate(rows[:3])
    per_token = torch.nn.functional.cross_entropy(
        model(batch.inputs).flatten(0, 1), batch.targets.flatten(), reduction="none"
    )
    w = batch.mask.flatten()
    expected = (per_token * w).sum() / w.sum()
    assert model(batch.inputs, batch.targets, batch.mask).item() == pytest.approx(expected.item())
    ones = (w > 0).float()
    plain = (per_token * ones).sum() / ones.sum()
    assert model(batch.inputs, batch.targets, (batch.mask > 0).float()).item() == pytest.approx(
        plain.item()
    )
