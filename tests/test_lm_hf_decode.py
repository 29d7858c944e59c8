"""The decoder over a transformers causal LM (`adapters.HFModel`): a tiny random local Llama."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from conftest import tiny_llama  # noqa: E402

from synthpm.data.errors import ConfigError  # noqa: E402
from synthpm.lm.adapters import HFModel  # noqa: E402
from synthpm.lm.decode import DecodeError, SignalDecoder  # noqa: E402
from synthpm.lm.lora import (  # noqa: E402
    LoraConfig,
    chat_prompt_ids,
    encode_example,
    load_adapter,
    train_adapter,
)
from synthpm.signals import Signal  # noqa: E402

SYSTEM = "You are a PM."
ANSWER = (
    '{"decision":"BUY","conviction":0.7,"hold_duration_days":30,"reasoning":"Beat.",'
    '"risk_factors":["rates"],"catalysts":["earnings"],"exit_triggers":["miss"]}'
)
# Different lengths, so left padding matters in a batch.
USERS = [
    "AAPL rose 3% on earnings.",
    "MSFT fell 2% after guidance was cut for the second quarter in a row.",
    "KO was flat.",
    "NVDA gapped up 5% on a huge beat, its fourth in a row, on record volume.",
    "TSLA.",
    "AMZN slid 1.5% as AWS growth slowed.",
    "GOOG",
    "META rallied into the close on heavy volume after the buyback news.",
]
# Short strings keep a random model's answers (which fill every string) small and fast.
LIMITS = {"max_reasoning": 20, "max_item": 10, "max_items": 2}
CONTROL = [b"<|bos|>", b"<|system|>", b"<|user|>", b"<|assistant|>", b"<|end|>", b"<|pad|>"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # A tiny model's matmuls are microseconds: with other processes on the cores, torch's
    # intra-op threads wait on each other far longer than the work takes (25x measured).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_decode")
    texts = [f"{SYSTEM} {u} {ANSWER}" for u in USERS] * 3
    base = root / "base"
    # a padded lm_head (logits wider than the vocabulary); large weights, so answers vary
    model, tokenizer = tiny_llama(texts, base, extra_vocab=5, initializer_range=0.5)
    data = root / "data"
    (data / "train").mkdir(parents=True)
    pd.DataFrame(
        [(SYSTEM, u, ANSWER) for u in USERS], columns=["system", "user", "assistant"]
    ).to_parquet(data / "train" / "part-00000.parquet")
    prompts = [chat_prompt_ids(tokenizer, SYSTEM, u) for u in USERS]
    return root, base, data, model, tokenizer, prompts


@pytest.fixture(scope="module")
def decoder(setup):
    _, _, _, model, tokenizer, _ = setup
    return SignalDecoder(model, tokenizer, **LIMITS)


@pytest.fixture(scope="module")
def full_texts(setup, decoder):
    return decoder.decode_text(setup[-1], "full", batch_size=4)


def test_chat_prompt_ids_is_the_training_prompt(setup):
    *_, tokenizer, _ = setup
    prompt = chat_prompt_ids(tokenizer, SYSTEM, USERS[0])
    ids, mask = encode_example(tokenizer, SYSTEM, USERS[0], ANSWER, 1024)
    assert prompt == ids[: mask.index(1)]
    assert prompt[-1] == tokenizer.convert_tokens_to_ids("<|assistant|>")


def test_every_answer_of_a_random_model_parses(setup, decoder, full_texts):
    prompts = setup[-1]
    assert len(prompts) == len(set(map(tuple, prompts))) == 8
    assert decoder.adapter.vocab == len(setup[4]) + 5
    signals = [Signal.model_validate_json(t) for t in full_texts]
    assert len(set(full_texts)) > 1  # the answer depends on the prompt
    assert all(len(s.reasoning) <= LIMITS["max_reasoning"] for s in signals)
    assert all(not any(c in t for c in CONTROL) for t in full_texts)
    for mode in ("full", "signal"):
        decoded = decoder.decode(prompts, mode, batch_size=4)
        assert len(decoded) == len(prompts) and all(isinstance(s, Signal) for s in decoded)


def test_batched_decoding_equals_one_at_a_time(setup, decoder, full_texts):
    prompts = setup[-1]
    alone = [decoder.decode_text([p], "full")[0] for p in prompts]
    assert full_texts == alone
    assert decoder.decode_text(prompts, "full", batch_size=8) == alone
    signal = decoder.decode_text(prompts, "signal", batch_size=4)
    assert signal == [decoder.decode_text([p], "signal")[0] for p in prompts]


def test_signal_mode_agrees_with_full_mode(setup, decoder, full_texts):
    full = [Signal.model_validate_json(t) for t in full_texts]
    texts = decoder.decode_text(setup[-1], "signal", batch_size=4)
    signals = decoder.decode(setup[-1], "signal", batch_size=4)
    for text, whole in zip(texts, full_texts, strict=True):
        assert whole.startswith(text) and text.endswith(b",")  # stopped after the hold
    for f, s in zip(full, signals, strict=True):
        assert (s.decision, s.conviction, s.hold_duration_days) == (
            f.decision,
            round(f.conviction, 2),
            f.hold_duration_days,
        )
        assert s.reasoning == "" and s.risk_factors == s.catalysts == s.exit_triggers == []


def test_the_expected_conviction_is_read_given_the_decision_written(setup, decoder):
    """No openings are fed as branches here: the expectation is taken where the conviction's
    first token is chosen, and changes nothing else."""
    prompts = setup[-1]
    read = decoder.decode(prompts, "signal", batch_size=4)
    expected = decoder.decode(prompts, "signal", batch_size=4, conviction="expected")
    assert [s.decision for s in expected] == [s.decision for s in read]
    assert all(0 <= s.conviction <= 1 for s in expected)
    assert [s.conviction for s in expected] != [s.conviction for s in read]


def test_control_tokens_never_enter_the_text(setup):
    _, _, _, model, tokenizer, prompts = setup
    special = torch.tensor(tokenizer.all_special_ids)

    def favour_control_tokens(module, inputs, output):
        output[..., special] += 100.0  # the model's first choice everywhere
        return output

    hook = model.get_output_embeddings().register_forward_hook(favour_control_tokens)
    try:
        texts = SignalDecoder(model, tokenizer, **LIMITS).decode_text(prompts[:3], "full")
    finally:
        hook.remove()
    for text in texts:
        Signal.model_validate_json(text)
        assert not any(c in text for c in CONTROL)


def test_too_few_new_tokens_or_a_bad_mode_fails(setup):
    _, _, _, model, tokenizer, prompts = setup
    short = SignalDecoder(model, tokenizer, max_new_tokens=10, **LIMITS)
    with pytest.raises(DecodeError, match="max_new_tokens=10"):
        short.decode(prompts[:2], "full")
    with pytest.raises(ValueError, match="mode"):
        short.decode(prompts[:1], "json")


def test_load_adapter_round_trip(setup):
    from peft import PeftModel

    root, base, data, _, _, _ = setup
    out = root / "adapter"
    trained, _ = train_adapter(base, data, out, LoraConfig(steps=1, lr=1e-2, max_len=256), log=str)
    model, tokenizer = load_adapter(out)
    assert isinstance(model, PeftModel) and not model.training
    prompts = [chat_prompt_ids(tokenizer, SYSTEM, u) for u in USERS[:3]]
    ids = torch.tensor([prompts[0]])
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, trained(input_ids=ids).logits)
    signals = SignalDecoder(model, tokenizer, **LIMITS).decode(prompts, "full", batch_size=2)
    assert len(signals) == 3 and all(isinstance(s, Signal) for s in signals)

    plain, _ = load_adapter(base)  # a plain model folder loads as is
    assert isinstance(plain, transformers.LlamaForCausalLM)


def test_load_adapter_names_what_is_missing(setup, tmp_path):
    with pytest.raises(ConfigError, match="no LoRA adapter or model"):
        load_adapter(tmp_path / "nowhere")
    moved = tmp_path / "moved"
    moved.mkdir()
    (moved / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(tmp_path / "gone")})
    )
    with pytest.raises(ConfigError, match="base model"):
        load_adapter(moved)


def test_the_agent_loads_a_transformers_folder(setup):
    from synthpm.agent import PortfolioAgent
    from synthpm.context import Context

    _, base, _, _, tokenizer, _ = setup
    agent = PortfolioAgent.load(base)
    assert isinstance(agent.decoder.adapter, HFModel)
    assert agent.options == {"conviction": "read"}  # as written: no openings fed as branches
    context = Context(ticker="T1", date="2021-03-05", sector="Tech")
    ids = agent.prompt_ids(context)
    assert tokenizer.decode(ids).endswith("<|assistant|>") and "COMPANY: T1" in tokenizer.decode(
        ids
    )
    signal = agent.analyze(context, mode="signal")
    assert signal.decision in ("BUY", "SELL", "SKIP") and signal.reasoning == ""
