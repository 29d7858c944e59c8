"""The model behind `SignalDecoder`: a thin adapter per kind, one decoding loop for both.

- `GPTModel`: our from-scratch `GPT` and `ChatTokenizer`. A `KVCache` with a key mask per
  slot (pads are never attended to) and per-row rotary positions, so a padded row computes
  what it would alone. Prefix cache: the prompts of a batch share a prefix (always the
  system prompt; in a backtest also the date's market, book and limits, which `prompt` puts
  first); its keys and values are computed once, for one row, and copied into every row,
  which then feed only their own suffixes. Multi-row batches' prefixes are kept (LRU), so
  later batches and single prompts start from the longest kept one; `warm` seeds it. It takes
  branches (`Call.group`): tokens that see the tokens before them and themselves only.
- `HFModel`: a transformers causal LM (a PEFT/LoRA adapter or a plain converted model) and
  its tokenizer. Left padding plus an attention mask over its `DynamicCache`, and explicit
  `position_ids` (HF numbers positions by cache slot, not by real token). Its logits may be
  wider than the tokenizer (a padded lm_head): xgrammar never admits the ids past it. Its
  control tokens are banned: xgrammar reads a byte-level vocabulary's added tokens as their
  literal text, so the grammar would let `<|im_end|>` into a string.

Both serve one batch at a time: `start`, then `forward` per call, `keep` to drop rows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
import xgrammar as xgr

from synthpm.lm.model import GPT, KVCache
from synthpm.lm.tokenizer import ChatTokenizer

PREFIXES_KEPT = 8  # the system prompt, a backtest date's shared part, ...
# Forced runs a number follows: whole pieces in training where numbers are pieces of their
# own (`tokenizer`), so jump-forward feeds them whole (`grammar`).
_BEFORE_NUMBER = ('"conviction":', '"hold_duration_days":')
# End-of-turn tokens of common chat templates: stop ids besides eos, where the vocab has them.
_END_TOKENS = ("<|end|>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<end_of_turn>")


@dataclass
class Call:
    """One forward call: each row's pending tokens, left-padded, then any branches."""

    ids: torch.Tensor  # (rows, width)
    real: torch.Tensor  # (rows, width): True at tokens, False at pads
    positions: torch.Tensor  # (rows, width): rotary positions, 0 at pads
    group: torch.Tensor | None  # (width,): 0 at pending tokens and pads, k at branch k's
    last: int  # logits are needed at the last `last` columns
    ends: list[int]  # of those: the pending tokens' end, then each branch's end


class ModelAdapter(Protocol):
    """What the decoding loop needs of a model and its tokenizer."""

    vocab: int  # logits' width
    pad: int
    banned: Sequence[int]  # ids never chosen
    whole_before: tuple[str, ...]  # forced runs fed whole when they end so
    batch_size: int  # the default
    cites: bool  # the prompt's user turn can be found (cited grammars)
    branches: bool  # takes `Call.group`
    pre_tokenizer: object | None

    def tokenizer_info(self) -> xgr.TokenizerInfo: ...
    def encode(self, text: str) -> list[int]: ...
    def prompt(self, system: str, user: str) -> list[int]: ...
    def user_text(self, prompt: list[int]) -> str: ...
    def warm(self, system: str) -> None: ...
    def start(self, prompts: list[list[int]], lead: int, new_tokens: int) -> int: ...
    def forward(self, call: Call) -> torch.Tensor: ...
    def settle(self, taken: list[int]) -> None: ...
    def keep(self, rows: list[int]) -> None: ...


def adapt(model, tokenizer) -> ModelAdapter:
    """The adapter for this pair: ours, or a transformers model's."""
    if isinstance(model, GPT):
        return GPTModel(model, tokenizer)
    return HFModel(model, tokenizer)


class Prefix(NamedTuple):
    """The longest kept prefix of a prompt: its length and its one-row cache (None: none)."""

    length: int
    kv: KVCache | None


class GPTModel:
    batch_size, cites, branches = 32, True, True
    # None banned, as ever, though xgrammar would admit control tokens (bar <|end|>) in a
    # string, as for HFModel; banning them would change some untrained models' output.
    banned: tuple[int, ...] = ()
    whole_before = _BEFORE_NUMBER

    def __init__(self, model: GPT, tokenizer: ChatTokenizer) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        self.vocab, self.pad = model.config.vocab_size, tokenizer.pad_id
        self.pre_tokenizer = tokenizer.backend.pre_tokenizer
        self._dtype = model.embed.weight.dtype  # the cache's too (`inference_dtype`)
        self.prefixes: OrderedDict[tuple[int, ...], KVCache] = OrderedDict()

    def tokenizer_info(self) -> xgr.TokenizerInfo:
        hf = self.tokenizer.to_huggingface()
        end = [self.tokenizer.end_id]
        return xgr.TokenizerInfo.from_huggingface(hf, vocab_size=self.vocab, stop_token_ids=end)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def prompt(self, system: str, user: str) -> list[int]:
        return self.tokenizer.render(system, user).ids

    def user_text(self, prompt: list[int]) -> str:
        return self.tokenizer.decode(prompt[prompt.index(self.tokenizer.user_id) + 1 :])

    def warm(self, system: str) -> None:
        """Keep the system turn's keys and values: [bos, system, ..., end, user start]."""
        self.prefix(self.prompt(system, "")[:-2], store=True)

    @torch.no_grad()
    def prefix(self, prefix: list[int], store: bool) -> Prefix:
        """The longest kept prefix of `prefix`; with `store`, first extend it to all of
        `prefix` and keep that."""
        kept = [k for k in self.prefixes if len(k) <= len(prefix) and tuple(prefix[: len(k)]) == k]
        best = max(kept, key=len, default=())
        kv = self.prefixes.get(best)
        if best:
            self.prefixes.move_to_end(best)
        if not store or len(best) == len(prefix):
            return Prefix(len(best), kv)
        cache = KVCache(self.model.config, 1, len(prefix), self._dtype)
        if kv is not None:
            cache.start_from(kv)
        self.model(torch.tensor([prefix[len(best) :]]), cache=cache, last=1)
        self.prefixes[tuple(prefix)] = cache
        while len(self.prefixes) > PREFIXES_KEPT:
            self.prefixes.popitem(last=False)
        return Prefix(len(prefix), cache)

    def start(self, prompts: list[list[int]], lead: int, new_tokens: int) -> int:
        """A cache for these prompts, each followed by `lead` tokens; how many of their first
        tokens it holds already (the shared prefix)."""
        longest = max(map(len, prompts))
        self.model.cover_positions(longest + new_tokens + 1)
        # Every row feeds at least its last prompt token, whose logits start the answer.
        shared = _common_prefix(prompts, max(0, min(map(len, prompts)) - 1))
        cached, kv = self.prefix(prompts[0][:shared], store=len(prompts) > 1)
        # Room for the signal's few tokens: attention runs over every slot (`KVCache`).
        self.cache = KVCache(self.model.config, len(prompts), longest + lead + 8, self._dtype)
        self.valid = torch.zeros(len(prompts), self.cache.length, dtype=torch.bool)
        if kv is not None:  # the shared prefix: slots 0..cached-1 of every row
            self.cache.start_from(kv)
            self.valid[:, :cached] = True
        return cached

    def forward(self, call: Call) -> torch.Tensor:
        self._first, width = self.cache.pos, call.ids.size(1)
        self._group = call.group
        self._grow(self._first + width)
        self.valid[:, self._first : self._first + width] = call.real
        mask = self.valid if call.group is None else self._branch_mask(call.group)
        return self.model(
            call.ids, cache=self.cache, key_mask=mask, positions=call.positions, last=call.last
        )

    def _branch_mask(self, group: torch.Tensor) -> torch.Tensor:
        """(rows, width, slots) per-query key mask: a branch's tokens see the slots before the
        call, the pending tokens, and their own branch (causality hides later slots)."""
        width = group.size(0)
        mask = self.valid[:, None, :].repeat(1, width, 1)
        own = (group[None, :] == 0) | (group[None, :] == group[:, None])
        mask[:, :, self._first : self._first + width] &= own
        return mask

    def settle(self, taken: list[int]) -> None:
        """After a call with branches: per row, the branch it wrote (0: none); the others'
        slots are never attended to again."""
        keep = (self._group == 0) | (self._group == torch.tensor(taken)[:, None])
        self.valid[:, self._first : self._first + keep.size(1)] &= keep

    def keep(self, rows: list[int]) -> None:
        index = torch.tensor(rows)
        self.cache.keep(index)
        self.valid = self.valid[index]

    def _grow(self, need: int) -> None:
        """Room for `need` slots, and 64 more: attention runs over every slot (`KVCache`),
        and each growth copies the cache (jump-forward steps leave padded slots too)."""
        have = self.cache.length
        if need > have:
            self.cache.grow(need + 64)
            self.valid = F.pad(self.valid, (0, self.cache.length - have))


class HFModel:
    batch_size, cites, branches = 8, False, False
    whole_before: tuple[str, ...] = ()

    def __init__(self, model, tokenizer) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        head = model.get_output_embeddings()
        self.vocab = int(head.weight.shape[0]) if head is not None else model.config.vocab_size
        added = getattr(tokenizer, "added_tokens_decoder", {})
        special = set(tokenizer.all_special_ids) | {i for i, t in added.items() if t.special}
        self.banned = sorted(i for i in special if 0 <= i < self.vocab)
        self.pad = next(
            (i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0
        )
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self.pre_tokenizer = getattr(backend, "pre_tokenizer", None)

    def tokenizer_info(self) -> xgr.TokenizerInfo:
        stop = _stop_ids(self.model, self.tokenizer, self.vocab)
        return xgr.TokenizerInfo.from_huggingface(
            self.tokenizer, vocab_size=self.vocab, stop_token_ids=stop
        )

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def prompt(self, system: str, user: str) -> list[int]:
        from synthpm.lm.lora import chat_prompt_ids

        return chat_prompt_ids(self.tokenizer, system, user)

    def user_text(self, prompt: list[int]) -> str:
        raise NotImplementedError("cited grammars need our tokenizer's turns")

    def warm(self, system: str) -> None:
        """Nothing: no prefix cache here."""

    def start(self, prompts: list[list[int]], lead: int, new_tokens: int) -> int:
        from transformers import DynamicCache

        self.device = next(self.model.parameters()).device
        self.cache = DynamicCache()
        self.mask = torch.zeros(len(prompts), 0, dtype=torch.long)  # 1 on real tokens
        return 0

    def forward(self, call: Call) -> torch.Tensor:
        self.mask = torch.cat([self.mask, call.real.long()], 1)
        out = self.model(
            input_ids=call.ids.to(self.device),
            attention_mask=self.mask.to(self.device),
            position_ids=call.positions.to(self.device),
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=call.last,
        )
        self.cache = out.past_key_values
        logits = out.logits.float()
        if self.banned:
            logits[..., self.banned] = float("-inf")
        return logits

    def settle(self, taken: list[int]) -> None:
        raise NotImplementedError("no branches")

    def keep(self, rows: list[int]) -> None:
        self.cache.batch_select_indices(torch.tensor(rows, device=self.device))
        self.mask = self.mask[rows]


def _common_prefix(prompts: list[list[int]], limit: int) -> int:
    """Length of the longest prefix (at most `limit`) that every prompt starts with."""
    first, n = prompts[0], limit
    for p in prompts[1:]:
        n = next((i for i, (a, c) in enumerate(zip(first[:n], p[:n], strict=True)) if a != c), n)
    return n


def _stop_ids(model, tokenizer, vocab: int) -> list[int] | None:
    """eos ids (tokenizer's and generation config's) and end-of-turn tokens, if any."""
    ids = [tokenizer.eos_token_id]
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += eos if isinstance(eos, list) else [eos]
    vocab_of = tokenizer.get_vocab()
    ids += [vocab_of.get(t) for t in _END_TOKENS]
    found = sorted({i for i in ids if i is not None and 0 <= i < vocab})
    return found or None  # None: xgrammar guesses (it refuses an empty list)
