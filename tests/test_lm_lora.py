"""LoRA fine-tuning on a tiny local Llama (no GGUF, no network)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from conftest import tiny_llama  # noqa: E402

from synthpm.data.errors import ConfigError  # noqa: E402
from synthpm.lm.lora import LoraConfig, convert_gguf, encode_example, train_adapter  # noqa: E402

ROWS = [
    ("You are a PM.", "AAPL rose 3% on earnings.", '{"decision": "BUY"}', "BUY"),
    ("You are a PM.", "MSFT fell 2% after guidance.", '{"decision": "SELL"}', "SELL"),
    ("You are a PM.", "KO was flat.", '{"decision": "SKIP"}', "SKIP"),
    ("You are a PM.", "NVDA gapped up 5%.", '{"decision": "BUY"}', "BUY"),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    texts = [f"{s} {u} {a}" for s, u, a, _ in ROWS] * 5
    model_dir = root / "base"
    _, tokenizer = tiny_llama(texts, model_dir)
    data = root / "data"
    (data / "train").mkdir(parents=True)
    pd.DataFrame(ROWS, columns=["system", "user", "assistant", "decision"]).to_parquet(
        data / "train" / "part-00000.parquet"
    )
    return root, model_dir, data, tokenizer


def test_loss_mask_covers_only_the_assistant_turn(setup):
    _, _, _, tokenizer = setup
    system, user, answer, _ = ROWS[0]
    ids, mask = encode_example(tokenizer, system, user, answer, 1024)
    assert len(ids) == len(mask) and set(mask) == {0, 1}
    start = mask.index(1)
    assert mask == [0] * start + [1] * (len(ids) - start)  # one contiguous tail
    assert ids[start - 1] == tokenizer.convert_tokens_to_ids("<|assistant|>")
    assert tokenizer.decode(ids[start:], skip_special_tokens=True) == answer
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<|end|>")  # learns to stop
    prompt = tokenizer.decode(ids[:start], skip_special_tokens=True)
    assert system in prompt and user in prompt and answer not in prompt
    short_ids, short_mask = encode_example(tokenizer, system, user, answer, 5)
    assert short_ids == ids[:5] and short_mask == mask[:5]


def test_lora_train_saves_an_adapter_that_reloads_identically(setup):
    from peft import PeftModel

    root, model_dir, data, _ = setup
    out = root / "adapter"
    lines = []
    model, figures = train_adapter(
        model_dir, data, out, LoraConfig(steps=3, lr=1e-2, max_len=256), log=lines.append
    )
    assert len(lines) == 3 and math.isfinite(figures["final_loss"])
    assert figures["steps"] == 3 and figures["examples"] == len(ROWS)
    # only LoRA A/B of q_proj and v_proj: 2 layers x 2 modules x r*(in + out)
    r, hidden, kv = 8, 64, 64 // 4 * 2
    assert figures["trainable_params"] == 2 * (r * (hidden + hidden) + r * (hidden + kv))
    named = [n for n, p in model.named_parameters() if p.requires_grad]
    assert named and all("lora_" in n for n in named)
    logged = json.loads((out / "train_log.json").read_text())
    assert [e["step"] for e in logged["log"]] == [1, 2, 3]
    assert all(math.isfinite(e["loss"]) and e["tokens_per_s"] > 0 for e in logged["log"])

    base = transformers.AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    loaded = PeftModel.from_pretrained(base, out, local_files_only=True).eval()
    ids = torch.tensor([[1, 5, 9, 12, 40, 7]])
    with torch.no_grad():
        expected = model.eval()(input_ids=ids).logits
        got = loaded(input_ids=ids).logits
        plain = transformers.AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)(
            input_ids=ids
        ).logits
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(plain, expected)  # training changed the model


def test_unknown_target_modules_is_a_config_error(setup):
    root, model_dir, data, _ = setup
    with pytest.raises(ConfigError, match="target_modules"):
        train_adapter(
            model_dir, data, root / "x", LoraConfig(steps=1, target_modules=("nope",)), log=str
        )


def test_missing_model_or_data_is_a_config_error(setup, tmp_path):
    _, model_dir, _, _ = setup
    with pytest.raises(ConfigError, match="config.json"):
        train_adapter(tmp_path / "none", tmp_path, tmp_path / "o", LoraConfig(steps=1), log=str)
    with pytest.raises(ConfigError, match="no train examples"):
        train_adapter(model_dir, tmp_path, tmp_path / "o", LoraConfig(steps=1), log=str)


def test_convert_gguf_names_a_missing_file(tmp_path):
    missing = tmp_path / "SmolLM2.gguf"
    with pytest.raises(ConfigError, match="SmolLM2.gguf"):
        convert_gguf(missing, tmp_path / "out")
