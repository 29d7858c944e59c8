"""The transformer: sizes from one knob, causal, a KV cache that matches the full pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from synthpm.lm.model import GPT, GPTConfig, KVCache


def model(depth: int = 2, vocab: int = 97, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    net = GPT(GPTConfig(vocab_size=vocab, depth=depth, seq_len=64))
    with torch.no_grad():  # away from the identity start, so the blocks matter in the tests
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return net


def test_one_knob_sizes_the_model():
    small, large = GPTConfig(100, depth=2), GPTConfig(100, depth=4)
    assert (small.width, small.heads) == (128, 2) and (large.width, large.heads) == (256, 4)
    assert GPT(large).num_params() > 3 * GPT(small).num_params()


def test_causal_and_cache_matches_the_full_pass():
    net = model().eval()
    ids = torch.randint(0, 97, (2, 20))
    full = net(ids)
    changed = ids.clone()
    changed[:, 15:] = (changed[:, 15:] + 1) % 97
    torch.testing.assert_close(net(changed)[:, :15], full[:, :15])  # no peeking ahead
    cache = KVCache(net.config, 2, 20)
    pieces = [net(ids[:, :12], cache=cache)] + [
        net(ids[:, i : i + 1], cache=cache) for i in range(12, 20)
    ]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-4)


def test_masked_loss_counts_only_the_masked_positions():
    net = model()
    ids, targets = torch.randint(0, 97, (2, 10)), torch.randint(0, 97, (2, 10))
    mask = torch.zeros(2, 10)
    mask[0, 3:6] = 1
    logits = net(ids)
    expected = F.cross_entropy(logits[0, 3:6], targets[0, 3:6])
    torch.testing.assert_close(net(ids, targets, mask), expected)


def test_it_learns_and_generates_greedily():
    torch.manual_seed(0)
    net = GPT(GPTConfig(vocab_size=20, depth=1, seq_len=32))
    seq = torch.tensor([[1, 5, 7, 9, 11, 13, 15, 17, 2]])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss = net(seq[:, :-1], seq[:, 1:])
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    assert net.eval().generate([1, 5], max_new_tokens=10, stop=2) == [7, 9, 11, 13, 15, 17, 2]


def test_too_long_a_sequence_is_refused():
    with pytest.raises(ValueError, match="exceeds seq_len 64"):
        model()(torch.zeros(1, 65, dtype=torch.long))


def test_a_key_mask_without_a_cache_is_refused():
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="key_mask needs a cache"):
        model()(ids, key_mask=torch.ones(2, 5, dtype=torch.bool))


def test_last_rows_and_branches_with_a_per_query_mask_match_separate_passes():
    """`last` computes the final rows only; a (B, T, S) key mask lets two branches follow the
    same tokens in one call, each computing what it would alone."""
    net = model().eval()
    ids = torch.randint(0, 97, (1, 12))
    cache = KVCache(net.config, 1, 16)
    torch.testing.assert_close(net(ids, cache=cache, last=3), net(ids)[:, -3:])
    a, b = torch.tensor([[5, 6]]), torch.tensor([[7]])
    alone = [net(torch.cat((ids, branch), 1))[:, -1] for branch in (a, b)]
    cache = KVCache(net.config, 1, 16)
    net(ids, cache=cache)
    seen = torch.ones(1, 3, 16, dtype=torch.bool)
    seen[0, 2, 12:14] = False  # the token of branch b does not see branch a
    out = net(
        torch.cat((a, b), 1),
        cache=cache,
        key_mask=seen,
        positions=torch.tensor([[12, 13, 12]]),  # both branches start after the tokens
        last=2,
    )
    torch.testing.assert_close(out[:, 0], alone[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out[:, 1], alone[1], atol=1e-5, rtol=1e-4)
