"""Training: conversations → tokens (loss on the assistant turn only) → AdamW → checkpoints.

- **Data.** Up to `max_examples` rows drawn across every training date, each date alike
  (`sample_split`), rendered by the chat tokenizer (trained on the training conversations
  and saved beside the model the first time); the sampled rows of step s are a function of
  (seed, s) alone. Decisions keep their own frequencies: drawing them equally taught the
  model that an empty book means BUY (P 0.68 on every stock) and a held name means SELL
  (P 0.70 on every stock), so it sold every position at the next weekly review.
- **Loss.** On the assistant turn only, and the answer's opening (the decision and the
  conviction, what the manager acts on) weighs as much as the rest of it (`opening_weights`):
  counted per token, the two that carry the view of the stock were 1/18 of a 36-token
  answer, and the model learned the book's prior and no stock's.
- **Record.** `dataset.json` beside the model records the limits, label settings,
  scenarios and split dates it was trained with (`dataset_record`).
- **Continual fine-tuning.** `init` starts from a trained model folder: its tokenizer is
  copied into the new folder (never refitted: the token ids must match the weights), its
  depth and vocab_size replace the config's (the shape is the weights'; a differing setting
  is logged, not an error, since the command line always passes one), and its weights are
  loaded before step 0. The optimizer state starts fresh. Everything else is a fresh run's:
  schedule, steps, seed, checkpoints; a resume loads the checkpoint, never the init weights.
  `dataset.json` names the init (path and a hash of its weights) and its record
  (`lineage_record`).
- **Exact resume.** Because the batch of a step depends only on (seed, step), a checkpoint
  needs just the weights, the optimizer state and the step: a run killed at any point (kill
  -9 included) and resumed from its last checkpoint ends with the same weights as one that
  never stopped. Checkpoints are written to a temporary file and renamed, so a kill
  mid-write leaves the previous one intact.
- **Schedule.** AdamW; linear warmup, then cosine or WSD (warmup-stable-decay: flat, then a
  linear decay over the last `decay_frac` of steps) down to `min_lr_frac` of the peak.
- **Logging.** `metrics.jsonl` (step, loss, lr, tokens/s, validation loss), a progress line,
  and MLflow when it is installed.
- **Devices / multi-GPU.** CPU by default; CUDA with bf16 autocast when a GPU is present.
  Data-parallel over N processes (one GPU each, nccl; gloo on CPU) with
  `torchrun --standalone --nproc_per_node=N -m synthpm.cli lm train ...`: each process draws
  its own micro-batches and DDP averages the gradients, so a step sees
  batch_size x grad_accum x N sequences. Micro-batch g = rank x grad_accum + micro of a step
  is the same draw at any N, so N processes match one process with N times the grad_accum.
  Rank 0 alone writes the tokenizer, metrics, MLflow, checkpoints and the model; a
  checkpoint resumes only with the same N.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, Field

from synthpm.data.errors import ConfigError
from synthpm.folders import atomic_file, write_atomic
from synthpm.lm.model import GPT, GPTConfig, inference_dtype
from synthpm.lm.tokenizer import FILE, ChatTokenizer, Rendered


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: int = Field(2, ge=1, description="the size knob: width = 64 x depth")
    # a full example: mean 211 tokens, max 258 measured
    seq_len: int = Field(512, ge=32, description="longest training sequence, tokens")
    vocab_size: int = Field(
        4096, ge=300, description="tokenizer size (fitted on a model folder's first run)"
    )
    batch_size: int = Field(64, ge=1, description="sequences per micro-batch (per process)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    steps: int = Field(300, ge=1, description="optimizer steps")
    lr: float = Field(3e-3, gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.0, ge=0)
    warmup: int = Field(20, ge=0)
    schedule: Literal["cosine", "wsd"] = Field(
        "cosine", description="cosine or wsd (warmup-stable-decay)"
    )
    decay_frac: float = Field(0.2, gt=0, le=1)
    min_lr_frac: float = Field(0.1, ge=0, le=1)
    eval_every: int = Field(100, ge=1, description="steps between validation losses")
    eval_batches: int = Field(8, ge=1)
    save_every: int = Field(50, ge=1)
    # CPU budgets
    max_examples: int | None = Field(200_000, ge=1, description="training rows read")
    rename_tickers: float = Field(
        0.5, ge=0, le=1, description="share of training examples whose stock gets a made-up name"
    )
    seed: int = 0
    init: Path | None = Field(
        None,
        description="a trained model folder to start from (continual fine-tuning); "
        "its tokenizer and model size are kept",
    )


def lr_at(step: int, config: TrainConfig) -> float:
    peak, floor = config.lr, config.lr * config.min_lr_frac
    if step < config.warmup:
        return peak * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    if config.schedule == "cosine":
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    decay_start = 1.0 - config.decay_frac
    if progress < decay_start:
        return peak
    return peak - (peak - floor) * min(1.0, (progress - decay_start) / config.decay_frac)


CONVERSATION = ("system", "user", "assistant", "decision")
_LETTERS = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def rename_tickers(frame: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """`share` of the rows (drawn with `seed`) with their stock's ticker replaced, in prompt
    and answer alike, by a made-up one of 2 to 4 capitals that names no stock in the frame.

    Why: trained on real names only, the demo's model decided by the name. On the four
    tickers its dataset kept out of training (spelled letter by letter by a tokenizer that
    never met them) it answered SELL to all 58 test prompts, and the same prompt with a
    training ticker put in read BUY. Made-up names teach that the name carries nothing; the
    answers stay faithful, since the prompt names the new ticker too."""
    if share <= 0 or "ticker" not in frame or frame.empty:
        return frame
    rng = np.random.default_rng([seed, len(frame)])
    chosen = np.flatnonzero(rng.random(len(frame)) < share)
    taken = set(frame["ticker"])
    users, answers = frame["user"].to_numpy().copy(), frame["assistant"].to_numpy().copy()
    for i in chosen:
        name = None
        while name is None or name in taken or name in users[i]:
            name = "".join(rng.choice(_LETTERS, rng.integers(2, 5)))
        # the ticker as a whole word: not inside another (KO in KOF, or in BRK.B's BRK)
        word = re.compile(rf"(?<![\w.\-]){re.escape(frame['ticker'].iat[i])}(?![\w\-]|\.\w)")
        users[i], answers[i] = word.sub(name, users[i]), word.sub(name, answers[i])
    return frame.assign(user=users, assistant=answers)


def read_split(
    data: Path, split: str, limit: int | None, columns: tuple[str, ...] = CONVERSATION
) -> pd.DataFrame:
    """The split's first `limit` rows in date order (all with None); see `sample_split`."""
    parts = _parts(data, split)
    frames, rows = [], 0
    for part in parts:
        frame = pd.read_parquet(part, columns=list(columns))
        frames.append(frame)
        rows += len(frame)
        if limit is not None and rows >= limit:
            break
    return pd.concat(frames, ignore_index=True).iloc[:limit]


def sample_split(
    data: Path,
    split: str,
    limit: int | None,
    seed: int = 0,
    columns: tuple[str, ...] = CONVERSATION,
) -> pd.DataFrame:
    """Up to `limit` rows drawn from every date of the split, each date alike.

    The first rows of a split are its first years: a budget of 50,000 read in order once
    trained the demo on 1994-1998 and traded it in 2018. Each row is weighted 1 / (rows on
    its date), so every date weighs alike, and `limit` rows are drawn without replacement
    (Efraimidis-Spirakis keys: one vectorised top-k). Decisions keep their frequencies (the
    module docstring). Rows come back in date order; the draw depends on the seed alone."""
    parts = _parts(data, split)
    # a hand-made shard may lack the date: its rows then weigh alike
    keys = ["date"] if "date" in pq.read_schema(parts[0]).names else []
    sizes = [pq.ParquetFile(p).metadata.num_rows for p in parts]
    frame = pd.concat([pd.read_parquet(p, columns=keys) for p in parts], ignore_index=True)
    if limit is None or limit >= sum(sizes):
        chosen = np.arange(sum(sizes))
    else:
        weight = np.ones(sum(sizes))
        for key in keys:
            weight /= frame.groupby(key)[key].transform("size").to_numpy()
        u = np.random.default_rng([seed, len(weight)]).random(len(weight))
        draw = -np.log(u) / weight  # the smallest `limit` keys are the weighted draw
        chosen = np.sort(np.argpartition(draw, limit - 1)[:limit])
    out, offset = [], 0
    for part, size in zip(parts, sizes, strict=True):
        local = chosen[(chosen >= offset) & (chosen < offset + size)] - offset
        if len(local):
            out.append(pd.read_parquet(part, columns=list(columns)).iloc[local])
        offset += size
    return pd.concat(out, ignore_index=True)


def _parts(data: Path, split: str) -> list[Path]:
    parts = sorted((Path(data) / split).glob("part-*.parquet"))
    if not parts:
        raise ConfigError(f"no {split} examples in {data} (run `synthpm dataset build`)")
    return parts


def dataset_record(data: Path) -> dict:
    """What a model was trained with, from its `dataset build` folder: the limits, label
    and scenario settings the prompts and labels used, and the split dates. Saved beside the
    model (`dataset.json`), so the agent renders the same prompts and a backtest knows which
    dates the model has seen. Empty for a folder `dataset build` did not write."""
    if not ((Path(data) / "config.json").is_file() and (Path(data) / "stats.json").is_file()):
        return {}
    config = json.loads((Path(data) / "config.json").read_text())
    stats = json.loads((Path(data) / "stats.json").read_text())
    return {
        "data": str(Path(data).resolve()),
        "limits": config["limits"],
        "labels": config["labels"],
        "teacher": config.get("teacher", "hindsight"),  # a folder from before teachers: hindsight
        "scenarios": config["scenarios"],
        "schedule": config["schedule"],
        "seed": config["seed"],
        "val_start": stats["val_start"],
        "test_start": stats["test_start"],
        "examples": stats["by_split"],  # a rebuild with other labels counts otherwise
    }


class Init(NamedTuple):
    """A trained model folder a run starts from (`TrainConfig.init`)."""

    path: Path  # absolute
    weights: dict[str, torch.Tensor]
    shape: GPTConfig
    vocab_size: int  # the `vocab_size` setting its tokenizer was fitted with
    record: dict  # its dataset.json; {} where it has none


def read_init(init: Path, out: Path) -> Init:
    """The model folder `init` continues from; ConfigError when it is `out` itself or not a
    finished `lm train` folder (the error names what is missing)."""
    init = Path(init)
    if init.resolve() == Path(out).resolve():
        raise ConfigError(
            f"--init {init} is the output folder itself: continue into a new --out (a killed "
            "run resumes from its checkpoint without --init)"
        )
    missing = [name for name in ("model.pt", f"tokenizer/{FILE}") if not (init / name).is_file()]
    if missing:
        raise ConfigError(
            f"--init {init} is not a trained model folder (one `synthpm lm train` finished): "
            f"no {' and no '.join(missing)}"
        )
    payload = torch.load(init / "model.pt", map_location="cpu", weights_only=True)
    shape = GPTConfig(**payload["config"])
    vocab = ChatTokenizer.load(init / "tokenizer").vocab_size
    if vocab != shape.vocab_size:  # a tokenizer replaced after training: ids would not match
        raise ConfigError(
            f"--init {init}: its tokenizer has {vocab} tokens, its model.pt {shape.vocab_size}"
        )
    settings = init / "train_config.json"
    fitted = json.loads(settings.read_text())["vocab_size"] if settings.is_file() else vocab
    before = init / "dataset.json"
    record = json.loads(before.read_text()) if before.is_file() else {}
    return Init(init.resolve(), payload["model"], shape, fitted, record)


def weights_hash(folder: Path) -> str:
    """The first 16 hex digits of the sha256 of `folder`'s model.pt: which weights, exactly."""
    digest = hashlib.sha256()
    with (folder / "model.pt").open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def lineage_record(data: Path, record: dict, init: Init) -> dict:
    """`record` (this run's data's `dataset_record`; {} for hand-made shards without
    config.json and stats.json) for a run started from `init`: the init's limits where
    the new data names none (its prompts are the ones the model learnt), split dates the later
    of the two (the model has seen both datasets' training dates), and `init`: the folder, a
    hash of its weights and its own record (so a chain of fine-tunes reads back to the start).
    """
    merged = {"data": str(Path(data).resolve())} | record
    if "limits" in init.record:
        merged.setdefault("limits", init.record["limits"])
    for key in ("val_start", "test_start"):
        dates = [r[key] for r in (init.record, record) if r.get(key)]
        if dates:  # ISO dates: the string order is the date order
            merged[key] = max(dates)
    init_info = {"path": str(init.path), "weights_sha256": weights_hash(init.path)}
    return merged | {"init": init_info | {"dataset": init.record}}


def trained_on_other_data(out: Path, record: dict) -> bool:
    """Whether `out` already holds a tokenizer or checkpoint from another dataset: resuming
    it would silently mix two datasets (a rebuilt dataset keeps its folder's name). With an
    init the record names its weights too, so another (or retrained) init is other data."""
    started = (out / "tokenizer").exists() or (out / "checkpoint.pt").exists()
    before = out / "dataset.json"
    return started and before.is_file() and json.loads(before.read_text()) != record


class Batch(NamedTuple):
    """Next-token inputs, targets and the loss weights (0 off the assistant turn), (rows, width)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor

    def to(self, device) -> Batch:
        return Batch(*(t.to(device) for t in self))


class Batches:
    """Tokenized examples and the deterministic batch of each step."""

    def __init__(self, frame: pd.DataFrame, tokenizer: ChatTokenizer, config: TrainConfig):
        rendered = tokenizer.render_batch(
            list(frame["system"]), list(frame["user"]), list(frame["assistant"])
        )
        rendered = opening_weights(rendered, list(frame["assistant"]), tokenizer)
        keep = [i for i, row in enumerate(rendered) if len(row.ids) <= config.seq_len + 1]
        self.rows = [rendered[i] for i in keep]
        self.dropped = len(rendered) - len(keep)
        self.pad, self.config = tokenizer.pad_id, config

    def __len__(self) -> int:
        return len(self.rows)

    def batch(self, step: int, index: int) -> Batch:
        """Micro-batch `index` (rank x grad_accum + micro) of `step`: the same at any world size."""
        rng = np.random.default_rng([self.config.seed, step, index])
        picks = rng.choice(len(self.rows), self.config.batch_size)
        return self.collate([self.rows[i] for i in picks])

    def collate(self, rows: list[Rendered]) -> Batch:
        width = max(len(row.ids) for row in rows) - 1
        x = torch.full((len(rows), width), self.pad, dtype=torch.long)
        y = torch.full((len(rows), width), self.pad, dtype=torch.long)
        m = torch.zeros((len(rows), width))
        for r, (ids, mask) in enumerate(rows):
            n = len(ids) - 1
            x[r, :n] = torch.tensor(ids[:-1])
            y[r, :n] = torch.tensor(ids[1:])
            m[r, :n] = torch.tensor(mask[1:], dtype=torch.float32)
        return Batch(x, y, m)


OPENING_END = ',"hold_duration_days"'  # the answer's opening ends before this key


def opening_weights(
    rendered: list[Rendered], answers: list[str], tokenizer: ChatTokenizer
) -> list[Rendered]:
    """Each conversation with its loss mask reweighted so that the answer's opening (up to
    the conviction's last token) weighs as much as the rest of the answer together (module
    docstring). An answer without the opening, or whose opening does not tokenize as its
    own prefix, keeps its mask."""
    cuts = [a.find(OPENING_END) for a in answers]
    heads = tokenizer.encode_batch(
        [a[:c] if c > 0 else "" for a, c in zip(answers, cuts, strict=True)]
    )
    out = []
    for row, head in zip(rendered, heads, strict=True):
        start = row.mask.index(1) if 1 in row.mask else len(row.mask)
        n_open, n_answer = len(head), len(row.mask) - start
        if not 0 < n_open < n_answer or row.ids[start : start + n_open] != head:
            out.append(row)
            continue
        heavy = (n_answer - n_open) / n_open
        mask = [*row.mask[:start], *[heavy] * n_open, *row.mask[start + n_open :]]
        out.append(Rendered(row.ids, mask))
    return out


def _columns(data: Path) -> tuple[str, ...]:
    """The conversation columns, and `ticker` where the shards have it (a hand-made one may
    not)."""
    has = "ticker" in pq.read_schema(_parts(data, "train")[0]).names
    return (*CONVERSATION, "ticker") if has else CONVERSATION


def _settings(config: TrainConfig) -> dict:
    """The settings a checkpoint resumes only with: `init` as an absolute path (the same
    folder named from another directory resumes), left out when None, and `rename_tickers`
    left out when 0 (so checkpoints written before the fields existed resume with 0)."""
    exclude = {"init"} | ({"rename_tickers"} if config.rename_tickers == 0 else set())
    settings = config.model_dump(mode="json", exclude=exclude)
    if config.init is not None:
        settings["init"] = str(Path(config.init).resolve())
    return settings


def _copy_tokenizer(init: Path, out: Path) -> None:
    """`init`'s tokenizer files into `out`, byte for byte, each renamed into place (a kill
    mid-copy leaves no half file for the resume to compare)."""
    (out / "tokenizer").mkdir(parents=True, exist_ok=True)
    for src in (init / "tokenizer").iterdir():
        if src.is_file():
            with atomic_file(out / "tokenizer" / src.name) as tmp:
                shutil.copyfile(src, tmp)


def _save(path: Path, payload: dict) -> None:
    with atomic_file(path) as tmp:  # a kill mid-write keeps the previous checkpoint
        torch.save(payload, tmp)


class LoadedModel(NamedTuple):
    """A trained model, in eval mode, and its chat tokenizer."""

    model: GPT
    tokenizer: ChatTokenizer


def load_model(out: str | Path, dtype: torch.dtype | None = None) -> LoadedModel:
    """The trained model, for inference in `dtype` (default: `inference_dtype()`)."""
    out = Path(out)
    if not (out / "model.pt").exists():
        raise ConfigError(f"no trained model in {out} (run `synthpm lm train --out {out}`)")
    payload = torch.load(out / "model.pt", map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**payload["config"]))
    model.load_state_dict(payload["model"])
    model = model.to(dtype or inference_dtype())
    return LoadedModel(model.eval(), ChatTokenizer.load(out / "tokenizer"))


def train(data: str | Path, out: str | Path, config: TrainConfig | None = None, log=print) -> dict:
    """Train (or resume) a model in `out`; returns the final figures. Under torchrun
    (WORLD_SIZE > 1) every process calls this and they train one model data-parallel."""
    config = config or TrainConfig()
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _train(Path(data), Path(out), config, log)
    cuda = torch.cuda.is_available()
    if cuda:  # before the process group, so nccl binds each process to its own GPU
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        return _train(Path(data), Path(out), config, log)
    finally:
        dist.destroy_process_group()


def _train(data: Path, out: Path, config: TrainConfig, log) -> dict:
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if world > 1 else 0
    main = rank == 0  # the only process that logs and writes files
    log = log if main else (lambda _: None)
    init = read_init(config.init, out) if config.init is not None else None  # every rank
    if init is not None:  # the shape is the weights': the config follows (module docstring)
        shape = {"depth": init.shape.depth, "vocab_size": init.vocab_size}
        if any(getattr(config, k) != v for k, v in shape.items()):
            given = ", ".join(f"{k} {getattr(config, k)}" for k in shape)
            log(
                f"init {init.path}: depth {shape['depth']}, vocab_size {shape['vocab_size']} "
                f"(not {given})"
            )
        config = config.model_copy(update=shape)
    if main:
        out.mkdir(parents=True, exist_ok=True)
        record = dataset_record(data)
        if init is not None:
            record = lineage_record(data, record, init)
        if trained_on_other_data(out, record):
            start = f" starting from {init.path}" if init is not None else ""
            raise ConfigError(
                f"{out} holds a tokenizer or checkpoint trained on other data than "
                f"{data}{start}: train into a new folder, or delete it"
            )
        if record:
            write_atomic(out / "dataset.json", json.dumps(record, indent=1))
        if init is not None:
            theirs, ours = init.path / "tokenizer" / FILE, out / "tokenizer" / FILE
            if not ours.exists():
                _copy_tokenizer(init.path, out)
            elif ours.read_bytes() != theirs.read_bytes():  # ids would not match the weights
                raise ConfigError(
                    f"{out} holds another tokenizer than --init {init.path}'s: "
                    "train into a new folder, or delete it"
                )
    torch.manual_seed(config.seed)
    frame = sample_split(data, "train", config.max_examples, config.seed, _columns(data))
    # before the tokenizer is fitted, so it spells made-up names as it will unseen ones
    frame = rename_tickers(frame, config.rename_tickers, config.seed)
    tokenizer = None
    if main and not (out / "tokenizer" / FILE).exists():
        sample = frame.sample(min(len(frame), 20_000), random_state=config.seed)
        texts = pd.concat([sample["system"], sample["user"], sample["assistant"]])
        tokenizer = ChatTokenizer.train(texts, config.vocab_size)
        tokenizer.save(out / "tokenizer")
    if world > 1:
        dist.barrier()  # the others load the tokenizer rank 0 has just written
    if tokenizer is None:
        tokenizer = ChatTokenizer.load(out / "tokenizer")
    train_rows = Batches(frame, tokenizer, config)
    if not len(train_rows):
        raise ConfigError(f"no training conversation fits seq_len {config.seq_len} tokens")
    held_out = sample_split(
        data, "validation", 2 * config.batch_size * config.eval_batches, config.seed
    )
    valid = Batches(held_out, tokenizer, config)
    model_config = GPTConfig(tokenizer.vocab_size, config.depth, config.seq_len)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda" and world > 1:
        device = f"cuda:{local}"  # one GPU per process
    model = GPT(model_config).to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device != "cpu")
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=config.weight_decay
    )
    step = 0
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():  # every rank loads it
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        if state["train_config"] != _settings(config):
            raise ConfigError(f"{checkpoint} was written with other settings; use a new --out")
        if state.get("world_size", 1) != world:  # another world size draws other batches
            raise ConfigError(
                f"{checkpoint} was written by {state.get('world_size', 1)} process(es), not "
                f"{world}: resume with the same --nproc_per_node or use a new --out"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])  # follows the parameters' device
        step = state["step"]
        log(f"resuming from step {step}")
    elif init is not None:  # never over a checkpoint: a resume continues its own weights
        model.load_state_dict(init.weights)
        log(f"starting from {init.path}'s weights (a fresh optimizer)")
    del init  # its weights: a second copy of the model's, not needed any more
    # DDP averages gradients across ranks; `model` stays the unwrapped GPT for checkpoints
    # and validation (its forward has no collective, so rank 0 may run it alone)
    net = model
    if world > 1:
        ids = [local] if device != "cpu" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    log(
        f"model: depth {config.depth}, width {model_config.width}, {model.num_params():,} "
        f"weights; {len(train_rows):,} training sequences "
        f"({train_rows.dropped} longer than {config.seq_len} tokens left out); "
        f"{config.batch_size * config.grad_accum * world} sequences a step "
        f"(batch {config.batch_size} x grad_accum {config.grad_accum} x {world} process(es))"
    )
    metrics = (out / "metrics.jsonl").open("a") if main else None
    mlflow = _mlflow(config) if main and importlib.util.find_spec("mlflow") else None
    last = {}
    while step < config.steps:
        started = time.perf_counter()
        lr = lr_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        net.train()
        loss_sum, tokens = 0.0, 0
        for micro in range(config.grad_accum):
            index = rank * config.grad_accum + micro
            x, y, m = train_rows.batch(step, index).to(device)
            # DDP all-reduces gradients on the last micro-step only
            sync = world == 1 or micro == config.grad_accum - 1
            with contextlib.nullcontext() if sync else net.no_sync():
                with autocast:
                    loss = net(x, y, m) / config.grad_accum
                loss.backward()
            loss_sum += loss.item()
            tokens += int(x.numel())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        if world > 1:  # the logged loss is the mean over ranks, tokens the total
            totals = torch.tensor([loss_sum, tokens], dtype=torch.float64, device=device)
            dist.all_reduce(totals)
            loss_sum, tokens = totals[0].item() / world, int(totals[1].item())
        last = {
            "step": step,
            "loss": round(loss_sum, 5),
            "lr": lr,
            "tokens_per_s": round(tokens / (time.perf_counter() - started)),
        }
        if not main:  # no collective below: the other ranks go on to the next step
            continue
        if step % config.eval_every == 0 or step == config.steps:
            with autocast:
                last["val_loss"] = round(evaluate_loss(model, valid, config.eval_batches), 5)
            log(json.dumps(last))
        metrics.write(json.dumps(last) + "\n")
        metrics.flush()
        if mlflow is not None:
            mlflow.log_metrics({k: v for k, v in last.items() if k != "step"}, step=step)
        if step % config.save_every == 0 or step == config.steps:
            _save(
                checkpoint,
                {
                    "model": {k: v.cpu() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "train_config": _settings(config),
                    "world_size": world,
                },
            )
    if main:
        weights = {k: v.cpu() for k, v in model.state_dict().items()}
        write_atomic(out / "train_config.json", config.model_dump_json(indent=1))
        # the weights last: a folder with model.pt is complete, whenever a kill came
        _save(out / "model.pt", {"model": weights, "config": model_config.to_dict()})
    return last


@torch.no_grad()
def evaluate_loss(model: GPT, batches: Batches, n: int) -> float:
    """Mean assistant-token loss over the first n validation batches (fixed, not sampled)."""
    model.eval()
    size = batches.config.batch_size
    if not len(batches):
        return float("nan")
    device = next(model.parameters()).device
    losses = [
        model(*batches.collate(batches.rows[i * size : (i + 1) * size]).to(device)).item()
        for i in range(min(n, max(1, len(batches) // size)))
    ]
    return float(np.mean(losses))


def _mlflow(config: TrainConfig):
    import mlflow

    mlflow.start_run()
    mlflow.log_params(config.model_dump())
    return mlflow
