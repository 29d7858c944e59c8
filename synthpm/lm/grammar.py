"""The `Signal` grammar (xgrammar), jump-forward over what it forces, and the greedy token
under it.

- The grammar, compiled once per decoder from `signal_schema`, admits only the compact,
  fixed-key-order JSON of `signal_json`, with every string and list bounded, so any output
  parses as a `Signal` and its length has a known ceiling (`max_chars`).
- Cited text (`matcher(user=...)`): a prompt's own grammar (`citations`), whose strings can
  hold digits only as the prompt's own chunks copied whole, so the reasoning cannot misquote
  a number. Such a string is closed once it reaches its limit (`string_full`, `close`): a
  literal being written finishes first.
- Greedy under the grammar, mask last (`choose`): a row's best tokens are offered to the
  grammar in order and only if all are refused is its token mask computed. The first allowed
  token in logit order is the allowed argmax, so the result is masking first's, and a token
  check costs far less than a mask (benchmarks/results/lm_bench.json).
- Jump-forward (`jump`): where the grammar forces the next characters (keys, punctuation),
  their tokens go in with the next call instead of one model step each. The last
  pre-tokenizer piece of a forced run is left to the model: in training it merged with what
  followed, so forcing it would spell the answer in tokens the model never saw; except where
  the tokenizer makes numbers pieces of their own (`ModelAdapter.whole_before`), so a run
  such as `,"hold_duration_days":` was a whole piece in training. A run is used only when
  the tokenizer spells it back byte for byte, with no banned token.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, NamedTuple

import torch
import xgrammar as xgr

from synthpm.data.errors import SynthpmError
from synthpm.lm.citations import cited_grammar
from synthpm.signals import DECISIONS, signal_json

if TYPE_CHECKING:
    from synthpm.lm.adapters import ModelAdapter

CANDIDATES = 16  # tokens offered to the grammar in turn before computing its mask
# End of the hold number: the first non-digit after it (signal-only mode stops there).
HOLD_END = re.compile(rb'"hold_duration_days":\d+\D')


class DecodeError(SynthpmError, RuntimeError):
    """The model did not finish a signal within max_new_tokens."""


class Jump(NamedTuple):
    """A forced run, as the tokens fed for it and the text they spell."""

    ids: list[int]
    text: bytes


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


def schema_grammar(max_reasoning: int, max_item: int, max_items: int) -> xgr.Grammar:
    """The grammar of `signal_schema`: compact JSON, keys in order, every string bounded."""
    return xgr.Grammar.from_json_schema(
        json.dumps(signal_schema(True, max_reasoning, max_item, max_items)),
        any_whitespace=False,
        separators=(",", ":"),
        strict_mode=True,
    )


class SignalGrammar:
    """The schema's grammar over one model's vocabulary: matchers, forced runs, closing."""

    def __init__(self, adapter: ModelAdapter, max_reasoning: int, max_item: int, max_items: int):
        self.adapter = adapter
        info = adapter.tokenizer_info()
        # Each token's bytes as xgrammar decodes them: the text is exactly what it admitted.
        self.bytes: list[bytes] = [bytes(b) for b in info.decoded_vocab][: adapter.vocab]
        self.bytes += [b""] * (adapter.vocab - len(self.bytes))
        # xgrammar's compile cache (cache_enabled=True) fails an internal check on the
        # schema (0.2.8): the grammars are kept here instead.
        self._compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        schema = schema_grammar(max_reasoning, max_item, max_items)
        self._schema_ebnf = str(schema)
        self.compiled = self._compiler.compile_grammar(schema)
        self._string_max = (max_reasoning, max_item)
        self._closes = torch.tensor([b.startswith(b'"') for b in self.bytes])
        self._jumps: dict[str, Jump] = {}
        # Every answer opens with the same forced run: it goes in with the prompt.
        self.lead = self.jump(self.matcher().find_jump_forward_string())

    def matcher(self, user: str | None = None) -> xgr.GrammarMatcher:
        """A matcher of the schema's grammar, or of the one that cites only `user`'s numbers
        (compiled per prompt)."""
        grammar = self.compiled
        if user is not None:
            grammar = self._compiler.compile_grammar(cited_grammar(self._schema_ebnf, user))
        # Terminate on the closing brace: no model step is spent on the end-of-turn token.
        return xgr.GrammarMatcher(grammar, terminate_without_stop_token=True)

    def jump(self, forced: str) -> Jump:
        """Tokens and bytes of the forced run minus its last pre-tokenizer piece (cached)."""
        hit = self._jumps.get(forced)
        if hit is None:
            hit = Jump([], b"")
            pre = self.adapter.pre_tokenizer
            if forced and pre is not None:
                pieces = pre.pre_tokenize_str(forced)
                whole = forced.endswith(self.adapter.whole_before)
                head = forced if whole else forced[: pieces[-1][1][0]] if pieces else ""
                ids = self.adapter.encode(head) if head else []
                spelled = b"".join(self.bytes[i] if i < len(self.bytes) else b"?" for i in ids)
                if spelled == head.encode() and not set(ids) & set(self.adapter.banned):
                    hit = Jump(ids, spelled)
            self._jumps[forced] = hit
        return hit

    def string_full(self, text: bytes) -> bool:
        """Inside a string that has reached its length limit? (Strings hold no quotes.)"""
        if text.count(b'"') % 2 == 0:
            return False
        limit = self._string_max[b'"risk_factors":' in text]
        return len(text) - text.rfind(b'"') - 1 >= limit

    def close(self, matcher, logits: torch.Tensor, bitmask: torch.Tensor, j: int) -> int:
        """Row j's token in a string at its limit: a closing one, if the grammar allows one
        here (not mid-literal)."""
        mask_row(matcher, logits, bitmask, j)
        closing = logits[j].masked_fill(~self._closes, -torch.inf)
        token = int((closing if closing.isfinite().any() else logits[j]).argmax())
        accept_tokens(matcher, [token])
        return token


def choose(
    matcher: xgr.GrammarMatcher, logits: torch.Tensor, bitmask: torch.Tensor, j: int, best: int
) -> int:
    """Row j's greedy token under its grammar, accepted by `matcher`: the best of the top
    `CANDIDATES` the grammar takes, else the argmax over the allowed tokens (row j of
    `logits` is then masked in place). Equal to masking first, at a fraction of the cost.
    `best` is row j's argmax (taken for the whole batch at once)."""
    token = best
    if matcher.accept_token(token):  # a refusal leaves the matcher as it was
        return token
    # The next best, in order (ties by id, as argmax breaks them): the first the grammar
    # takes is the allowed argmax.
    top = logits[j].topk(CANDIDATES)
    values, ids = top.values.tolist(), top.indices.tolist()
    # trusted only above the cut: a token tied with the last might have a lower id outside
    for _, token in sorted((-v, t) for v, t in zip(values, ids, strict=True) if v > values[-1]):
        if matcher.accept_token(token):
            return token
    mask_row(matcher, logits, bitmask, j)
    token = int(logits[j].argmax())
    accept_tokens(matcher, [token])
    return token


def mask_row(matcher: xgr.GrammarMatcher, logits: torch.Tensor, bitmask: torch.Tensor, j: int):
    """Disallowed tokens of row j to -inf, in place."""
    matcher.fill_next_token_bitmask(bitmask, j)
    xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device), indices=[j])


def accept_tokens(matcher: xgr.GrammarMatcher, tokens: list[int]) -> None:
    for token in tokens:
        if not matcher.accept_token(token):  # the mask allowed it: a bug, never the model
            raise DecodeError(f"grammar rejected token {token}")
