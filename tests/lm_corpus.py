"""Fake prompts and answers for the language-model tests and `benchmarks/lm_bench.py`.

Text with the shape of the real data (tickers, prices, percentages, compact `Signal` JSON)
made from a seeded RNG, so neither needs a dataset on disk.
"""

from __future__ import annotations

import random

from synthpm.signals import signal_json

WORDS = [
    "stock",
    "price",
    "rose",
    "fell",
    "earnings",
    "guidance",
    "margin",
    "sector",
    "volume",
    "momentum",
    "risk",
    "rate",
    "revenue",
    "beat",
    "miss",
    "dividend",
    "buyback",
    "debt",
    "cash",
    "flow",
    "outlook",
    "downgrade",
    "upgrade",
    "analyst",
    "filing",
    "quarter",
]
SYSTEM = "You are a portfolio manager. Answer with one JSON signal."


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def user(rng: random.Random, chars: int | None = None) -> str:
    """A prompt of 1-6 sentences, or one filled to about `chars` characters."""
    head = (
        f"Ticker {rng.choice(['AAPL', 'MSFT', 'XOM', 'JPM'])} closed at {rng.uniform(10, 500):.2f}."
    )
    if chars is None:
        return " ".join([head] + [sentence(rng, 8) for _ in range(rng.randint(1, 6))])
    parts = [head]
    while sum(map(len, parts)) < chars:
        parts.append(f"{rng.choice(WORDS)} {rng.uniform(-50, 500):.2f}% {sentence(rng, 6)}")
    return " ".join(parts)[:chars]


def answer(rng: random.Random, reasoning_words: int = 12) -> str:
    return signal_json(
        rng.choice(["BUY", "SELL", "SKIP"]),
        rng.random(),
        rng.randint(1, 365),
        sentence(rng, reasoning_words),
        [sentence(rng, 4) for _ in range(rng.randint(0, 3))],
        [sentence(rng, 4) for _ in range(rng.randint(0, 2))],
        [sentence(rng, 3)],
    )
