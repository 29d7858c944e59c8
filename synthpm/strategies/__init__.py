"""Baseline strategies by name: signal sources (`sources`) and portfolio rules (`rules`).

`STRATEGIES` maps a registry name to its class; `make_strategy(name, **params)` builds one
and names the mistake (with a did-you-mean) for an unknown strategy or parameter. The engine
adds `benchmark` (and later the language model, `lm`) itself. Each kind (`base.kind_of`) has
its own table: `SIGNAL_SOURCES` and `PORTFOLIO_RULES`.
"""

from __future__ import annotations

from dataclasses import fields

from synthpm.data.errors import ConfigError, did_you_mean
from synthpm.signals import SignalSource
from synthpm.strategies.base import Kind, PortfolioRule, kind_of
from synthpm.strategies.rules import EqualWeight, MagnitudeChoice, RiskParity, TopK
from synthpm.strategies.sources import AlwaysBuy, FixedRules

SIGNAL_SOURCES: dict[str, type] = {"always_buy": AlwaysBuy, "rules": FixedRules}
PORTFOLIO_RULES: dict[str, type] = {
    "equal_weight": EqualWeight,
    "lgbm_topk": TopK,
    "magnitude": MagnitudeChoice,
    "hrp": RiskParity,
}
STRATEGIES: dict[str, type] = SIGNAL_SOURCES | PORTFOLIO_RULES


def strategy_params(name: str) -> dict[str, object]:
    """A strategy's parameters and their defaults (for help text and configs)."""
    return settings_of(lookup(name, STRATEGIES, "strategy"))


def make_strategy(name: str, /, **params: object) -> SignalSource | PortfolioRule:
    """The strategy registered as `name`, built with `params` (validated by its class)."""
    return build(name, STRATEGIES, params, "strategy")


def settings_of(cls: type) -> dict[str, object]:
    """A strategy class's settings (its dataclass fields a caller sets) and their defaults."""
    return {f.name: f.default for f in fields(cls) if f.init and not f.name.startswith("_")}


def lookup(name: str, registry: dict[str, type], what: str) -> type:
    if name not in registry:
        raise ConfigError(
            f"unknown {what} {name!r}{did_you_mean(name, registry)}; "
            f"choose from {', '.join(registry)}"
        )
    return registry[name]


def build(name: str, registry: dict[str, type], params: dict[str, object], what: str):
    """`registry[name](**params)`, naming an unknown name or setting with a did-you-mean."""
    cls = lookup(name, registry, what)
    known = settings_of(cls)
    for key in params:
        if key not in known:
            raise ConfigError(
                f"strategy {name!r} has no parameter {key!r}{did_you_mean(key, known)}; "
                f"its parameters: {', '.join(known) or 'none'}"
            )
    return cls(**params)


__all__ = [
    "PORTFOLIO_RULES",
    "SIGNAL_SOURCES",
    "STRATEGIES",
    "AlwaysBuy",
    "EqualWeight",
    "FixedRules",
    "Kind",
    "MagnitudeChoice",
    "PortfolioRule",
    "RiskParity",
    "TopK",
    "kind_of",
    "make_strategy",
    "strategy_params",
]
