"""Decode `Signal`s from the model: greedy, under a JSON grammar, batched, with jump-forward.

- The grammar (xgrammar, compiled once per decoder from `signal_schema`) admits only the
  compact, fixed-key-order JSON of `signal_json`, with every string and list bounded, so any
  output parses as a `Signal` and its length has a known ceiling (`max_chars`).
- Cited text (full mode, `cite=True`): each prompt gets its own grammar (`citations`), in
  which the strings can hold digits only as the prompt's own chunks copied whole, so the
  reasoning cannot misquote a number; compiled per prompt (~5 ms). Such a string is closed
  once it reaches its limit (300 / 80 characters): a literal being written finishes first.
- Greedy under the grammar, mask last (`choose`): a row's best tokens are offered to the
  grammar in order (the argmax, then the rest of the top 16), and only if all are refused
  is its token mask computed and the argmax taken over the allowed tokens. The result is
  the same as masking first (the first allowed token in logit order is the allowed
  argmax), at less cost: with the default tokenizer's long tokens a cited grammar's mask
  costs 0.3-0.7 ms, a token check ~4 us, and the demo model's argmax is allowed for 65% of
  its tokens, one of its top 16 for 76% (measured on 64 test prompts).
- Batching: prompts are sorted by length, cut into batches and left-padded. The model gets a
  key mask (pads are never attended to) and per-row rotary positions, so a padded row computes
  what it would alone: batched output equals one-at-a-time output.
- Jump-forward: where the grammar forces the next characters (keys, punctuation), their tokens
  go in with the next step's forward call instead of one model step each. The last
  pre-tokenizer piece of a forced run is left to the model: in training it merged with what
  followed (`","conviction":` with the decision before it, `"],"catalysts":["` with the
  text after it), so forcing it would spell the answer in tokens the model never saw. Except
  before a number: numbers are pieces of their own (`tokenizer`), so a run such as
  `,"hold_duration_days":` was a whole piece in training and is forced whole. Rows of a step
  feed different counts of tokens; the shorter ones are left-padded inside the step, masked
  like the prompt pads.
- Speculation (guessed branches): where the next run a row writes is one of a few known
  ones, the call that feeds its pending tokens also feeds those guesses, each a branch that
  sees the tokens before it and itself only (a per-query key mask), with logits at every
  branch's end. If the row then writes a branch exactly (its token and the forced run after
  it), that branch's logits choose the token after it, with no call of their own; the other
  branches' slots are masked for good. Guessed: each decision's opening as training spelled
  it (`{"decision":"BUY","conviction":`, one token with the default tokenizer), with the
  prompt; the hold key after the conviction. A signal then takes 3 calls, not 5 (prompt ->
  decision and conviction; conviction + hold key -> hold; hold -> its end). A wrong guess
  costs its slots only, and the output is the same either way (tested).
- Prefix cache: the prompts of a batch share a prefix (always the system prompt; in a
  backtest also the date's market, book and limits, which `prompt` puts first). Its keys and
  values are computed once, for one row, and copied into every row of the batch; the rows
  then feed only their own suffixes. Shared prefixes of multi-row batches are kept (LRU, a
  few entries), so later batches and single prompts (`analyze`) start from the longest kept
  one; `warm` seeds it, e.g. with the system prompt.
- Signal-only mode runs the schema's grammar (whose first three keys every cited grammar
  shares) and stops once the hold number ends, so its decision, conviction and hold are
  exactly full mode's.
- Conviction, two readings (`decode(..., conviction=...)`): "read" (default) is the number
  the model wrote, greedy, rounded to 2 decimals, the one its reasoning goes with;
  "expected" is the mean under the model's own probabilities, over its decisions as well:
  sum over decisions d of P(d) x E[conviction | d], where P(d) is the model's probability of
  d's opening (renormalised over the three) and E[conviction | d] = sum over tokens t of
  P(t | d) x value(t) / sum of P(t | d), over the tokens that begin a conviction as the
  training answers spell it (`0.00` .. `1.00`), value(t) being the mean of the convictions
  that begin with t. The first call feeds the three openings after the prompt (as the
  speculation below does), so their ends give every E[conviction | d] at no extra call.
  Over the decisions, because the conviction comes after the decision: given BUY the model
  writes 0.70 .. 1.00 (the labels' bar), given SKIP below it, so the expectation given the
  decision it wrote ranks only within that decision (measured on the 2005-2022 panel's test
  years: every test context in 0.80 .. 0.90, per-date IC +0.013). A tokenizer that spells an
  opening in several tokens gets the expectation given the decision written. The default
  tokenizer spells each of the 101 values as one token, so this is the model's whole
  distribution over convictions; a tokenizer that splits them (`0.` + `58`) gives the
  coarser mean of its first token. Greedy picks
  jump between values; the expectation moves smoothly with the evidence, which is what
  ranking and calibration need. `lm eval` reports both. `calibration` (`lm calibrate`'s map)
  turns the expectation, before rounding, into the probability of a win.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import xgrammar as xgr

from synthpm.data.errors import SynthpmError
from synthpm.lm.citations import MAX_LITERAL, cited_grammar
from synthpm.lm.heap import keep_freed_memory
from synthpm.lm.model import GPT, KVCache
from synthpm.lm.tokenizer import ChatTokenizer
from synthpm.signals import DECISIONS, Signal, signal_json

MODES = ("full", "signal")
CONVICTIONS = ("read", "expected")
PREFIXES_KEPT = 8  # the system prompt, a backtest date's shared part, ...
CANDIDATES = 16  # tokens offered to the grammar in turn before computing its mask
# End of the hold number: the first non-digit after it (signal-only mode stops there).
_HOLD_END = re.compile(rb'"hold_duration_days":\d+\D')
# A text that ends inside the conviction number (the hold key is guessed next).
_IN_CONVICTION = re.compile(rb'"conviction":[0-9.]+$')
# Forced runs that a number follows (see jump-forward in the module docstring).
_BEFORE_NUMBER = ('"conviction":', '"hold_duration_days":')


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
        cite: bool = True,
    ) -> None:
        keep_freed_memory()  # large activations reuse the heap (`heap`)
        self.model, self.tokenizer = model.eval(), tokenizer
        self._dtype = model.embed.weight.dtype  # the cache's too (`inference_dtype`)
        self.cite, self._string_max = cite, (max_reasoning, max_item)
        vocab = model.config.vocab_size
        info = xgr.TokenizerInfo.from_huggingface(
            tokenizer.to_huggingface(), vocab_size=vocab, stop_token_ids=[tokenizer.end_id]
        )
        self._bytes: list[bytes] = [bytes(b) for b in info.decoded_vocab]
        self._bytes += [b""] * (vocab - len(self._bytes))
        # with `cite`, a string may overrun its limit by a token and the literal it was writing
        overrun = MAX_LITERAL + max(map(len, self._bytes))
        bound = max_chars(max_reasoning, max_item, max_items) + (1 + 3 * max_items) * overrun
        # Default: the grammar's ceiling, which a row cannot exceed (one char >= one token).
        self.max_new_tokens = bound if max_new_tokens is None else max_new_tokens
        self._compiler = compiler(info)
        schema = schema_grammar(max_reasoning, max_item, max_items)
        self._schema_ebnf = str(schema)
        self.grammar = self._compiler.compile_grammar(schema)
        self._closes = torch.tensor([b.startswith(b'"') for b in self._bytes])
        self._jumps: dict[str, tuple[list[int], bytes]] = {}
        self._prefixes: OrderedDict[tuple[int, ...], KVCache] = OrderedDict()
        self._conviction_ids, self._conviction_values = conviction_tokens(self._bytes)
        # Every answer opens with the same forced run: it goes in with the prompt.
        self._lead = self._jump(self._matcher().find_jump_forward_string())
        self._openings, self._hold_key = self._branches(self._lead[1])
        # each decision's opening as one token: its probability is read where it is chosen
        single = all(len(o) == 1 for o in self._openings) and len(self._openings) == len(DECISIONS)
        self._opening_ids = [o[0] for o in self._openings] if single else None

    def _branches(self, lead_text: bytes) -> tuple[list[list[int]], list[int]]:
        """Tokens of the runs a row is guessed to write next (speculation, module docstring),
        as training spelled them (`signal_json`): after the lead, each decision's opening up
        to the conviction (`{"decision":"BUY","conviction":`); after the conviction, the hold
        key (`,"hold_duration_days":`)."""
        spelled = [signal_json(d, 0.5, 7, "", [], [], []).encode() for d in DECISIONS]
        openings = [s[: s.index(b"0.50")] for s in spelled]  # up to the conviction
        hold_key = spelled[0].split(b"0.50")[1].split(b"7")[0]
        encode = self.tokenizer.encode
        rest = [o[len(lead_text) :].decode() for o in openings if o.startswith(lead_text)]
        return [encode(o) for o in rest if o], encode(hold_key.decode())

    def _guesses(self, text: bytes) -> list[list[int]]:
        """The branches worth feeding after a row's pending tokens, given its text so far."""
        if text == self._lead[1]:
            return self._openings
        return [self._hold_key] if _IN_CONVICTION.search(text) else []

    def _matcher(self, grammar: xgr.CompiledGrammar | None = None) -> xgr.GrammarMatcher:
        # Terminate on the closing brace: no model step is spent on the forced <|end|>.
        return xgr.GrammarMatcher(grammar or self.grammar, terminate_without_stop_token=True)

    def _cited_grammar(self, prompt: list[int]) -> xgr.CompiledGrammar:
        """The grammar whose strings cite only this prompt's numbers (`citations`)."""
        user = prompt[prompt.index(self.tokenizer.user_id) + 1 :]
        ebnf = cited_grammar(self._schema_ebnf, self.tokenizer.decode(user))
        return self._compiler.compile_grammar(ebnf)

    def _string_full(self, text: bytes) -> bool:
        """Inside a string that has reached its length limit? (Strings hold no quotes.)"""
        if text.count(b'"') % 2 == 0:
            return False
        limit = self._string_max[b'"risk_factors":' in text]
        return len(text) - text.rfind(b'"') - 1 >= limit

    def _jump(self, forced: str) -> tuple[list[int], bytes]:
        """Tokens and bytes of the forced run minus its last pre-tokenizer piece (cached)."""
        hit = self._jumps.get(forced)
        if hit is None:
            pieces = self.tokenizer.backend.pre_tokenizer.pre_tokenize_str(forced)
            whole = forced.endswith(_BEFORE_NUMBER)
            head = forced if whole else forced[: pieces[-1][1][0]] if pieces else ""
            hit = (self.tokenizer.encode(head) if head else [], head.encode())
            self._jumps[forced] = hit
        return hit

    def _close(self, matcher, logits, bitmask, j: int) -> int:
        """Row j's token in a string at its limit: a closing one, if the grammar allows one
        here (not mid-literal)."""
        _mask_row(matcher, logits, bitmask, j)
        closing = logits[j].masked_fill(~self._closes, -torch.inf)
        token = int((closing if closing.isfinite().any() else logits[j]).argmax())
        accept_tokens(matcher, [token])
        return token

    def warm(self, prefix: list[int]) -> None:
        """Keep the keys and values of a prefix many prompts will start with."""
        self._prefix_kv(prefix, store=True)

    @torch.no_grad()
    def _prefix_kv(self, prefix: list[int], store: bool) -> tuple[int, KVCache | None]:
        """(length, one-row cache) of the longest kept prefix of `prefix`; with `store`,
        first extend it to all of `prefix` and keep that."""
        kept = [k for k in self._prefixes if len(k) <= len(prefix) and tuple(prefix[: len(k)]) == k]
        best = max(kept, key=len, default=())
        kv = self._prefixes.get(best)
        if best:
            self._prefixes.move_to_end(best)
        if not store or len(best) == len(prefix):
            return len(best), kv
        cache = KVCache(self.model.config, 1, len(prefix), self._dtype)
        if kv is not None:
            cache.start_from(kv)
        self.model(torch.tensor([prefix[len(best) :]]), cache=cache, last=1)
        self._prefixes[tuple(prefix)] = cache
        while len(self._prefixes) > PREFIXES_KEPT:
            self._prefixes.popitem(last=False)
        return len(prefix), cache

    def decode(
        self,
        prompts: Sequence[list[int]],
        mode: str = "full",
        batch_size: int = 32,
        conviction: str = "read",
        calibration: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> list[Signal]:
        """One `Signal` per prompt, in order; mode "signal" leaves the text fields empty;
        conviction "read" or "expected" (see the module docstring). `calibration` maps the
        expectation, unrounded, to a probability (`calibrate.Calibration`); "expected" only."""
        if conviction not in CONVICTIONS:
            raise ValueError(f"conviction must be one of {CONVICTIONS}, not {conviction!r}")
        if calibration is not None and conviction != "expected":
            raise ValueError("a calibration maps the expected conviction: conviction='expected'")
        scored = self.decode_scored(prompts, mode, batch_size)
        values = np.array([expected for _, expected in scored], dtype=float)
        if calibration is not None and len(values):
            values = calibration(values)
        signals = []
        for (text, _), value in zip(scored, values, strict=True):
            signal = parse_signal(text, mode == "signal")
            if conviction == "expected":
                # 4 decimals, not the 2 the model writes: a probability the manager ranks
                # BUYs by, and calibrated ones crowd into a narrow band
                signal = signal.model_copy(update={"conviction": round(float(value), 4)})
            signals.append(signal)
        return signals

    def decode_text(
        self, prompts: Sequence[list[int]], mode: str = "full", batch_size: int = 32
    ) -> list[bytes]:
        """The raw JSON the model wrote (signal mode: up to the character after the hold)."""
        return [text for text, _ in self.decode_scored(prompts, mode, batch_size)]

    def decode_scored(
        self, prompts: Sequence[list[int]], mode: str = "full", batch_size: int = 32
    ) -> list[tuple[bytes, float]]:
        """(raw JSON, expected conviction) per prompt, in order."""
        signal_only = check_mode(mode)
        rows = by_length(prompts, batch_size, lambda b: self._decode_batch(b, signal_only))
        return [(cut(text, signal_only), expected) for text, expected in rows]

    @torch.no_grad()
    def _decode_batch(
        self, prompts: list[list[int]], signal_only: bool
    ) -> list[tuple[bytes, float]]:
        lead, lead_text = self._lead
        b, pad = len(prompts), self.tokenizer.pad_id
        # Signal mode never reaches a string: the shared grammar decodes its keys the same.
        cite = self.cite and not signal_only
        matchers = [self._matcher(self._cited_grammar(p) if cite else None) for p in prompts]
        self.model.cover_positions(max(map(len, prompts)) + self.max_new_tokens + 1)
        for m in matchers:
            accept_tokens(m, lead)
        text = [bytearray(lead_text) for _ in range(b)]
        count = [len(lead)] * b  # tokens of the answer so far, per row
        pos = [len(p) + len(lead) for p in prompts]  # each row's next rotary position
        # Every row feeds at least its last prompt token, whose logits start the answer.
        shared = _common_prefix(prompts, max(0, min(map(len, prompts)) - 1))
        cached, kv = self._prefix_kv(prompts[0][:shared], store=b > 1)
        seqs: list[list[int] | None] = [p[cached:] + lead for p in prompts]
        rows = list(range(b))  # cache row -> prompt index (finished rows are dropped)
        # Room for the signal's few tokens: attention runs over every slot (`KVCache`).
        cache = KVCache(self.model.config, b, max(pos) + 8, self._dtype)
        valid = torch.zeros(b, cache.length, dtype=torch.bool)
        if kv is not None:  # the shared prefix: slots 0..cached-1 of every row
            cache.start_from(kv)
            valid[:, :cached] = True
        start_pos = [cached] * b
        expected: list[float | None] = [None] * b  # the mean conviction under the model
        mixed: list[float | None] = [None] * b  # ... over its decisions too (docstring)
        bitmask = xgr.allocate_token_bitmask(b, self.model.config.vocab_size)
        # per cache row: branches for the next call; the first always feeds the decisions'
        # openings where each is one token, whose ends give the conviction under each
        first = self._openings if self._opening_ids is not None else None
        guesses = [first or self._guesses(t) for t in text]
        while True:
            # One forward call: each live row's pending tokens, then its guessed branches,
            # left-padded to the longest (`_layout`).
            parts = [None if s is None else [s, *g] for s, g in zip(seqs, guesses, strict=True)]
            call = _layout(parts, pad, start_pos)
            first, width = cache.pos, call.ids.size(1)
            valid = _grow(cache, valid, first + width)
            valid[:, first : first + width] = call.real
            logits = self.model(
                call.ids,
                cache=cache,
                key_mask=_branch_mask(valid, call.group, first) if call.branched else valid,
                positions=call.positions,
                last=call.last,
            )
            # (row, part): the logits at the end of that part of the row choose its next token;
            # part 0, the pending tokens, first; then a branch, if the row wrote just that.
            phase = [(j, 0) for j, s in enumerate(seqs) if s is not None]
            taken = [0] * len(seqs)  # per row, the branch it wrote (0: none)
            while phase:
                at = [call.spans[j][g][1] - 1 - (width - call.last) for j, g in phase]
                step = logits[[j for j, _ in phase], at]  # (rows of the phase, vocab)
                best = step.argmax(-1).tolist()
                if self._opening_ids is not None:
                    self._mix(logits, call, width, phase, parts, text, rows, step, mixed)
                starting = [
                    i for i, (j, _) in enumerate(phase) if text[rows[j]].endswith(b'"conviction":')
                ]
                if starting:  # the conviction's first token comes next: its expectation
                    p = step[starting].softmax(-1)[:, self._conviction_ids]
                    means = (p @ self._conviction_values) / p.sum(-1).clamp(min=1e-12)
                    for i, mean in zip(starting, means.tolist(), strict=True):
                        expected[rows[phase[i][0]]] = mean
                hits = []
                for i, (j, g) in enumerate(phase):
                    r = rows[j]
                    if cite and self._string_full(text[r]):
                        token = self._close(matchers[r], step, bitmask, i)
                    else:
                        token = choose(matchers[r], step, bitmask, i, best[i])
                    seq, done = advance(
                        matchers[r], token, self._bytes, text[r], self._jump, signal_only
                    )
                    count[r] += len(seq)
                    if not done:
                        check_budget(count[r], self.max_new_tokens, r, text[r])
                    # the branch the row just wrote, if any: its tokens are in the cache
                    branches = parts[j][1:] if g == 0 and not done else []
                    hit = next((k for k, br in enumerate(branches, 1) if br == seq), 0)
                    pos[r] += len(seq)
                    if hit:
                        taken[j] = hit
                        hits.append((j, hit))
                    else:
                        start_pos[j], seqs[j] = pos[r] - len(seq), None if done else seq
                        guesses[j] = [] if done else self._guesses(text[r])
                phase = hits
            if call.branched:  # branches not taken: their slots are never attended to again
                taken_group = torch.tensor(taken)[:, None]
                valid[:, first : first + width] &= (call.group == 0) | (call.group == taken_group)
            left = [j for j, s in enumerate(seqs) if s is not None]
            if not left:
                return [
                    (bytes(t), m if m is not None else _expected(bytes(t), e))
                    for t, e, m in zip(text, expected, mixed, strict=True)
                ]
            if len(left) <= len(rows) // 2:  # drop finished rows; halving bounds the copying
                keep = torch.tensor(left)
                cache.keep(keep)
                valid = valid[keep]
                rows, seqs = [rows[j] for j in left], [seqs[j] for j in left]
                start_pos, guesses = [start_pos[j] for j in left], [guesses[j] for j in left]

    def _mix(self, logits, call, width, phase, parts, text, rows, step, mixed) -> None:
        """The expected conviction over the model's decisions and convictions, for the rows
        about to choose a decision whose guessed openings were fed in this call: each
        branch's end holds the conviction distribution given that decision."""
        lead_text = self._lead[1]
        for i, (j, g) in enumerate(phase):
            if g or text[rows[j]] != lead_text or parts[j][1:] != self._openings:
                continue
            p_decision = step[i, self._opening_ids].softmax(-1)
            ends = [call.spans[j][k][1] - 1 - (width - call.last) for k in (1, 2, 3)]
            p = logits[j, ends].softmax(-1)[:, self._conviction_ids]
            means = (p @ self._conviction_values) / p.sum(-1).clamp(min=1e-12)
            mixed[rows[j]] = float((p_decision * means).sum())


def schema_grammar(max_reasoning: int, max_item: int, max_items: int) -> xgr.Grammar:
    """The grammar of `signal_schema`: compact JSON, keys in order, every string bounded."""
    return xgr.Grammar.from_json_schema(
        json.dumps(signal_schema(True, max_reasoning, max_item, max_items)),
        any_whitespace=False,
        separators=(",", ":"),
        strict_mode=True,
    )


def compiler(info: xgr.TokenizerInfo) -> xgr.GrammarCompiler:
    # xgrammar's compile cache (cache_enabled=True) fails an internal check on the schema
    # (0.2.8): decoders keep their compiled grammars themselves.
    return xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)


def check_mode(mode: str) -> bool:
    """Whether `mode` is signal-only (ValueError for an unknown mode)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return mode == "signal"


def by_length(prompts: Sequence[list[int]], batch_size: int, run: Callable[[list], list]) -> list:
    """`run` over batches of length-sorted prompts (little padding); results in input order."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list = [None] * len(prompts)
    for s in range(0, len(order), batch_size):
        batch = order[s : s + batch_size]
        for i, result in zip(batch, run([list(prompts[i]) for i in batch]), strict=True):
            out[i] = result
    return out


def cut(text: bytes, signal_only: bool) -> bytes:
    """Signal mode: the text up to the character after the hold (a jump may run past it)."""
    end = _HOLD_END.search(text) if signal_only else None
    return text if end is None else text[: end.end()]


def _common_prefix(prompts: Sequence[list[int]], limit: int) -> int:
    """Length of the longest prefix (at most `limit`) that every prompt starts with."""
    first, n = prompts[0], limit
    for p in prompts[1:]:
        n = next((i for i, (a, c) in enumerate(zip(first[:n], p[:n], strict=True)) if a != c), n)
    return n


def conviction_tokens(token_bytes: list[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, values) of the tokens that begin a conviction spelled as in training
    (`0.00` .. `1.00`); a token's value is the mean of the convictions that begin with it."""
    starts: dict[bytes, list[float]] = {}
    for hundredths in range(101):
        spelled = f"{hundredths / 100:.2f}".encode()
        for end in range(1, len(spelled) + 1):
            starts.setdefault(spelled[:end], []).append(hundredths / 100)
    ids = [i for i, b in enumerate(token_bytes) if b in starts]
    values = [sum(starts[token_bytes[i]]) / len(starts[token_bytes[i]]) for i in ids]
    return torch.tensor(ids, dtype=torch.long), torch.tensor(values)


def _expected(text: bytes, expected: float | None) -> float:
    if expected is None:  # no step began the number after `"conviction":`: what it wrote
        return float(re.search(rb'"conviction":([0-9.]+)', text).group(1))
    return expected


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
    # takes is the allowed argmax. A few checks cost less than one mask.
    top = logits[j].topk(CANDIDATES)
    values, ids = top.values.tolist(), top.indices.tolist()
    # trusted only above the cut: a token tied with the last might have a lower id outside
    for _, token in sorted((-v, t) for v, t in zip(values, ids, strict=True) if v > values[-1]):
        if matcher.accept_token(token):
            return token
    _mask_row(matcher, logits, bitmask, j)
    token = int(logits[j].argmax())
    accept_tokens(matcher, [token])
    return token


def _mask_row(matcher: xgr.GrammarMatcher, logits: torch.Tensor, bitmask: torch.Tensor, j: int):
    """Disallowed tokens of row j to -inf, in place."""
    matcher.fill_next_token_bitmask(bitmask, j)
    xgr.apply_token_bitmask_inplace(logits, bitmask.to(logits.device), indices=[j])


def advance(
    matcher: xgr.GrammarMatcher,
    token: int,
    token_bytes: list[bytes],
    text: bytearray,
    jump: Callable[[str], tuple[list[int], bytes]],
    signal_only: bool,
) -> tuple[list[int], bool]:
    """After `choose`: append a row's token to `text` and accept the forced run after it
    (`jump`): (the tokens to feed next step, whether the row is done)."""
    seq = [token]
    text += token_bytes[token]
    done = matcher.is_terminated() or (signal_only and _HOLD_END.search(text) is not None)
    if not done:
        forced, forced_text = jump(matcher.find_jump_forward_string())
        accept_tokens(matcher, forced)
        seq += forced
        text += forced_text
        done = signal_only and _HOLD_END.search(text) is not None
    return seq, done


def check_budget(count: int, max_new_tokens: int, row: int, text: bytearray) -> None:
    if count >= max_new_tokens:
        raise DecodeError(
            f"no complete signal within max_new_tokens={max_new_tokens}"
            f" (row {row}: {bytes(text[:80])!r}...)"
        )


def accept_tokens(matcher: xgr.GrammarMatcher, tokens: list[int]) -> None:
    for token in tokens:
        if not matcher.accept_token(token):  # the mask allowed it: a bug, never the model
            raise DecodeError(f"grammar rejected token {token}")


@dataclass
class _Call:
    """One forward call of the batched decoder, laid out by `_layout`."""

    ids: torch.Tensor  # (rows, width), left-padded
    real: torch.Tensor  # (rows, width): True at tokens, False at pads
    positions: torch.Tensor  # (rows, width): rotary positions, 0 at pads
    group: torch.Tensor  # (rows, width): 0 at pending tokens and pads, k at branch k's
    spans: list[list[tuple[int, int]]]  # per row, the columns [begin, end) of each part
    last: int  # logits are needed at the last `last` columns: every part's end is there

    @property
    def branched(self) -> bool:
        return bool(self.group.any())


def _layout(parts: list[list[list[int]] | None], pad: int, start: list[int]) -> _Call:
    """Row j's parts: its pending tokens (rotary positions from start[j]), then the branches
    guessed to follow them, each from the position after the pending tokens; None for a
    finished row (all pads). Filled in numpy: building the ids of 64 prompts from Python
    lists took 1.3 ms, this 0.19 (measured)."""
    lengths = [sum(map(len, p)) if p else 0 for p in parts]
    width = max(lengths)
    ids = np.full((len(parts), width), pad, dtype=np.int64)
    positions = np.zeros((len(parts), width), dtype=np.int64)
    group = np.zeros((len(parts), width), dtype=np.int64)
    spans: list[list[tuple[int, int]]] = []
    for j, row in enumerate(parts):
        if not row:
            spans.append([])
            continue
        pending, col = row[0], width - lengths[j]
        after = start[j] + len(pending)  # every branch's first position
        ids[j, col:] = [t for part in row for t in part]
        at = list(range(start[j], after))
        row_spans = [(col, col + len(pending))]
        for k, branch in enumerate(row[1:], 1):
            begin = row_spans[-1][1]
            group[j, begin : begin + len(branch)] = k
            at += range(after, after + len(branch))
            row_spans.append((begin, begin + len(branch)))
        positions[j, col:] = at
        spans.append(row_spans)
    real = torch.arange(width)[None, :] >= torch.tensor([width - n for n in lengths])[:, None]
    earliest = min(row[0][1] - 1 for row in spans if row)  # the first column needed
    return _Call(
        torch.from_numpy(ids),
        real,
        torch.from_numpy(positions),
        torch.from_numpy(group),
        spans,
        width - earliest,
    )


def _branch_mask(valid: torch.Tensor, group: torch.Tensor, first: int) -> torch.Tensor:
    """(rows, width, slots) per-query key mask for a call with branches at slots first..: a
    branch's tokens see the slots before the call, the pending tokens, and their own branch
    (causality hides later slots), never another branch."""
    width = group.size(1)
    mask = valid[:, None, :].repeat(1, width, 1)
    own = (group[:, None, :] == 0) | (group[:, None, :] == group[:, :, None])
    mask[:, :, first : first + width] &= own
    return mask


def _grow(cache: KVCache, valid: torch.Tensor, need: int) -> torch.Tensor:
    """Room for `need` slots, and 64 more: attention runs over every slot (`KVCache`), and
    each growth copies the cache (jump-forward steps leave padded slots too)."""
    have = cache.length
    if need <= have:
        return valid
    cache.grow(need + 64)
    return F.pad(valid, (0, cache.length - have))


def parse_signal(text: bytes, signal_only: bool = False) -> Signal:
    """The `Signal` a decoded text spells (signal mode: decision, conviction, hold only)."""
    if signal_only:
        end = _HOLD_END.search(text)
        if end is None:
            raise DecodeError(f"no hold_duration_days in {text!r}")
        data = json.loads(text[: end.end() - 1] + b"}")
        signal = Signal(**data, reasoning="")
    else:
        signal = Signal.model_validate_json(text)
    return signal.model_copy(update={"conviction": round(signal.conviction, 2)})
