"""Learning strategies (docs/design.md §9): the environment and the learners the LM must beat.

`history` (what a learner may train on, cut at a date) → `env` (a gymnasium environment with
the engine's fills and costs) → the learners, each refitted before every test year
(`walkforward`): `qlearn` (tabular Q-learning, a signal source), `ppo` (stable-baselines3, a
portfolio rule) and `online` (a Chronos-T5 encoder with LoRA, stepped online each month).

`LEARNERS` maps a strategy name to its class; `make_learner` builds one from its settings
(naming the mistake), `fitted_learner` also fits it on a history.
"""

from __future__ import annotations

from synthpm.learn.history import History
from synthpm.learn.online import OnlineLoRA
from synthpm.learn.ppo import PPORule
from synthpm.learn.qlearn import QLearn
from synthpm.strategies import build

LEARNERS: dict[str, type] = {"qlearn": QLearn, "ppo": PPORule, "online_lora": OnlineLoRA}


def make_learner(name: str, /, **params: object):
    """The learner registered as `name`, built with `params` (validated by its class)."""
    return build(name, LEARNERS, params, "learner")


def fitted_learner(name: str, history: History, /, **params: object):
    """`make_learner`, fitted on `history` (models are trained lazily, per test year)."""
    learner = make_learner(name, **params)
    learner.fit(history)
    return learner


__all__ = [
    "LEARNERS",
    "History",
    "OnlineLoRA",
    "PPORule",
    "QLearn",
    "fitted_learner",
    "make_learner",
]
