"""Decode `Signal`s from the model: greedy, under a JSON grammar, batched, with jump-forward.

- The grammar (xgrammar, compiled once per decoder from `signal_schema`) admits only the
  compact, fixed-key-order JSON of `signal_json`, with every string and list bounded, so any
  output parses as a `Signal` and its length has a known ceiling (`max_chars`).
- Batching: prompts are sorted by length, cut into batches and left-padded. The model gets a
  key mask (pads are never attended to) and per-row rotary positions, so a padded row computes
  what it would alone: batched output equals one-at-a-time output.
- Jump-forward: where the grammar forces the next characters (keys, punctuation), their tokens
  go in with the next step's forward call instead of one model step each. The last
  pre-tokenizer piece of a forced run is left to the model: in training it merges with what
  follows (`":` then `[` is one token `":[`), so forcing it would spell the answer in tokens
  the model never saw. Rows of a step feed different counts of tokens; the shorter ones are
  left-padded inside the step, masked like the prompt pads.
- Signal-only mode runs the same grammar and stops once the hold number ends, so its
  decision, conviction and hold are exactly full mode's.
- Conviction is read from the decoded digits (rounded to 2 decimals), not from token
  probabilities.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import xgrammar as xgr

from synthpm.data.errors import SynthpmError
from synthpm.lm.model import GPT, HEAD_DIM, KVCache
from synthpm.lm.tokenizer import ChatTokenizer
from synthpm.signals import DECISIONS, Signal, signal_json

MODES = ("full", "signal")
# End of the hold number: the first non-digit after it (signal-only mode stops there).
_HOLD_END = re.compile(rb'"hold_duration_days":\d+\D')


class DecodeError(SynthpmError, RuntimeError):
    """The model did not finish a signal within max_new_tokens."""


def _text(max_len: int) -> dict:
    # Printable ASCII without `"` and `\`: no escapes to get wrong, and one character is at
    # most one token, so max_chars bounds the token count. A `pattern`, not maxLength, which
    # xgrammar mis-handles.
    return {"type": "string", "pattern": f"^[ !#-\\[\\]-~]{{0,{max_len}}}$"}


def signal_schema(
    full: bool = True, max_reasoning: int = 300, max_item: int = 80, max_items: int = 3
) -> dict:
    """JSON schema of `Signal`, keys in `signal_json` order; full=False: the first three."""
    props: dict[str, dict] = {
        "decision": {"type": "string", "enum": list(DECISIONS)},
        "conviction": {"type": "number", "minimum": 0, "maximum": 1},
        "hold_duration_days": {"type": "integer", "minimum": 1, "maximum": 365},
    }
    if full:
        props["reasoning"] = _text(max_reasoning)
        for key in ("risk_factors", "catalysts", "exit_triggers"):
            props[key] = {"type": "array", "items": _text(max_item), "maxItems": max_items}
    return {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }


def max_chars(max_reasoning: int = 300, max_item: int = 80, max_items: int = 3) -> int:
    """The longest text the full grammar admits (xgrammar allows 6 decimals in [0, 1])."""
    skeleton = len(signal_json("SKIP", 0.0, 365, "", [], [], [])) + len("0001")
    lists = 3 * (max_items * (max_item + 2) + max_items - 1)
    return skeleton + max_reasoning + lists


class SignalDecoder:
    """Greedy grammar-constrained decoding of chat prompts (from `render`) into `Signal`s."""

    def __init__(
        self,
        model: GPT,
        tokenizer: ChatTokenizer,
        max_new_tokens: int | None = None,
        max_reasoning: int = 300,
        max_item: int = 80,
        max_items: int = 3,
    ) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer
        bound = max_chars(max_reasoning, max_item, max_items)
        # Default: the grammar's ceiling, which a row cannot exceed (one char >= one token).
        self.max_new_tokens = bound if max_new_tokens is None else max_new_tokens
        vocab = model.config.vocab_size
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer.to_huggingface(), vocab_size=vocab, stop_token_ids=[tokenizer.end_id]
        )
        schema = signal_schema(True, max_reasoning, max_item, max_items)
        # xgrammar's compile cache (cache_enabled=True) fails an internal check on this
        # schema (0.2.8); the decoder compiles once and keeps the result instead.
        compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self.grammar = compiler.compile_json_schema(
            json.dumps(schema), any_whitespace=False, separators=(",", ":"), strict_mode=True
        )
        self._bytes: list[bytes] = [bytes(b) for b in info.decoded_vocab]
        self._bytes += [b""] * (vocab - len(self._bytes))
        self._jumps: dict[str, tuple[list[int], bytes]] = {}
        # Every answer opens with the same forced run: it goes in with the prompt.
        self._lead = self._jump(self._matcher().find_jump_forward_string())

    def _matcher(self) -> xgr.GrammarMatcher:
        # Terminate on the closing brace: no model step is spent on the forced <|end|>.
        return xgr.GrammarMatcher(self.grammar, terminate_without_stop_token=True)

    def _jump(self, forced: str) -> tuple[list[int], bytes]:
        """Tokens and bytes of the forced run minus its last pre-tokenizer piece (cached)."""
        hit = self._jumps.get(forced)
        if hit is None:
            pieces = self.tokenizer.backend.pre_tokenizer.pre_tokenize_str(forced)
            head = forced[: pieces[-1][1][0]] if pieces else ""
            hit = (self.tokenizer.encode(head) if head else [], head.encode())
            self._jumps[forced] = hit
        return hit

    def decode(
        self, prompts: Sequence[list[int]], mode: str = "full", batch_size: int = 32
    ) -> list[Signal]:
        """One `Signal` per prompt, in order; mode "signal" leaves the text fields empty."""
        texts = self.decode_text(prompts, mode, batch_size)
        return [_parse(text, mode == "signal") for text in texts]

    def decode_text(
        self, prompts: Sequence[list[int]], mode: str = "full", batch_size: int = 32
    ) -> list[bytes]:
        """The raw JSON the model wrote (signal mode: up to the character after the hold)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        # Sorted by length, so a batch's prompts need little padding.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[bytes] = [b""] * len(prompts)
        for s in range(0, len(order), batch_size):
            batch = order[s : s + batch_size]
            texts = self._decode_batch([prompts[i] for i in batch], mode == "signal")
            for i, text in zip(batch, texts, strict=True):
                end = _HOLD_END.search(text) if mode == "signal" else None
                out[i] = text if end is None else text[: end.end()]  # a jump may overshoot
        return out

    @torch.no_grad()
    def _decode_batch(self, prompts: list[list[int]], signal_only: bool) -> list[bytes]:
        lead, lead_text = self._lead
        b, pad = len(prompts), self.tokenizer.pad_id
        matchers = [self._matcher() for _ in range(b)]
        for m in matchers:
            _accept(m, lead)
        text = [bytearray(lead_text) for _ in range(b)]
        count = [len(lead)] * b  # tokens of the answer so far, per row
        pos = [len(p) + len(lead) for p in prompts]  # each row's next rotary position
        seqs: list[list[int] | None] = [p + lead for p in prompts]
        rows = list(range(b))  # cache row -> prompt index, None once compacted away
        cache = KVCache(self.model.config, b, max(pos) + 64)
        valid = torch.zeros(b, cache.kv.size(4), dtype=torch.bool)
        start_pos = [0] * b
        bitmask = xgr.allocate_token_bitmask(b, self.model.config.vocab_size)
        while True:
            # One forward call: each live row's pending tokens, left-padded to the longest.
            width = max(len(s) for s in seqs if s is not None)
            valid = _grow(cache, valid, cache.pos + width)
            ids = torch.full((len(rows), width), pad)
            positions = torch.zeros(len(rows), width, dtype=torch.long)
            for j, s in enumerate(seqs):
                if s:
                    ids[j, width - len(s) :] = torch.tensor(s)
                    positions[j, width - len(s) :] = torch.arange(len(s)) + start_pos[j]
                    valid[j, cache.pos + width - len(s) : cache.pos + width] = True
            end = cache.pos + width
            logits = self.model(
                ids, cache=cache, key_mask=valid[:, :end], positions=positions, last_only=True
            )[:, 0].contiguous()
            live = [j for j, s in enumerate(seqs) if s is not None]
            for j in live:
                matchers[rows[j]].fill_next_token_bitmask(bitmask, j)
            xgr.apply_token_bitmask_inplace(logits, bitmask[: len(rows)], indices=live)
            choice = logits.argmax(-1).tolist()
            for j in live:
                r, token = rows[j], choice[j]
                m, seq = matchers[r], [token]
                _accept(m, seq)
                text[r] += self._bytes[token]
                done = m.is_terminated() or (signal_only and _HOLD_END.search(text[r]))
                if not done:
                    forced, forced_text = self._jump(m.find_jump_forward_string())
                    _accept(m, forced)
                    seq, text[r] = seq + forced, text[r] + forced_text
                    done = signal_only and _HOLD_END.search(text[r])
                count[r] += len(seq)
                start_pos[j], seqs[j] = pos[r], None if done else seq
                pos[r] += len(seq)
                if not done and count[r] >= self.max_new_tokens:
                    raise DecodeError(
                        f"no complete signal within max_new_tokens={self.max_new_tokens}"
                        f" (row {r}: {bytes(text[r][:80])!r}...)"
                    )
            left = [j for j, s in enumerate(seqs) if s is not None]
            if not left:
                return [bytes(t) for t in text]
            if len(left) <= len(rows) // 2:  # drop finished rows; halving bounds the copying
                keep = torch.tensor(left)
                cache.kv, valid = cache.kv[:, :, keep], valid[keep]
                rows, seqs = [rows[j] for j in left], [seqs[j] for j in left]
                start_pos = [start_pos[j] for j in left]


def _accept(matcher: xgr.GrammarMatcher, tokens: list[int]) -> None:
    for token in tokens:
        if not matcher.accept_token(token):  # the mask allowed it: a bug, never the model
            raise DecodeError(f"grammar rejected token {token}")


def _grow(cache: KVCache, valid: torch.Tensor, need: int) -> torch.Tensor:
    """Room for `need` slots: double the cache (jump-forward steps leave padded slots)."""
    have = cache.kv.size(4)
    if need <= have:
        return valid
    size = max(need, 2 * have)
    kv = cache.kv.new_zeros(*cache.kv.shape[:4], size, HEAD_DIM)
    kv[..., :have, :] = cache.kv
    cache.kv = kv
    return F.pad(valid, (0, size - have))


def _parse(text: bytes, signal_only: bool) -> Signal:
    if signal_only:
        end = _HOLD_END.search(text)
        if end is None:
            raise DecodeError(f"no hold_duration_days in {text!r}")
        data = json.loads(text[: end.end() - 1] + b"}")
        signal = Signal(**data, reasoning="")
    else:
        signal = Signal.model_validate_json(text)
    return signal.model_copy(update={"conviction": round(signal.conviction, 2)})
