"""Learning strategies (docs/design.md §15): the environment and the learners the LM must beat.

`history` (what a learner may train on, cut at a date) → `env` (a gymnasium environment with
the engine's fills and costs) → the learners, each refitted before every test year
(`walkforward`): `qlearn` (tabular Q-learning, a signal source), `ppo` (stable-baselines3, a
portfolio rule) and `online` (a Chronos-T5 encoder with LoRA, stepped online each month).

`LEARNERS` names each learner's class; `make_learner` builds one from its settings (naming
the mistake), `fitted_learner` also fits it on a history.
"""

from __future__ import annotations

from importlib import import_module

from synthpm.learn.history import History
from synthpm.strategies import build, lookup

# module.Class under synthpm.learn: the classes import gymnasium and torch, so they load when
# a run names one, and every other command starts without them
LEARNERS: dict[str, str] = {
    "qlearn": "qlearn.QLearn",
    "ppo": "ppo.PPORule",
    "online_lora": "online.OnlineLoRA",
}


def learner_class(name: str) -> type:
    module, cls = lookup(name, LEARNERS, "learner").rsplit(".", 1)
    return getattr(import_module(f"synthpm.learn.{module}"), cls)


def make_learner(name: str, /, **params: object):
    """The learner registered as `name`, built with `params` (validated by its class)."""
    return build(name, {name: learner_class(name)}, params, "learner")


def fitted_learner(name: str, history: History, /, **params: object):
    """`make_learner`, fitted on `history` (models are trained lazily, per test year)."""
    learner = make_learner(name, **params)
    learner.fit(history)
    return learner


__all__ = ["LEARNERS", "History", "fitted_learner", "learner_class", "make_learner"]
