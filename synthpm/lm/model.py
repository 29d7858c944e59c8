"""A small decoder-only transformer, sized by one knob: `depth`.

Written out (rather than built from transformers' Llama classes) because it is short, fast
on CPU, and every choice is visible; the choices follow nanochat's GPT:
- width = 64 x depth and heads of 64 dims, so one integer scales the model (depth 2 ≈ 0.5M
  weights plus embeddings, the CPU default; depth 12 ≈ 85M for a GPU);
- rotary position embeddings (no learned positions), RMSNorm without weights, QK-norm (keeps
  attention logits bounded at any depth), ReLU² MLP, untied input and output embeddings,
  no biases, and a tanh soft cap on the logits;
- output projections start at zero, so each block starts as the identity;
- a KV cache for decoding: the prompt is one forward pass, each new token one more;
- inference in bfloat16 where the CPU multiplies it natively (`inference_dtype`): weights
  are trained and stored in float32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

HEAD_DIM = 64
SOFTCAP = 15.0


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    depth: int = 2
    seq_len: int = 1024  # the longest sequence rotary tables are built for

    @property
    def width(self) -> int:
        return HEAD_DIM * self.depth

    @property
    def heads(self) -> int:
        return self.width // HEAD_DIM

    def to_dict(self) -> dict:
        return asdict(self)


def _norm(x: torch.Tensor) -> torch.Tensor:
    """RMSNorm, as F.rms_norm, from a vector norm in x's dtype (bf16 reductions accumulate in
    float32): faster in bf16 than a float32 norm or F.rms_norm (benchmarks/results/
    design_choices.md). In float32 (training) nothing changes."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True).float()
    return x * torch.rsqrt(norm.square() / x.size(-1) + torch.finfo(x.dtype).eps).to(x.dtype)


def _softcap(logits: torch.Tensor) -> torch.Tensor:
    """SOFTCAP * tanh(logits / SOFTCAP), spelled as 2 SOFTCAP sigmoid(2 logits / SOFTCAP) -
    SOFTCAP (the same function; they differ by < 4e-6 in float32), because torch's float32
    tanh is slow on CPU (benchmarks/results/design_choices.md)."""
    return torch.sigmoid(logits * (2 / SOFTCAP)) * (2 * SOFTCAP) - SOFTCAP


class _Rotary(NamedTuple):
    """Rotary tables: the cosine and sine of each position's angles, (T, D/2) each."""

    cos: torch.Tensor
    sin: torch.Tensor


def _rotary(seq_len: int, base: float = 10_000.0) -> _Rotary:
    freqs = 1.0 / base ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), freqs)
    return _Rotary(angles.cos(), angles.sin())


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    a, b = x[..., : HEAD_DIM // 2], x[..., HEAD_DIM // 2 :]
    return torch.cat((a * cos + b * sin, b * cos - a * sin), dim=-1)


def _attend(q: torch.Tensor, k_t: torch.Tensor, v: torch.Tensor, bias: torch.Tensor):
    """Attention with an additive mask (0 or -inf) and transposed keys (`KVCache`), written
    out because at this size on CPU three plain products beat PyTorch's SDPA kernel for
    decoding (benchmarks/results/design_choices.md). Training keeps SDPA (causal, fused
    backward)."""
    scores = (q * HEAD_DIM**-0.5) @ k_t  # scaling q: a smaller tensor than the scores
    return scores.add_(bias).softmax(-1) @ v


def inference_dtype() -> torch.dtype:
    """bfloat16 on a GPU or a CPU with native bf16 dot products (AVX512-BF16 or AMX), else
    float32: several times faster there, and the demo model writes the same signals in both
    (benchmarks/results/design_choices.md)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu, private
    native = any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)
    return torch.bfloat16 if torch.cuda.is_available() or native else torch.float32


class LayerKV(NamedTuple):
    """One layer's whole cache buffers: keys transposed, (B, H, D, L), and values (B, H, L, D)."""

    keys_t: torch.Tensor
    values: torch.Tensor


class KVCache:
    """Keys and values of every layer for a batch, filled as decoding advances.

    Keys are kept transposed, (D, L) per head, so a step's scores are a plain product of
    contiguous matrices, queries by keys, over all L slots (`update`), with no copy of a
    slice. Callers keep L close to what they fill."""

    def __init__(self, config: GPTConfig, batch: int, length: int, dtype=torch.float32):
        layers, heads = config.depth, config.heads
        self.k = torch.zeros(layers, batch, heads, HEAD_DIM, length, dtype=dtype)
        self.v = torch.zeros(layers, batch, heads, length, HEAD_DIM, dtype=dtype)
        self.pos = 0

    @property
    def length(self) -> int:
        return self.v.size(3)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> LayerKV:
        """Store (B, H, T, D) keys and values at `pos`; return the layer's whole buffers,
        keys (B, H, D, L) and values (B, H, L, D), slots not yet filled included (the
        attention mask hides them): a batched matrix product copies a sliced operand
        first, which cost more than the step's own products (measured)."""
        end = self.pos + k.size(2)
        self.k[layer, ..., self.pos : end] = k.transpose(-1, -2)
        self.v[layer, :, :, self.pos : end] = v
        return LayerKV(self.k[layer], self.v[layer])

    def start_from(self, prefix: KVCache) -> None:
        """Every row begins with the filled slots of `prefix`, a one-row cache."""
        n = self.pos = prefix.pos
        self.k[..., :n], self.v[:, :, :, :n] = prefix.k[..., :n], prefix.v[:, :, :, :n]

    def grow(self, length: int) -> None:
        """Room for `length` slots, the filled ones kept."""
        have = self.length
        self.k = F.pad(self.k, (0, length - have))
        self.v = F.pad(self.v, (0, 0, 0, length - have))

    def keep(self, rows: torch.Tensor) -> None:
        """Only these rows, in this order."""
        self.k, self.v = self.k[:, rows], self.v[:, rows]


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        w = config.width
        self.layer, self.heads = layer, config.heads
        self.qkv = nn.Linear(w, 3 * w, bias=False)
        self.proj = nn.Linear(w, w, bias=False)
        self.up = nn.Linear(w, 4 * w, bias=False)
        self.down = nn.Linear(4 * w, w, bias=False)

    def forward(
        self,
        x,
        cos,
        sin,
        cache: KVCache | None,
        bias: torch.Tensor | None = None,
        last: int | None = None,
    ):
        """With `last` (the last block of a decoding call), keys and values are stored for
        every new token but the rest runs for the last `last` ones only: nothing reads the
        other positions' outputs, and that rest is most of a block's work (`GPT.forward`)."""
        b, t, w = x.shape
        qkv = self.qkv(_norm(x)).view(b, t, 3, self.heads, HEAD_DIM)
        # QK-norm before the rotation, which keeps norms: the same result in one norm and one
        # rotation for q and k together, in the projection's (B, T, ., H, D) layout (no copy).
        q, k = _rotate(_norm(qkv[:, :, :2]), cos, sin).permute(2, 0, 3, 1, 4).unbind(0)
        v = qkv[:, :, 2].transpose(1, 2)  # (B, H, T, D)
        if cache is None:  # training, or a whole sequence at once
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            k_t, v = cache.update(self.layer, k, v)
            if last is not None:
                q, bias, x = q[:, :, -last:], bias[..., -last:, :], x[:, -last:]
                t = x.size(1)
            y = _attend(q, k_t, v, bias)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, w))
        hidden = F.relu(self.up(_norm(x)), inplace=True)  # in place: half the time
        return x + self.down(hidden * hidden)  # ReLU²; a product is cheaper than pow in bf16


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.width)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.depth))
        self.head = nn.Linear(config.width, config.vocab_size, bias=False)
        cos, sin = _rotary(config.seq_len)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        nn.init.normal_(self.embed.weight, std=1.0)
        nn.init.normal_(self.head.weight, std=0.001)
        for block in self.blocks:
            bound = 3**0.5 * self.config.width**-0.5  # uniform with std 1/sqrt(width)
            for linear in (block.qkv, block.up):
                nn.init.uniform_(linear.weight, -bound, bound)
            nn.init.zeros_(block.proj.weight)  # each block starts as the identity
            nn.init.zeros_(block.down.weight)

    def cover_positions(self, n: int) -> None:
        """Rotary tables for n positions when decoding runs past seq_len (a long answer to a
        long prompt): the grammar still bounds the output, though the model never trained
        that far."""
        if n > self.cos.size(0):
            cos, sin = _rotary(n)
            self.cos, self.sin = cos.to(self.cos.device), sin.to(self.sin.device)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        key_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
        last: int | None = None,
    ):
        """Logits (B, T, V); with `targets`, the mean cross-entropy (over the positions where
        `loss_mask` is nonzero, when given; its values weigh the tokens).

        With a cache, attention runs over all its S slots (`KVCache.update`). For padded
        batches (the batched decoder, with a cache): `key_mask` (B, S) is True at the real
        tokens of the slots, so pads are never attended to, or (B, T, S) per new token (the
        decoder's guessed branches see the tokens before them and their own only); `positions`
        (B, T) are each row's rotary positions (its count of real tokens before), so a padded
        row computes what it would alone. `last` computes logits at the last `last` slots
        only: decoding needs no more, and the head is a large share of a small model's work."""
        start = cache.pos if cache is not None else 0
        t = idx.size(1)
        end = start + t if positions is None else int(positions.max()) + 1
        if end > self.cos.size(0):
            raise ValueError(f"sequence of {end} tokens exceeds seq_len {self.cos.size(0)}")
        if positions is None:
            cos, sin = self.cos[None, start : start + t], self.sin[None, start : start + t]
        else:
            cos, sin = self.cos[positions], self.sin[positions]
        cos, sin = cos[:, :, None, None], sin[:, :, None, None]  # (B or 1, T, 1, 1, D/2)
        x = _norm(self.embed(idx))
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)  # float32 tables, bf16 inference
        bias = None  # without a cache: plain causal attention over x alone
        if key_mask is not None and cache is None:
            raise ValueError("key_mask needs a cache: it marks the cache's slots")
        if cache is not None:
            keys = torch.arange(cache.length, device=idx.device)[None, :]
            queries = start + torch.arange(t, device=idx.device)[:, None]
            visible = keys <= queries  # (T, S): new token i sees the cache and itself
            if key_mask is not None:  # (B, 1, T, S): and no pads
                # A pad query sees itself only: a softmax with no term would give NaN, which
                # the next layer would store as a (masked, but NaN * 0 = NaN) value.
                per_query = key_mask if key_mask.dim() == 3 else key_mask[:, None, :]
                visible = (visible & per_query[:, None]) | (keys == queries)
            zero = torch.zeros((), dtype=x.dtype, device=x.device)
            bias = torch.where(visible, zero, -torch.inf)
        # With a cache and `last`, the last block runs its attention and MLP for the last
        # tokens alone (`Block.forward`): a prefill needs only the last rows' logits.
        *inner, final = self.blocks
        for block in inner:
            x = block(x, cos, sin, cache, bias)
        x = final(x, cos, sin, cache, bias, last=last if cache is not None else None)
        if cache is not None:
            cache.pos += t
        if last is not None:
            x = x[:, -last:]
        if targets is not None and loss_mask is not None:
            # The head only where the loss looks (the answer, a sixth of a conversation):
            # over thousands of entries it is a small model's costliest layer.
            keep = loss_mask.flatten() > 0
            x, targets = x.flatten(0, 1)[keep], targets.flatten()[keep]
        logits = _softcap(self.head(_norm(x)).float())
        if targets is None:
            return logits
        if not targets.numel():  # nothing to learn from: a zero that still backpropagates
            return logits.sum()
        if loss_mask is None:
            return F.cross_entropy(logits.flatten(0, -2), targets.flatten())
        # the mask's values weigh the tokens (`train.opening_weights`): a weighted mean
        weight = loss_mask.flatten()[keep].to(logits.dtype)
        loss = F.cross_entropy(logits, targets, reduction="none")
        return (loss * weight).sum() / weight.sum()

    @torch.no_grad()
    def generate(
        self, prompt: list[int], max_new_tokens: int, stop: int | None = None
    ) -> list[int]:
        """Greedy continuation with the KV cache (the reference for faster decoders)."""
        length = min(self.config.seq_len, len(prompt) + max_new_tokens)
        cache = KVCache(self.config, 1, length, self.embed.weight.dtype)
        logits = self(torch.tensor([prompt]), cache=cache)
        out: list[int] = []
        for _ in range(max_new_tokens):
            token = int(logits[0, -1].argmax())
            out.append(token)
            if token == stop or cache.pos >= cache.length:
                break
            logits = self(torch.tensor([[token]]), cache=cache)
        return out
