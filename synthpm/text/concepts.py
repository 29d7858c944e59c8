"""Concepts: what a text is about, as a score per concept.

A concept is a few seed phrases; its prototype is the normalised mean of their embeddings.
A text's score is its cosine similarity to the prototype, minus its similarity to the
prototype of the concept's `against` phrases where it has some (so a generic stock post,
close to every finance phrase, scores near zero rather than high on everything).

Built in: bullish (against bearish phrases: the tone's direction), bearish (against
directionless stock talk), uncertainty (against certainty) and hype (against a results
report's calm). Retail attention is not a concept but a
count (message volume and its surprise), made in `text.factors`. A user's own concepts come
from a YAML file:

    concepts:
      takeover:
        seeds: ["rumoured takeover bid", "buyout offer for the company"]
        against: ["no deal talk"]          # optional
      bullish:                            # a built-in name replaces the built-in's seeds
        seeds: ["to the moon"]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthpm.data.errors import ConfigError

NAME = re.compile(r"[a-z][a-z0-9_]{0,30}")

# Directionless stock talk in the posts' own style: what bearish talk is measured against.
# Chosen, as every phrase here, by reading the posts each definition ranks highest and
# lowest and the scores' correlations on the stocknet tweets, never by their returns.
STOCK_TALK = (
    "$ aapl stock news today",
    "watching $ spy and $ qqq",
    "earnings call for $ msft this week",
    "trading update on $ ge shares",
    "rt AT_USER $ xom stock quote URL",
)
BULL = (
    "bullish, going higher",
    "strong buy, the stock will rally",
    "buying more shares, long and confident",
    "breakout to new highs, great earnings",
    "upgrade, price target raised",
    "calls are printing, to the moon",
)
BEAR = (
    "bearish, going lower",
    "sell now, the stock will crash",
    "shorting this, puts",
    "breakdown to new lows, terrible earnings",
    "downgrade, price target cut",
    "overvalued and falling, get out",
)


@dataclass(frozen=True)
class Concept:
    name: str
    seeds: tuple[str, ...]
    against: tuple[str, ...] = ()


BUILTIN = (
    # tone: bullish against bearish phrases, so a post's direction, not its being about
    # stocks, moves it (against neutral phrases, bullish and bearish correlated 0.91)
    Concept("bullish", BULL, BEAR),
    Concept("bearish", BEAR, STOCK_TALK),  # bearish talk beyond directionless stock talk
    Concept(
        "uncertainty",
        (
            "not sure what happens next",
            "uncertain outlook, could go either way",
            "risky and volatile, hard to say",
            "confused by the guidance, unclear",
            "waiting to see, too much risk",
        ),
        (
            "clear and certain outlook",
            "guidance confirmed, no surprises",
            "stable and predictable results",
        ),
    ),
    Concept(
        "hype",
        (
            "huge move, must buy now!!!",
            "this is going to explode, don't miss it",
            "massive gains incoming, hot stock alert",
            "insane rally, best trade ever",
            "rocket, moon, lambo",
        ),
        (  # a results report's calm
            "steady quarter, results in line",
            "the company reported revenue as expected",
            "shares little changed",
        ),
    ),
)


@dataclass(frozen=True)
class ConceptSet:
    concepts: tuple[Concept, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.concepts]

    def phrases(self) -> list[str]:
        """Every seed and against phrase: the fixed corpus the tfidf embedder is fitted on."""
        return sorted({p for c in self.concepts for p in (*c.seeds, *c.against)})

    def scores(self, vectors: np.ndarray, encode) -> np.ndarray:
        """(n texts, k concepts) scores of L2-normalised `vectors`; `encode` embeds phrases."""

        def prototype(phrases: Sequence[str]) -> np.ndarray:
            mean = encode(list(phrases)).mean(axis=0)
            norm = np.linalg.norm(mean)
            return mean / norm if norm > 0 else mean

        out = np.empty((len(vectors), len(self.concepts)), np.float32)
        for j, c in enumerate(self.concepts):
            direction = prototype(c.seeds) - (prototype(c.against) if c.against else 0.0)
            # einsum's own loop, not BLAS: a row's sum runs in one order whatever the batch,
            # so a text scores the same bits alone or beside later texts
            out[:, j] = np.einsum("nd,d->n", vectors, direction.astype(np.float32))
        return out


def load_concepts(path: str | Path | None = None) -> ConceptSet:
    """The built-in concepts, with a YAML file's concepts replacing or adding to them."""
    concepts = {c.name: c for c in BUILTIN}
    if path is None:
        return ConceptSet(tuple(concepts.values()))
    import yaml

    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such concepts file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("concepts"), dict)
        or not doc["concepts"]
    ):
        raise ConfigError(f"{path}: expected a mapping `concepts:` of name -> {{seeds: [...]}}")
    for name, spec in doc["concepts"].items():
        where = f"{path}: concept {name!r}"
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ConfigError(f"{where}: a name is lower-case letters, digits and _")
        if not isinstance(spec, dict) or set(spec) - {"seeds", "against"}:
            raise ConfigError(f"{where}: give `seeds` and optionally `against`, nothing else")
        phrases = {}
        for key in ("seeds", "against"):
            value = spec.get(key, [])
            if not isinstance(value, list) or not all(
                isinstance(p, str) and p.strip() for p in value
            ):
                raise ConfigError(f"{where}: `{key}` must be a list of non-empty phrases")
            phrases[key] = tuple(p.strip() for p in value)
        if not phrases["seeds"]:
            raise ConfigError(f"{where}: `seeds` is empty")
        concepts[name] = Concept(name, phrases["seeds"], phrases["against"])
    return ConceptSet(tuple(concepts.values()))
