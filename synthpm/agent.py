"""`PortfolioAgent`: the trained language model as a `SignalSource`.

It renders each context (with the live portfolio the engine passes in `Contexts.portfolio`)
into the same prompt the training data used, and decodes a `Signal` under the JSON schema,
so every answer is valid. `mode="signal"` decodes decision, conviction and hold days only
(fast, for backtests); `mode="full"` adds reasoning, risks, catalysts and exit triggers.
"""

from __future__ import annotations

from pathlib import Path

from synthpm.dataset.context import Context, Contexts
from synthpm.dataset.prompt import SYSTEM_PROMPT, render_prompt
from synthpm.limits import Limits
from synthpm.lm.decode import SignalDecoder
from synthpm.lm.train import load_model
from synthpm.signals import Signal


class PortfolioAgent:
    name = "lm"

    def __init__(self, model, tokenizer, limits: Limits | None = None, mode: str = "signal"):
        self.tokenizer = tokenizer
        self.decoder = SignalDecoder(model, tokenizer)
        self.limits = limits or Limits()
        self.mode = mode

    @classmethod
    def load(cls, path: str | Path, **options) -> PortfolioAgent:
        model, tokenizer = load_model(path)
        return cls(model, tokenizer, **options)

    def prompt_ids(self, context: Context) -> list[int]:
        return self.tokenizer.render(SYSTEM_PROMPT, render_prompt(context, self.limits))[0]

    def analyze(self, context: Context, mode: str = "full") -> Signal:
        return self.decoder.decode([self.prompt_ids(context)], mode=mode)[0]

    def signals(self, contexts: Contexts, mode: str | None = None) -> list[Signal]:
        prompts = [self.prompt_ids(c) for c in contexts]
        return self.decoder.decode(prompts, mode=mode or self.mode)

    def analyze_opportunity(self, ticker: str, date, price: float, **fields) -> Signal:
        """The seed system's call: a context from keyword fields (see `Context`)."""
        return self.analyze(Context(ticker=ticker, date=date, price=price, **fields))
