"""`PortfolioAgent`: the trained language model as a `SignalSource`.

It renders each context (with the live portfolio the engine passes in `Contexts.portfolio`)
into the same prompt the training data used, and decodes a `Signal` under the JSON schema,
so every answer is valid. `mode="signal"` decodes decision, conviction and hold days only
(fast, for backtests); `mode="full"` adds reasoning, risks, catalysts and exit triggers.

**One prompt.** The agent renders with `render_prompt`, the function that wrote the
training prompts, and with the limits of the run it trades in (`Contexts.limits`, set by
the engine), which are the ones the portfolio manager enforces; outside a backtest, with
the limits the model was trained with (`dataset.json` beside the model). `trained` is that
record: its `test_start` is the first date the model has not seen, which `backtest` and
`compare` check.

`load` takes either a `synthpm lm train` folder (our GPT, with the system prompt's keys and
values computed once up front) or a transformers folder: a LoRA adapter from `synthpm lm
lora`, or a plain converted model (over the tokenizer's own chat template; conviction as
written by default). One `SignalDecoder` serves both (`lm.adapters`).

Conviction, for our GPT, is by default the model's expectation ("expected": read from its
token probabilities over its decisions and convictions, see `decode`), not the value it
wrote ("read"). A written conviction is one token after the decision, so it jumps between
values and only ranks within the decision written; the expectation moves smoothly with the
evidence (`lm eval` reports both readings' per-date IC),
and the portfolio manager sizes positions by it.

**Calibrated.** Where the model folder has `calibration.json` (`synthpm lm calibrate`: an
isotonic map fitted on the validation split), the expected conviction goes through it
before rounding, so it is the probability that the stock beats the benchmark net of costs
over the hold, as `Signal` defines it; `calibration` is that map, None without one (the
expectation as is). The written conviction ("read") is never mapped: the map was fitted on
the expectation.

**Decided on the date.** Where the map has `bands` and a date brings at least
`cross_section` stocks (a backtest's or the daily loop's decision date), the agent first
reads every prompt's expectation (`SignalDecoder.expectations`) and decides by its rank
among the date's (`Bands.decide_on_date`): BUY the top 30%, SELL a holding in the bottom
30%, as the labels did. The model then writes its answer on from that decision. Why: the
labels are the date's ranks, so the part of an expectation that moves every stock of a date
alike is error, and fixed bands turned it into buying nearly every stock on some dates and
none on others (chosen on validation dates: `benchmarks/agent_variants.py`). Fewer stocks
(one analysed alone) are decided by the bands themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from synthpm.context import Context, Contexts
from synthpm.dataset.prompt import SYSTEM_PROMPT, holds_stock, render_prompt
from synthpm.limits import Limits
from synthpm.lm.calibrate import Calibration
from synthpm.lm.decode import SignalDecoder
from synthpm.lm.train import load_model
from synthpm.signals import Signal

CROSS_SECTION = 20  # the fewest stocks of one date decided by their ranks among each other


class PortfolioAgent:
    name = "lm"

    def __init__(
        self,
        model,
        tokenizer,
        limits: Limits | None = None,
        mode: str = "signal",
        conviction: str = "expected",
        trained: dict | None = None,
        calibration: Calibration | None = None,
        cross_section: int = CROSS_SECTION,
    ):
        self.trained = trained or {}  # the model's `dataset.json`: limits, split dates, ...
        if limits is None and "limits" in self.trained:
            limits = Limits(**self.trained["limits"])
        self.tokenizer, self.limits, self.mode = tokenizer, limits or Limits(), mode
        self.decoder = SignalDecoder(model, tokenizer)
        self.decoder.warm(SYSTEM_PROMPT)  # every prompt opens with the system turn
        self.options = {"conviction": conviction}
        self.cross_section = cross_section  # the fewest stocks of a date ranked on it
        self.calibration = None  # the map applied to conviction, if any
        if conviction == "expected" and calibration is not None:
            self.calibration = self.options["calibration"] = calibration

    def __reduce__(self):
        # The decoder's compiled grammar (xgrammar) cannot be pickled: a worker process (the
        # executor's) rebuilds the agent from its parts, as fresh as this one was built.
        conviction = self.options["conviction"]
        parts = (self.decoder.model, self.tokenizer, self.limits, self.mode, conviction)
        return type(self), (*parts, self.trained, self.calibration, self.cross_section)

    @classmethod
    def load(cls, path: str | Path, **options) -> PortfolioAgent:
        path = Path(path)
        record = path / "dataset.json"
        if record.is_file():
            options.setdefault("trained", json.loads(record.read_text()))
        if (path / "adapter_config.json").is_file() or (path / "config.json").is_file():
            from synthpm.lm.lora import load_adapter

            options.setdefault("conviction", "read")  # as written (module docstring)
            adapter = load_adapter(path)
            return cls(adapter.model, adapter.tokenizer, **options)
        model, tokenizer = load_model(path)
        options.setdefault("calibration", Calibration.load(path))
        return cls(model, tokenizer, **options)

    def prompt(self, context: Context, limits: Limits | None = None) -> str:
        """The user prompt, exactly as the training data renders it for this context and book."""
        return render_prompt(context, limits or self.limits)

    def prompt_ids(self, context: Context, limits: Limits | None = None) -> list[int]:
        return self.decoder.prompt_ids(SYSTEM_PROMPT, self.prompt(context, limits))

    def analyze(self, context: Context, mode: str = "full") -> Signal:
        return self.decoder.decode([self.prompt_ids(context)], mode=mode, **self.options)[0]

    def signals(self, contexts: Contexts, mode: str | None = None) -> list[Signal]:
        users = [self.prompt(c, contexts.limits) for c in contexts]
        prompts = [self.decoder.prompt_ids(SYSTEM_PROMPT, u) for u in users]
        decisions = self._on_date(contexts, users, prompts)
        return self.decoder.decode(
            prompts, mode=mode or self.mode, decisions=decisions, **self.options
        )

    def _on_date(self, contexts: Contexts, users: list[str], prompts: list) -> list[str] | None:
        """The decisions by rank on each date with `cross_section` stocks or more, by the
        bands on the others (module docstring); None where there are no bands to steer by."""
        bands = getattr(self.calibration, "bands", None)
        if bands is None or self.decoder.steering(self.calibration) is None:
            return None
        if len(prompts) < self.cross_section:  # no date can have enough: the bands decide
            return None
        dates = contexts.frame["date"].to_numpy()
        expected = self.decoder.expectations(prompts)
        held = np.array([holds_stock(u) for u in users])
        decisions = np.empty(len(prompts), dtype=object)
        for day in np.unique(dates):
            on = np.flatnonzero(dates == day)
            decide = bands.decide_on_date if len(on) >= self.cross_section else bands.decide
            decisions[on] = decide(expected[on], held[on])
        return decisions.tolist()

    def analyze_opportunity(self, ticker: str, date, **fields) -> Signal:
        """The seed system's call: a context from keyword fields (see `Context`; there is no
        price field: a back-adjusted price level would leak later splits and dividends)."""
        return self.analyze(Context(ticker=ticker, date=date, **fields))
