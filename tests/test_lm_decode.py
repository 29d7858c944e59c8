"""Grammar-constrained decoding of our GPT: always a valid Signal, batched == one at a time,
and a trained model's answer comes back unchanged."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch
import xgrammar as xgr
from lm_corpus import SYSTEM, answer, user

from synthpm.lm import decode
from synthpm.lm.citations import MAX_LITERAL, literals
from synthpm.lm.decode import DecodeError, SignalDecoder, conviction_tokens, cut, parse_signal
from synthpm.lm.grammar import signal_schema
from synthpm.lm.model import GPT, GPTConfig
from synthpm.lm.tokenizer import ChatTokenizer
from synthpm.signals import Signal, signal_json

KEYS = list(Signal.model_fields)


@pytest.fixture(scope="module")
def tokenizer() -> ChatTokenizer:
    rng = random.Random(0)
    texts = [SYSTEM] + [t for _ in range(300) for t in (user(rng), answer(rng))]
    return ChatTokenizer.train(texts, vocab_size=512)


@pytest.fixture(scope="module")
def decoder(tokenizer: ChatTokenizer) -> SignalDecoder:
    torch.manual_seed(0)
    net = GPT(GPTConfig(tokenizer.vocab_size, depth=1, seq_len=2048))
    with torch.no_grad():  # away from the near-uniform start, so the prompt matters
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return SignalDecoder(net, tokenizer)


@pytest.fixture(scope="module")
def prompts(tokenizer: ChatTokenizer) -> list[list[int]]:
    rng = random.Random(1)
    return [tokenizer.render(SYSTEM, user(rng)).ids for _ in range(200)]


def keys_in_order(text: bytes) -> list[str]:
    return [k for k, _ in json.loads(text, object_pairs_hook=lambda pairs: pairs)]


def compact(text: bytes) -> bool:
    return not re.search(rb"\s", re.sub(rb'"[^"]*"', b'""', text))  # no space outside strings


def test_schema_follows_the_signal_fields():
    assert list(signal_schema()["properties"]) == KEYS == signal_schema()["required"]
    assert list(signal_schema(full=False)["properties"]) == KEYS[:3]


def test_an_untrained_model_still_writes_valid_compact_signals(decoder, tokenizer, prompts):
    texts = decoder.decode_text(prompts)
    signals = [parse_signal(text) for text in texts]
    assert len(signals) == len(prompts) == 200
    for text, signal, prompt in zip(texts, signals, prompts, strict=True):
        assert keys_in_order(text) == KEYS and compact(text)
        assert Signal.model_validate_json(text).decision == signal.decision
        assert signal.conviction == round(signal.conviction, 2)
        # even a random model cites only the prompt's numbers, and strings keep their limit
        stated = set(literals(tokenizer.decode(prompt[prompt.index(tokenizer.user_id) :])))
        for string, limit in [(signal.reasoning, 300)] + [
            (item, 80) for item in signal.risk_factors + signal.catalysts + signal.exit_triggers
        ]:
            assert set(literals(string)) <= stated
            assert len(string) <= limit + MAX_LITERAL + max(map(len, decoder.grammar.bytes))


def test_signal_only_mode_stops_after_the_hold(decoder, prompts):
    full = decoder.decode(prompts)
    fast = decoder.decode(prompts, mode="signal")
    texts = decoder.decode_text(prompts, mode="signal")
    for f, s, text in zip(full, fast, texts, strict=True):
        assert (s.decision, s.conviction, s.hold_duration_days) == (
            f.decision,
            f.conviction,
            f.hold_duration_days,
        )
        assert (s.reasoning, s.risk_factors, s.catalysts, s.exit_triggers) == ("", [], [], [])
        assert b"reasoning" not in text and compact(text)


def test_offering_the_best_tokens_first_equals_masking_first(decoder, prompts, monkeypatch):
    some = prompts[60:72]
    fast = decoder.decode_text(some, batch_size=6)

    def mask_first(matcher, logits, bitmask, j, best):
        matcher.fill_next_token_bitmask(bitmask, j)
        xgr.apply_token_bitmask_inplace(logits, bitmask, indices=[j])
        token = int(logits[j].argmax())
        assert matcher.accept_token(token)
        return token

    monkeypatch.setattr(decode, "choose", mask_first)
    assert decoder.decode_text(some, batch_size=6) == fast
    assert decoder.decode_text(some, "signal", 6) == [cut(t, True) for t in fast]


def test_batched_equals_one_at_a_time(decoder, prompts):
    some = prompts[:24]  # lengths differ, so the batches are padded
    assert len({len(p) for p in some}) > 5
    batched = decoder.decode_text(some, batch_size=8)
    alone = [decoder.decode_text([p], batch_size=1)[0] for p in some]
    assert batched == alone
    assert decoder.decode_text(some, "signal", 16) == [
        decoder.decode_text([p], "signal")[0] for p in some
    ]


def test_a_shared_prefix_is_computed_once_and_changes_nothing(decoder, tokenizer, prompts):
    fresh = SignalDecoder(decoder.model, tokenizer)
    some = prompts[30:42]
    alone = [fresh.decode_text([p])[0] for p in some]  # nothing kept yet: whole prompts
    assert not fresh.adapter.prefixes
    assert fresh.decode_text(some, batch_size=6) == alone
    system = tokenizer.render(SYSTEM, "x").ids[: len(tokenizer.encode(SYSTEM))]
    kept = fresh.adapter.prefixes
    assert kept and all(list(k[: len(system)]) == system for k in kept)
    assert [fresh.decode_text([p])[0] for p in some] == alone  # from the kept prefix


def test_conviction_tokens_are_valued_at_the_convictions_they_begin(decoder):
    ids, values = conviction_tokens(decoder.grammar.bytes)
    value = {decoder.grammar.bytes[i]: float(v) for i, v in zip(ids, values, strict=True)}
    assert value[b"1"] == 1.0 and value[b"0"] == pytest.approx(0.495)  # 1.00; 0.00 .. 0.99
    assert b"2" not in value and b"." not in value
    assert conviction_tokens([b"0.58", b"0.5", b"1.0", b"1.5", b"0.581", b"x"])[0].tolist() == [
        0,
        1,
        2,
    ]
    assert conviction_tokens([b"0.58", b"0.5", b"1.0"])[1].tolist() == pytest.approx(
        [0.58, 0.545, 1.0]
    )


def test_expected_conviction_is_the_mean_under_the_model():
    """Over its decisions and convictions: sum_d P(d) x E[conviction | d], by plain forwards."""
    rng = random.Random(0)  # a vocabulary large enough to spell each opening as one token
    texts = [SYSTEM] + [t for _ in range(300) for t in (user(rng), answer(rng))]
    tokenizer = ChatTokenizer.train(texts, vocab_size=1024)
    torch.manual_seed(0)
    net = GPT(GPTConfig(tokenizer.vocab_size, depth=1, seq_len=2048))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    decoder = SignalDecoder(net, tokenizer)
    rng = random.Random(1)
    prompts = [tokenizer.render(SYSTEM, user(rng)).ids for _ in range(56)]
    ids, values = conviction_tokens(decoder.grammar.bytes)
    lead = decoder.grammar.lead.ids
    assert decoder._opening_ids is not None  # one token per decision's opening
    differs = 0
    for prompt in prompts[50:56]:
        ((text, expected),) = decoder.decode_scored([prompt])
        with torch.no_grad():
            start = net(torch.tensor([prompt + lead]))[0, -1].softmax(-1)
            p_decision = start[decoder._opening_ids] / start[decoder._opening_ids].sum()
            means = []
            for opening in decoder._openings:
                p = net(torch.tensor([prompt + lead + opening]))[0, -1].softmax(-1)[ids]
                means.append(float((p * values).sum() / p.sum()))
        mixed = float((p_decision * torch.tensor(means)).sum())
        assert expected == pytest.approx(mixed, abs=1e-5)
        (signal,) = decoder.decode([prompt], conviction="expected")
        assert signal.conviction == round(expected, 4)
        differs += round(expected, 2) != parse_signal(text).conviction
    assert differs  # not the number it wrote
    with pytest.raises(ValueError, match="conviction"):
        decoder.decode(prompts[:1], conviction="mean")


def scored_and_calls(decoder, prompts, mode, openings=True):
    """decode_scored's output, and the model calls it took (with or without the decisions'
    openings as branches of the first call)."""
    calls = []
    hook = decoder.model.register_forward_pre_hook(lambda *_: calls.append(1))
    fresh = SignalDecoder(decoder.model, decoder.tokenizer)  # nothing cached
    if not openings:
        fresh._openings, fresh._opening_ids = [], None
    try:
        return fresh.decode_scored(prompts, mode, 8), len(calls)
    finally:
        hook.remove()


@pytest.mark.parametrize("mode", ["full", "signal"])
def test_opening_branches_change_nothing_but_the_number_of_calls(decoder, prompts, mode):
    assert decoder._opening_ids is not None  # one token each (`tokenizer.OPENINGS`)
    some = prompts[100:124]
    branched, calls = scored_and_calls(decoder, some, mode)
    plain, plain_calls = scored_and_calls(decoder, some, mode, openings=False)
    # the same answers; the expectation differs by design: over every decision with the
    # branches, given the decision written without them
    assert [s.text for s in branched] == [s.text for s in plain]
    assert calls <= plain_calls


def test_a_trained_model_gives_its_answer_back(tokenizer):
    target = signal_json(
        "BUY", 0.91, 33, "Earnings beat and guidance rose.", ["Rate risk."], [], ["Miss."]
    )
    ids, mask = tokenizer.render(SYSTEM, "Ticker AAPL closed at 181.20.", target)
    torch.manual_seed(0)
    net = GPT(GPTConfig(tokenizer.vocab_size, depth=1, seq_len=256))
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    x, y, m = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]]), torch.tensor([mask[1:]])
    for _ in range(60):
        loss = net(x, y, m)
        opt.zero_grad()
        loss.backward()
        opt.step()
    prompt = tokenizer.render(SYSTEM, "Ticker AAPL closed at 181.20.").ids
    decoder = SignalDecoder(net, tokenizer)
    assert decoder.decode_text([prompt]) == [target.encode()]
    assert decoder.decode([prompt])[0] == Signal.model_validate_json(target)
    # the opening, as fed with the prompt, is what it writes: its conviction comes from that
    # branch, one call fewer
    for mode in ("full", "signal"):
        branched, calls = scored_and_calls(decoder, [prompt] * 3, mode)
        plain, plain_calls = scored_and_calls(decoder, [prompt] * 3, mode, openings=False)
        assert [s.text for s in branched] == [s.text for s in plain]
        assert calls == plain_calls - 1
        # near-certain of BUY: the expectation over decisions is about the one given BUY
        assert [s.expected for s in branched] == pytest.approx(
            [s.expected for s in plain], abs=1e-3
        )


def test_running_out_of_tokens_is_an_error(tokenizer, prompts):
    net = GPT(GPTConfig(tokenizer.vocab_size, depth=1, seq_len=2048))
    with pytest.raises(DecodeError, match="max_new_tokens=5"):
        SignalDecoder(net, tokenizer, max_new_tokens=5).decode(prompts[:2])
    with pytest.raises(ValueError, match="mode"):
        SignalDecoder(net, tokenizer).decode(prompts[:2], mode="fast")
