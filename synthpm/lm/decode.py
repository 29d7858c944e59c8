"""Decode `Signal`s from a model: greedy, under the JSON grammar, batched, with jump-forward.

One loop for every model: the model sits behind a thin adapter (`adapters`: our GPT, or a
transformers/PEFT model), the grammar, jump-forward and the greedy pick under it are
`grammar`'s, and each row's state is a `Row`.

- Batching: prompts are sorted by length, cut into batches and left-padded; the adapter hides
  pads from attention and gives each row its own positions, so batched output equals
  one-at-a-time output. Rows of a call feed different counts of tokens (a forced run goes in
  with the next call); the shorter ones are left-padded inside the call, masked like pads.
- Signal-only mode runs the schema's grammar (whose first three keys every cited grammar
  shares) and stops once the hold number ends, so its decision, conviction and hold are
  exactly full mode's.
- The decisions' openings: where the adapter takes branches (our GPT), the first call feeds
  after each prompt each decision's opening as training spelled it
  (`{"decision":"BUY","conviction":`), each a branch that sees the prompt and itself only.
  Their ends give the conviction's distribution given each decision at no extra call; a row
  that then writes an opening exactly chooses its conviction from that branch's logits, and
  the other branches' slots are never attended to again.
- Conviction, two readings (`decode(..., conviction=...)`): "read" (default) is the number
  the model wrote, greedy, rounded to 2 decimals, the one its reasoning goes with;
  "expected" is the mean under the model's own probabilities, over its decisions as well:
  sum over decisions d of P(d) x E[conviction | d], P(d) being the probability of d's
  opening (renormalised over the three) and E[conviction | d] = sum over tokens t of
  P(t | d) x value(t) / sum of P(t | d), over the tokens that begin a conviction as the
  training answers spell it (`0.00` .. `1.00`), value(t) the mean of the convictions that
  begin with t (`conviction_tokens`). Over the decisions, because the conviction comes after
  the decision: given BUY the model writes high values, given SKIP low ones, so the
  expectation given the decision written ranks only within that decision. Where an opening
  is not one token, or the adapter takes no branches, it is the expectation given the
  decision written. Greedy picks jump between values; the expectation moves smoothly with
  the evidence, which is what ranking and calibration need. `calibration` (`lm calibrate`'s
  map) turns the expectation, before rounding, into the probability of a win.
- The decision, steered: with a calibration that has `bands` (`lm calibrate`, fitted on
  validation), the expected conviction picks the decision instead of the greedy token: BUY
  at or above the buy band, SELL a held name (the prompt's POSITION says so:
  `prompt.holds_stock`) at or below the sell band, SKIP between. The row then writes that
  decision's opening and goes on from its branch, so its conviction and reasoning are the
  model's given that decision. Why: the labels BUY the top 30% of a date's outcomes, and a
  model whose view of a stock moves the probability of that by a few points never makes BUY
  the likeliest token; greedy decoding then writes the book's prior (SKIP for every
  stock), not the model's ranking. A caller that decided otherwise (the agent, by rank
  among a date's stocks) passes its `decisions`, written the same way; `expectations`
  reads the expectation alone, at the decision step, to decide them by.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import xgrammar as xgr
from pydantic import ValidationError

from synthpm.dataset.prompt import holds_stock
from synthpm.lm.adapters import Call, adapt
from synthpm.lm.citations import MAX_LITERAL
from synthpm.lm.grammar import (
    HOLD_END,
    DecodeError,
    SignalGrammar,
    accept_tokens,
    choose,
    max_chars,
    signal_schema,  # noqa: F401 (re-exported: its old home)
)
from synthpm.signals import DECISIONS, Signal, signal_json

MODES = ("full", "signal")
CONVICTIONS = ("read", "expected")


# (expected convictions, whether each row's book holds its stock) -> each row's decision
Steer = Callable[[np.ndarray, np.ndarray], list[str]]


class Scored(NamedTuple):
    """A decoded answer: the raw JSON, and the expected conviction (unrounded)."""

    text: bytes
    expected: float


class ConvictionTokens(NamedTuple):
    """The tokens that begin a conviction, and the mean of the convictions each begins."""

    ids: torch.Tensor
    values: torch.Tensor


@dataclass
class Row:
    """One prompt's answer while it is decoded."""

    index: int  # the prompt's place in its batch
    matcher: xgr.GrammarMatcher
    text: bytearray
    pending: list[int] | None  # what the next call feeds; None once the answer is done
    pos: int  # rotary position after the pending tokens
    count: int  # tokens of the answer so far
    held: bool = False  # the book holds the stock (read from the prompt when steering)
    expected: float | None = None  # E[conviction | the decision written]
    mixed: float | None = None  # ... over the decisions too

    @property
    def start(self) -> int:
        """Rotary position of the first pending token."""
        return self.pos - len(self.pending)

    def advance(self, token: int, grammar: SignalGrammar, signal_only: bool) -> list[int]:
        """Append the chosen `token` and the forced run after it (`grammar.jump`), which
        become the pending tokens; returns them."""
        seq = [token]
        self.text += grammar.bytes[token]
        done = self.matcher.is_terminated() or (signal_only and _held(self.text))
        if not done:
            forced = grammar.jump(self.matcher.find_jump_forward_string())
            accept_tokens(self.matcher, forced.ids)
            seq += forced.ids
            self.text += forced.text
            done = signal_only and _held(self.text)
        self.count += len(seq)
        self.pos += len(seq)
        self.pending = None if done else seq
        return seq

    def scored(self) -> Scored:
        if self.mixed is not None:
            return Scored(bytes(self.text), self.mixed)
        if self.expected is None:  # no step began the number after `"conviction":`
            written = re.search(rb'"conviction":([0-9.]+)', self.text).group(1)
            return Scored(bytes(self.text), float(written))
        return Scored(bytes(self.text), self.expected)


class SignalDecoder:
    """Greedy grammar-constrained decoding of chat prompts (`prompt_ids`) into `Signal`s, for
    our GPT and ChatTokenizer or a transformers model and its tokenizer (`adapters.adapt`)."""

    def __init__(
        self,
        model,
        tokenizer,
        max_new_tokens: int | None = None,
        max_reasoning: int = 300,
        max_item: int = 80,
        max_items: int = 3,
        cite: bool = True,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.adapter = adapt(model, tokenizer)
        self.grammar = SignalGrammar(self.adapter, max_reasoning, max_item, max_items)
        self.cite = cite and self.adapter.cites
        # The grammar's ceiling, which a row cannot exceed (one char >= one token); with
        # citing, a string may overrun its limit by a token and the literal it was writing.
        bound = max_chars(max_reasoning, max_item, max_items)
        if self.adapter.cites:
            overrun = MAX_LITERAL + max(map(len, self.grammar.bytes))
            bound += (1 + 3 * max_items) * overrun
        self.max_new_tokens = bound if max_new_tokens is None else max_new_tokens
        self._conviction = conviction_tokens(self.grammar.bytes)
        self._openings = self._opening_tokens() if self.adapter.branches else []
        # each decision's opening as one token: its probability is read where it is chosen
        single = len(self._openings) == len(DECISIONS) and all(len(o) == 1 for o in self._openings)
        self._opening_ids = [o[0] for o in self._openings] if single else None

    def _opening_tokens(self) -> list[list[int]]:
        """Each decision's opening after the lead, up to the conviction, as training spelled
        it (`signal_json`): `{"decision":"BUY","conviction":`."""
        lead = self.grammar.lead.text
        spelled = [signal_json(d, 0.5, 7, "", [], [], []).encode() for d in DECISIONS]
        openings = [s[: s.index(b"0.50")] for s in spelled]
        rest = [o[len(lead) :].decode() for o in openings if o.startswith(lead)]
        return [self.adapter.encode(o) for o in rest if o]

    def prompt_ids(self, system: str, user: str) -> list[int]:
        """The prompt as the model was trained on it, up to where the answer starts."""
        return self.adapter.prompt(system, user)

    def warm(self, system: str) -> None:
        """Keep the keys and values of the system turn every prompt opens with (where the
        adapter keeps prefixes)."""
        self.adapter.warm(system)

    def decode(
        self,
        prompts: Sequence[list[int]],
        mode: str = "full",
        batch_size: int | None = None,
        conviction: str = "read",
        calibration: Callable[[np.ndarray], np.ndarray] | None = None,
        decisions: Sequence[str] | None = None,
    ) -> list[Signal]:
        """One `Signal` per prompt, in order; mode "signal" leaves the text fields empty;
        conviction "read" or "expected" (see the module docstring). `calibration` maps the
        expectation, unrounded, to a probability (`calibrate.Calibration`); "expected" only.
        Where it has `bands`, they steer the decision (module docstring), unless `decisions`
        gives each prompt's decision (`decode_scored`)."""
        if conviction not in CONVICTIONS:
            raise ValueError(f"conviction must be one of {CONVICTIONS}, not {conviction!r}")
        if calibration is not None and conviction != "expected":
            raise ValueError("a calibration maps the expected conviction: conviction='expected'")
        steer = self.steering(calibration)
        scored = self.decode_scored(prompts, mode, batch_size, steer, decisions)
        values = np.array([s.expected for s in scored], dtype=float)
        if calibration is not None and len(values):
            values = calibration(values)
        signals = []
        for s, value in zip(scored, values, strict=True):
            signal = parse_signal(s.text, mode == "signal")
            if conviction == "expected":
                # 4 decimals, not the 2 the model writes: a probability the manager ranks
                # BUYs by, and calibrated ones crowd into a narrow band
                signal = signal.model_copy(update={"conviction": round(float(value), 4)})
            signals.append(signal)
        return signals

    def decode_text(
        self, prompts: Sequence[list[int]], mode: str = "full", batch_size: int | None = None
    ) -> list[bytes]:
        """The raw JSON the model wrote (signal mode: up to the character after the hold)."""
        return [s.text for s in self.decode_scored(prompts, mode, batch_size)]

    def steering(self, calibration: object) -> Steer | None:
        """The decision by the calibration's bands (module docstring); None where there are no
        bands or the decisions' openings are not single tokens to choose between."""
        bands = getattr(calibration, "bands", None)
        return None if bands is None or self._opening_ids is None else bands.decide

    def decode_scored(
        self,
        prompts: Sequence[list[int]],
        mode: str = "full",
        batch_size: int | None = None,
        steer: Steer | None = None,
        decisions: Sequence[str] | None = None,
    ) -> list[Scored]:
        """The raw JSON and the expected conviction per prompt, in order; `steer` picks the
        decisions (`steering`), else greedy; `decisions`, one per prompt, are written
        instead where the openings are single tokens to choose between."""
        signal_only = check_mode(mode)
        batch_size = batch_size or self.adapter.batch_size
        if decisions is not None and len(decisions) != len(prompts):
            raise ValueError(f"{len(decisions)} decisions for {len(prompts)} prompts")

        def run(batch: list[int]) -> list[Scored]:
            chosen = steer
            if decisions is not None:  # every row of a batch chooses at its first call
                chosen = lambda mixed, held: [decisions[i] for i in batch]  # noqa: E731
            return self._decode_batch([list(prompts[i]) for i in batch], signal_only, chosen)

        scored = by_length(prompts, batch_size, run)
        return [Scored(cut(s.text, signal_only), s.expected) for s in scored]

    def expectations(self, prompts: Sequence[list[int]], batch_size: int | None = None):
        """Each prompt's expected conviction over the decisions (module docstring), read
        at the decision step without decoding on; NaN where the openings are not single
        tokens to mix over."""
        batch_size = batch_size or self.adapter.batch_size
        if self._opening_ids is None:
            return np.full(len(prompts), np.nan)
        run = lambda b: self._decode_batch([list(prompts[i]) for i in b], True, None, True)  # noqa: E731
        return np.array(by_length(prompts, batch_size, run), dtype=float)

    @torch.no_grad()
    def _decode_batch(
        self,
        prompts: list[list[int]],
        signal_only: bool,
        steer: Steer | None,
        expectations_only: bool = False,
    ) -> list:
        lead = self.grammar.lead
        # Signal mode never reaches a string: the shared grammar decodes its keys the same.
        cite = self.cite and not signal_only
        rows = []
        for i, prompt in enumerate(prompts):
            user = self.adapter.user_text(prompt) if cite or steer is not None else None
            matcher = self.grammar.matcher(user if cite else None)
            accept_tokens(matcher, lead.ids)
            position = len(prompt) + len(lead.ids)
            text = bytearray(lead.text)
            held = steer is not None and holds_stock(user)
            rows.append(Row(i, matcher, text, None, position, len(lead.ids), held))
        cached = self.adapter.start(prompts, len(lead.ids), self.max_new_tokens)
        for row, prompt in zip(rows, prompts, strict=True):
            row.pending = prompt[cached:] + lead.ids
        live = list(rows)  # cache row -> its Row (finished rows are dropped in halves)
        bitmask = xgr.allocate_token_bitmask(len(rows), self.adapter.vocab)
        branches = self._openings  # the first call only
        while True:
            call = layout(live, self.adapter.pad, branches)
            logits = self.adapter.forward(call)
            taken = self._choose(live, call, logits, bitmask, cite, signal_only, steer)
            if expectations_only:
                return [row.mixed for row in rows]
            if branches:
                self.adapter.settle(taken)
                branches = []
            left = [j for j, row in enumerate(live) if row.pending is not None]
            if not left:
                return [row.scored() for row in rows]
            if len(left) <= len(live) // 2:  # drop finished rows; halving bounds the copying
                self.adapter.keep(left)
                live = [live[j] for j in left]

    def _choose(
        self,
        live: list[Row],
        call: Call,
        logits,
        bitmask,
        cite: bool,
        signal_only: bool,
        steer: Steer | None = None,
    ) -> list[int]:
        """Each live row's next token and forced run, from this call's logits at its pending
        tokens' end; then, for the rows that wrote a branch exactly, from that branch's end.
        Per cache row, the branch it wrote (0: none)."""
        phase = [(j, 0) for j, row in enumerate(live) if row.pending is not None]
        taken = [0] * len(live)
        mix = self._opening_ids is not None and call.group is not None
        while phase:
            step = logits[[j for j, _ in phase], [call.ends[g] for _, g in phase]]
            best = step.argmax(-1).tolist()
            if mix:  # the rows about to choose a decision, once
                rows = [j for j, _ in phase]
                self._mix(live, call, logits, rows, step)
                if steer is not None:  # the opening of the decision the bands pick
                    mixed = np.array([live[j].mixed for j in rows], dtype=float)
                    picked = steer(mixed, np.array([live[j].held for j in rows]))
                    best = [self._opening_ids[DECISIONS.index(d)] for d in picked]
                mix = False
            starting = [i for i, (j, _) in enumerate(phase) if live[j].text.endswith(_OPENED)]
            if starting:  # the conviction's first token comes next: its expectation
                means = self._mean_conviction(step[starting])
                for i, mean in zip(starting, means.tolist(), strict=True):
                    live[phase[i][0]].expected = mean
            hits = []
            for i, (j, g) in enumerate(phase):
                row = live[j]
                if cite and self.grammar.string_full(row.text):
                    token = self.grammar.close(row.matcher, step, bitmask, i)
                else:
                    token = choose(row.matcher, step, bitmask, i, best[i])
                seq = row.advance(token, self.grammar, signal_only)
                if row.pending is not None and row.count >= self.max_new_tokens:
                    raise DecodeError(
                        f"no complete signal within max_new_tokens={self.max_new_tokens}"
                        f" (row {row.index}: {bytes(row.text[:80])!r}...)"
                    )
                # the branch the row just wrote, if any: its tokens are in the cache
                branches = self._openings if g == 0 and call.group is not None else []
                hit = next((k for k, br in enumerate(branches, 1) if br == seq), 0)
                if hit and row.pending is not None:
                    taken[j] = hit
                    hits.append((j, hit))
            phase = hits
        return taken

    def _mix(self, live: list[Row], call: Call, logits, rows: list[int], step) -> None:
        """The expected conviction over the model's decisions and convictions, for these
        rows (step's), about to choose a decision: each opening branch's end holds the
        conviction's distribution given that decision."""
        for i, j in enumerate(rows):
            p_decision = step[i, self._opening_ids].softmax(-1)
            means = self._mean_conviction(logits[j, call.ends[1:]])
            live[j].mixed = float((p_decision * means).sum())

    def _mean_conviction(self, logits: torch.Tensor) -> torch.Tensor:
        """Per row of logits, the mean conviction its first token begins (module docstring)."""
        p = logits.softmax(-1)[:, self._conviction.ids]
        return (p @ self._conviction.values) / p.sum(-1).clamp(min=1e-12)


_OPENED = b'"conviction":'  # a text that ends so: the conviction's first token comes next


def _held(text: bytearray) -> bool:
    """Signal mode is done: the hold number has ended."""
    return HOLD_END.search(text) is not None


def layout(rows: list[Row], pad: int, branches: list[list[int]]) -> Call:
    """The call feeding each live row's pending tokens (rotary positions from its start),
    then the same `branches` after each, each branch from the position after them; a
    finished row is all pads. Filled in numpy, which is quicker than tensors from lists."""
    after = sum(map(len, branches))
    lengths = [0 if row.pending is None else len(row.pending) + after for row in rows]
    width = max(lengths)
    ids = np.full((len(rows), width), pad, dtype=np.int64)
    positions = np.zeros((len(rows), width), dtype=np.int64)
    tail = [t for branch in branches for t in branch]
    for j, row in enumerate(rows):
        if row.pending is None:
            continue
        col = width - lengths[j]
        ids[j, col:] = row.pending + tail
        at = list(range(row.start, row.pos))
        for branch in branches:
            at += range(row.pos, row.pos + len(branch))
        positions[j, col:] = at
    real = torch.arange(width)[None, :] >= torch.tensor([width - n for n in lengths])[:, None]
    ends, group = [0], None  # logits at the pending tokens' end, then at each branch's
    if branches:
        group = torch.zeros(width, dtype=torch.long)
        for k, branch in enumerate(branches, 1):
            begin = width - after + ends[-1]
            group[begin : begin + len(branch)] = k
            ends.append(ends[-1] + len(branch))
    return Call(torch.from_numpy(ids), real, torch.from_numpy(positions), group, after + 1, ends)


def check_mode(mode: str) -> bool:
    """Whether `mode` is signal-only (ValueError for an unknown mode)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    return mode == "signal"


def by_length(prompts: Sequence[list[int]], batch_size: int, run: Callable[[list], list]) -> list:
    """`run` over batches of length-sorted prompts (little padding), given each batch's
    places in `prompts`; results in input order."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list = [None] * len(prompts)
    for s in range(0, len(order), batch_size):
        batch = order[s : s + batch_size]
        for i, result in zip(batch, run(batch), strict=True):
            out[i] = result
    return out


def cut(text: bytes, signal_only: bool) -> bytes:
    """Signal mode: the text up to the character after the hold (a jump may run past it)."""
    end = HOLD_END.search(text) if signal_only else None
    return text if end is None else text[: end.end()]


def conviction_tokens(token_bytes: list[bytes]) -> ConvictionTokens:
    """The tokens that begin a conviction spelled as in training (`0.00` .. `1.00`); a
    token's value is the mean of the convictions that begin with it."""
    starts: dict[bytes, list[float]] = {}
    for hundredths in range(101):
        spelled = f"{hundredths / 100:.2f}".encode()
        for end in range(1, len(spelled) + 1):
            starts.setdefault(spelled[:end], []).append(hundredths / 100)
    ids = [i for i, b in enumerate(token_bytes) if b in starts]
    values = [sum(starts[token_bytes[i]]) / len(starts[token_bytes[i]]) for i in ids]
    return ConvictionTokens(torch.tensor(ids, dtype=torch.long), torch.tensor(values))


def parse_signal(text: bytes, signal_only: bool = False) -> Signal:
    """The `Signal` a decoded text spells (signal mode: decision, conviction, hold only).

    Text that spells no valid signal (any model's output may be anything) raises a
    `DecodeError` naming the problem and quoting the start of the text."""
    try:
        if signal_only:
            end = HOLD_END.search(text)
            if end is None:
                raise DecodeError(f"no hold_duration_days in {text[:200]!r}")
            data = json.loads(text[: end.end() - 1] + b"}")
            if not isinstance(data, dict):
                raise DecodeError(f"not a valid signal (not a JSON object): {text[:200]!r}")
            signal = Signal(**{**data, "reasoning": ""})
        else:
            signal = Signal.model_validate_json(text)
    except ValidationError as error:  # pydantic names each field at fault
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'text'}: {e['msg']}" for e in error.errors()
        )
        raise DecodeError(f"not a valid signal ({problems}): {text[:200]!r}") from None
    except (ValueError, TypeError) as error:  # JSON syntax, bytes that are not UTF-8
        raise DecodeError(f"not a valid signal ({error}): {text[:200]!r}") from None
    return signal.model_copy(update={"conviction": round(signal.conviction, 2)})
