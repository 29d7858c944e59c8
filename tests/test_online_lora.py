"""The `online_lora` learner: a portfolio rule's contract, determinism, walk-forward, LoRA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from synthpm.context import Contexts
from synthpm.data.errors import ConfigError
from synthpm.learn.history import History
from synthpm.learn.online import OnlineLoRA
from synthpm.learn.t5 import new_encoder, portfolio_loss
from tests.learning import perturbed, synthetic_history

TINY = {
    "assets": 6, "lookback": 16, "d_model": 16, "layers": 1, "heads": 2, "bins": 64,
    "pretrain_epochs": 1,
}  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the shared machine wants (restored after each test)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def history() -> History:
    return synthetic_history(tickers=8, days=400)


def months(history: History, n: int = 5) -> pd.DatetimeIndex:
    dates = history.schedule("month")
    return dates[dates >= history.market.dates[250]][:n]


def everyone(history: History, tickers=None) -> Contexts:
    return Contexts(pd.DataFrame({"ticker": list(tickers or history.market.tickers)}))


def run(rule: OnlineLoRA, history: History, dates, tickers=None) -> list[pd.Series]:
    out = []
    for date in dates:
        closes = history.market.closes.loc[:date]
        out.append(rule.weights(date, everyone(history, tickers), closes))
    return out


def fitted(history: History, **settings) -> OnlineLoRA:
    rule = OnlineLoRA(**{**TINY, **settings})
    rule.fit(history)
    return rule


def test_a_monthly_long_only_rule(history):
    rule = fitted(history)
    assert (rule.name, rule.kind) == ("online_lora", "rule")
    first = months(history)[0]
    assert rule.rebalance(first, None)
    assert not rule.rebalance(first + pd.Timedelta(days=7), first)
    assert rule.rebalance(first + pd.Timedelta(days=35), first)
    some = ["T1", "T3", "T4", "T6", "T7"]
    for w in run(rule, history, months(history), some):
        assert set(w.index) <= set(some) and len(w) == min(len(some), TINY["assets"])
        assert (w >= 0).all() and w.sum() <= 1 + 1e-6


def test_same_seed_same_weights_and_a_rerun_starts_over(history):
    a, b = fitted(history), fitted(history)
    first, second = run(a, history, months(history)), run(b, history, months(history))
    for x, y in zip(first, second, strict=True):
        pd.testing.assert_series_equal(x, y)
    again = run(a, history, months(history))  # the same rule run again: the same backtest
    for x, y in zip(first, again, strict=True):
        pd.testing.assert_series_equal(x, y)
    other = run(fitted(history, seed=1), history, months(history))
    assert not np.allclose(first[0].to_numpy(), other[0].to_numpy())


def test_the_future_does_not_move_a_weight(history):
    dates = months(history, 5)
    cut = dates[2]
    shaken = perturbed(history, cut)
    plain, moved = run(fitted(history), history, dates), run(fitted(shaken), shaken, dates)
    for date, x, y in zip(dates, plain, moved, strict=True):
        if date <= cut:
            pd.testing.assert_series_equal(x, y)
    assert not np.allclose(plain[-1].to_numpy(), moved[-1].to_numpy())  # the test can fail


def test_an_online_step_moves_only_the_adapters(history):
    rule = fitted(history)
    first, second = months(history, 2)
    rule.weights(first, everyone(history), history.market.closes.loc[:first])
    before = {k: v.clone() for k, v in rule._net.state_dict().items()}
    rule.weights(second, everyone(history), history.market.closes.loc[:second])
    after = rule._net.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora_" in k for k in changed)
    trainable = {n for n, p in rule._net.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_a_pretrained_local_encoder_is_loaded_and_kept(history, tmp_path):
    torch.manual_seed(3)
    encoder = new_encoder(bins=64, d_model=16, layers=1, heads=2)
    encoder.save_pretrained(tmp_path)
    rule = fitted(history, pretrained=str(tmp_path))
    w = run(rule, history, months(history, 2))
    assert all(abs(x.sum() - 1) < 1e-6 for x in w)
    saved = encoder.state_dict()
    base = rule._net.encoder.get_base_model().state_dict()
    for key, value in saved.items():  # pretraining left the loaded encoder as it was
        # PEFT moves a wrapped q or v weight under its `base_layer`
        loaded = base.get(key, base.get(key.replace(".weight", ".base_layer.weight")))
        assert torch.equal(loaded, value), key
    with pytest.raises(ConfigError, match="bins"):
        fitted(history, pretrained=str(tmp_path), bins=128)


def entropy(w: pd.Series) -> float:
    p = w.to_numpy()
    return float(-(p * np.log(p)).sum())


def test_the_entropy_term_diversifies(history):
    uniform, concentrated = torch.full((4,), 0.25), torch.tensor([0.97, 0.01, 0.01, 0.01])
    flat = torch.zeros(4)
    assert portfolio_loss(uniform, flat, 0.5) < portfolio_loss(concentrated, flat, 0.5)
    assert portfolio_loss(uniform, flat, 0.0) == portfolio_loss(concentrated, flat, 0.0)
    # trained on the same months, a larger eta spreads the book further
    date = months(history, 1)[0]
    settings = {"pretrain_epochs": 8, "pretrain_lr": 1e-2}
    (loose,) = run(fitted(history, eta=0.0, **settings), history, [date])
    (spread,) = run(fitted(history, eta=1.0, **settings), history, [date])
    assert entropy(spread) > entropy(loose)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("assets", 0), ("lookback", 1), ("eta", -0.1), ("lr", 0.0), ("lora_rank", 0),
     ("heads", 3), ("bins", 3), ("pretrain_epochs", -1), ("pretrained", "/no/such/dir")],
)  # fmt: skip
def test_a_bad_setting_is_named(setting, value):
    with pytest.raises(ConfigError, match=setting):
        OnlineLoRA(**{setting: value})
