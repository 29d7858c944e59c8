"""Decode `Signal`s from a transformers causal LM (the LoRA path): `SignalDecoder`'s contract.

- Same grammar as `decode.py` (`signal_schema`, compiled once per decoder), so any output
  parses as a `Signal` and `max_chars` bounds its tokens. xgrammar reads the HF tokenizer
  directly; its mask is as wide as the model's logits, which may exceed the tokenizer's
  vocabulary (padded lm_head): xgrammar never admits the ids past the vocabulary.
- Control tokens are banned outright. xgrammar reads a byte-level vocabulary's added tokens as
  their literal text (`<|im_end|>` is 10 printable characters), so the grammar would let them
  into a string; fed back to the model they are turn markers, not text.
- Text is the concatenation of each token's bytes as xgrammar decodes them (`decoded_vocab`),
  not `tokenizer.decode`, so the parsed text is exactly what the grammar admitted.
- Batching: left padding plus an attention mask over the KV cache (`DynamicCache`), and
  explicit per-row `position_ids`: HF Llama numbers positions by cache slot, not by real token,
  so a padded row would otherwise see shifted rotary positions. Batched output equals
  one-at-a-time output.
- Jump-forward as in `decode.py`: forced characters (keys, punctuation) go in with the next
  step, minus their last pre-tokenizer piece, which is left to the model (it merges with what
  follows in training). A forced run is used only when the tokenizer spells it back byte for
  byte (no pre-tokenizer, or a SentencePiece-style prefix space, means no jump: still correct,
  one model step per token). Rows of a step feed different counts of tokens; the shorter are
  left-padded inside the step, masked like the prompt pads.
- Signal-only mode runs the same grammar and stops once the hold number ends, so its
  decision, conviction and hold are exactly full mode's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import xgrammar as xgr

from synthpm.lm.decode import (
    accept_tokens,
    advance,
    by_length,
    check_budget,
    check_mode,
    choose,
    compiler,
    cut,
    max_chars,
    parse_signal,
    schema_grammar,
)
from synthpm.lm.heap import keep_freed_memory
from synthpm.signals import Signal

# End-of-turn tokens of common chat templates: stop ids besides eos, where the vocab has them.
_END_TOKENS = ("<|end|>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<end_of_turn>")


class HFSignalDecoder:
    """Greedy grammar-constrained decoding of chat prompts (`chat_prompt_ids`) into `Signal`s."""

    def __init__(
        self,
        model,
        tokenizer,
        max_new_tokens: int | None = None,
        max_reasoning: int = 300,
        max_item: int = 80,
        max_items: int = 3,
    ) -> None:
        keep_freed_memory()  # large activations reuse the heap (`heap`)
        self.model, self.tokenizer = model.eval(), tokenizer
        bound = max_chars(max_reasoning, max_item, max_items)
        # Default: the grammar's ceiling, which a row cannot exceed (one char >= one token).
        self.max_new_tokens = bound if max_new_tokens is None else max_new_tokens
        head = model.get_output_embeddings()
        self.vocab = int(head.weight.shape[0]) if head is not None else model.config.vocab_size
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer, vocab_size=self.vocab, stop_token_ids=_stop_ids(model, tokenizer, self.vocab)
        )
        schema = schema_grammar(max_reasoning, max_item, max_items)
        self.grammar = compiler(info).compile_grammar(schema)
        self._bytes: list[bytes] = [bytes(b) for b in info.decoded_vocab][: self.vocab]
        self._bytes += [b""] * (self.vocab - len(self._bytes))
        added = getattr(tokenizer, "added_tokens_decoder", {})
        special = set(tokenizer.all_special_ids) | {i for i, t in added.items() if t.special}
        self._banned = sorted(i for i in special if 0 <= i < self.vocab)
        self._pad = next(
            (i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0
        )
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._pre = getattr(backend, "pre_tokenizer", None)
        self._jumps: dict[str, tuple[list[int], bytes]] = {}
        # Every answer opens with the same forced run: it goes in with the prompt.
        self._lead = self._jump(self._matcher().find_jump_forward_string())

    def _matcher(self) -> xgr.GrammarMatcher:
        # Terminate on the closing brace: no model step is spent on the end-of-turn token.
        return xgr.GrammarMatcher(self.grammar, terminate_without_stop_token=True)

    def _jump(self, forced: str) -> tuple[list[int], bytes]:
        """Tokens and bytes of the forced run minus its last pre-tokenizer piece (cached)."""
        hit = self._jumps.get(forced)
        if hit is None:
            hit = ([], b"")
            if forced and self._pre is not None:
                pieces = self._pre.pre_tokenize_str(forced)
                head = forced[: pieces[-1][1][0]] if pieces else ""
                ids = self.tokenizer.encode(head, add_special_tokens=False) if head else []
                spelled = b"".join(self._bytes[i] if i < self.vocab else b"?" for i in ids)
                if spelled == head.encode() and not set(ids) & set(self._banned):
                    hit = (ids, spelled)
            self._jumps[forced] = hit
        return hit

    def decode(
        self, prompts: Sequence[list[int]], mode: str = "full", batch_size: int = 8
    ) -> list[Signal]:
        """One `Signal` per prompt, in order; mode "signal" leaves the text fields empty."""
        texts = self.decode_text(prompts, mode, batch_size)
        return [parse_signal(text, mode == "signal") for text in texts]

    def decode_text(
        self, prompts: Sequence[list[int]], mode: str = "full", batch_size: int = 8
    ) -> list[bytes]:
        """The raw JSON the model wrote (signal mode: up to the character after the hold)."""
        signal_only = check_mode(mode)
        texts = by_length(prompts, batch_size, lambda b: self._decode_batch(b, signal_only))
        return [cut(text, signal_only) for text in texts]

    @torch.no_grad()
    def _decode_batch(self, prompts: list[list[int]], signal_only: bool) -> list[bytes]:
        from transformers import DynamicCache

        lead, lead_text = self._lead
        b = len(prompts)
        device = next(self.model.parameters()).device
        banned = torch.tensor(self._banned, dtype=torch.long, device=device)
        matchers = [self._matcher() for _ in range(b)]
        for m in matchers:
            accept_tokens(m, lead)
        text = [bytearray(lead_text) for _ in range(b)]
        count = [len(lead)] * b  # tokens of the answer so far, per row
        pos = [0] * b  # each row's next position: its real tokens so far
        seqs: list[list[int] | None] = [p + lead for p in prompts]  # pending input per row
        rows = list(range(b))  # cache row -> prompt index
        cache = DynamicCache()
        mask = torch.zeros(b, 0, dtype=torch.long)  # 1 on the cache's real tokens
        bitmask = xgr.allocate_token_bitmask(b, self.vocab)
        while True:
            # One forward call: each live row's pending tokens, left-padded to the longest.
            width = max(len(s) for s in seqs if s is not None)
            ids = torch.full((len(rows), width), self._pad, dtype=torch.long)
            step = torch.zeros(len(rows), width, dtype=torch.long)
            positions = torch.zeros(len(rows), width, dtype=torch.long)
            for j, s in enumerate(seqs):
                if s:
                    r, n = rows[j], len(s)
                    ids[j, width - n :] = torch.tensor(s)
                    step[j, width - n :] = 1
                    positions[j, width - n :] = torch.arange(pos[r], pos[r] + n)
                    pos[r] += n
            mask = torch.cat([mask, step], 1)
            out = self.model(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                position_ids=positions.to(device),
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            cache = out.past_key_values
            logits = out.logits[:, -1].float()
            if len(banned):
                logits[:, banned] = float("-inf")
            best = logits.argmax(-1).tolist()  # once for the batch, as in `SignalDecoder`
            for j in (j for j, s in enumerate(seqs) if s is not None):
                r = rows[j]
                token = choose(matchers[r], logits, bitmask, j, best[j])
                seq, done = advance(
                    matchers[r], token, self._bytes, text[r], self._jump, signal_only
                )
                count[r] += len(seq)
                seqs[j] = None if done else seq
                if not done:
                    check_budget(count[r], self.max_new_tokens, r, text[r])
            left = [j for j, s in enumerate(seqs) if s is not None]
            if not left:
                return [bytes(t) for t in text]
            if len(left) <= len(rows) // 2:  # drop finished rows; halving bounds the copying
                cache.batch_select_indices(torch.tensor(left, device=device))
                mask = mask[left]
                rows, seqs = [rows[j] for j in left], [seqs[j] for j in left]


def _stop_ids(model, tokenizer, vocab: int) -> list[int] | None:
    """eos ids (tokenizer's and generation config's) and end-of-turn tokens, if any."""
    ids = [tokenizer.eos_token_id]
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids += eos if isinstance(eos, list) else [eos]
    vocab_of = tokenizer.get_vocab()
    ids += [vocab_of.get(t) for t in _END_TOKENS]
    found = sorted({i for i in ids if i is not None and 0 <= i < vocab})
    return found or None  # None: xgrammar guesses (it refuses an empty list)
