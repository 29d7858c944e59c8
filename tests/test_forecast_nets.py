"""The PyTorch forecasters and their sign-aware losses, on a small synthetic panel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from synthpm.columns import prediction_col, proba_cols, target_col  # noqa: E402
from synthpm.data.errors import ConfigError  # noqa: E402
from synthpm.forecast.base import HORIZONS, N_CLASSES  # noqa: E402
from synthpm.forecast.losses import (  # noqa: E402
    masked_mse,
    sign_aware_loss,
    sign_error_ratio_loss,
)
from synthpm.forecast.net_inputs import WindowIndex  # noqa: E402
from synthpm.forecast.nets import LSTMForecaster, MLPForecaster, load_net  # noqa: E402

TICKERS = [f"T{i}" for i in range(8)]
N_DAYS = 300
# One thread: these nets are tiny, and a second thread only adds contention on a busy CI box.
FAST = {"hidden": 16, "epochs": 3, "batch_size": 256, "purge": 10, "num_threads": 1}


def make_panel(seed: int = 0, signal: float = 0.01, noise: float = 0.02):
    """8 tickers x 300 business days, 6 features (one all NaN, one with holes), and targets
    where excess_1w = signal * f0 + noise; T7 starts 40 days late (an irregular panel)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=N_DAYS)
    index = pd.MultiIndex.from_product([dates, TICKERS], names=["date", "ticker"])
    index = index[
        ~((index.get_level_values("ticker") == "T7") & (index.get_level_values(0) < dates[40]))
    ]
    n = len(index)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    x[rng.random(n) < 0.1, 1] = np.nan
    x[:, 5] = np.nan
    panel = pd.DataFrame(x, index=index, columns=[f"f{j}" for j in range(6)])
    day = pd.factorize(index.get_level_values("date"), sort=True)[0]
    cols = {}
    for h, steps in HORIZONS.items():
        excess = noise * rng.normal(size=n) + (signal * x[:, 0] if h == "1w" else 0.0)
        excess[day >= N_DAYS - steps] = np.nan  # the future is unknown at the end
        edges = np.nanquantile(excess, [0.2, 0.4, 0.6, 0.8])
        cls = np.where(np.isnan(excess), np.nan, np.searchsorted(edges, excess))
        cols[target_col("class", h)] = cls
        cols[target_col("excess", h)] = excess
        cols[target_col("vol", h)] = np.abs(rng.normal(0.2, 0.05, n))
        cols[target_col("mdd", h)] = -np.abs(rng.normal(0.05, 0.02, n))
    return panel, pd.DataFrame(cols, index=index), day


@pytest.fixture(scope="module")
def data():
    return make_panel()


# -- losses --------------------------------------------------------------------------------


def test_sign_penalty_costs_more_for_a_wrong_sign_of_the_same_size():
    target = torch.tensor([0.2, 0.2])
    right, wrong = torch.tensor([0.7, 0.7]), torch.tensor([-0.3, -0.3])  # both 0.5 away
    for base in ("mse", "huber"):
        assert sign_aware_loss(right, target, base=base, sign_weight=0.0) == pytest.approx(
            float(sign_aware_loss(wrong, target, base=base, sign_weight=0.0))
        )
        r = sign_aware_loss(right, target, base=base, sign_weight=1.0)
        w = sign_aware_loss(wrong, target, base=base, sign_weight=1.0)
        assert float(w) == pytest.approx(float(r) + 0.5)  # + weight * |pred - target|
    assert float(sign_aware_loss(wrong, target, sign_weight=0.0)) == pytest.approx(0.25)
    huber = sign_aware_loss(torch.tensor([3.0]), torch.tensor([0.0]), base="huber", delta=1.0)
    assert float(huber) == pytest.approx(2.5)  # linear beyond delta: 1 * (3 - 0.5)


def test_sign_ratio_loss_tends_to_the_fraction_of_sign_errors():
    pred = torch.tensor([1.0, -1.0, 1.0, -1.0])
    target = torch.tensor([1.0, 1.0, -1.0, -1.0])
    assert float(sign_error_ratio_loss(pred, target, k=50, mse_weight=0)) == pytest.approx(0.5)
    right = sign_error_ratio_loss(target, target)
    wrong = sign_error_ratio_loss(-target, target)
    assert float(wrong) > float(right) + 0.5


@pytest.mark.parametrize(
    "fn",
    [
        masked_mse,
        sign_aware_loss,
        lambda p, t: sign_aware_loss(p, t, "huber"),
        sign_error_ratio_loss,
    ],
)
def test_losses_mask_nan_targets_and_keep_gradients_finite(fn):
    pred = torch.tensor([0.3, -0.2, 0.9, -1.5], requires_grad=True)
    target = torch.tensor([0.5, float("nan"), -0.4, float("nan")])
    loss = fn(pred, target)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad[1] == 0 and pred.grad[3] == 0
    valid = fn(pred.detach()[[0, 2]], target[[0, 2]])
    assert loss.item() == pytest.approx(valid.item())

    empty = torch.zeros(3, requires_grad=True)
    loss = fn(empty, torch.full((3,), float("nan")))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(empty.grad, torch.zeros(3))


# -- window index --------------------------------------------------------------------------


def test_window_index_matches_a_groupby_of_the_same_ticker(data):
    panel, _, _ = data
    windex = WindowIndex(panel.index, window=5)
    rows = np.random.default_rng(1).choice(len(panel), 200, replace=False)
    got = windex.positions(rows)
    tickers = panel.index.get_level_values("ticker")
    for r, window in zip(rows, got, strict=True):
        same = np.flatnonzero(tickers == tickers[r])
        past = same[same <= r][-5:]  # panel sorted by date: earlier positions are earlier dates
        expected = np.r_[np.full(5 - len(past), -1), past]
        np.testing.assert_array_equal(window, expected)
    needed = windex.needed(rows)
    assert set(needed) == set(got[got >= 0].ravel())


# -- the models ----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [MLPForecaster, LSTMForecaster])
def test_predict_has_the_columns_shape_and_probabilities(cls, data):
    panel, targets, day = data
    train = np.flatnonzero(day < 200)
    test = np.flatnonzero(day >= 250)
    extra = {"window": 10} if cls is LSTMForecaster else {}
    model = cls(horizons=("1d", "1w"), **FAST, **extra)
    out = model.fit(panel, train, targets.iloc[train]).predict(panel, test)
    assert out.index.equals(panel.index[test])
    expected = []
    for h in ("1d", "1w"):
        expected += [
            *proba_cols(h, N_CLASSES),
            *(prediction_col(k, h) for k in ("ret", "vol", "mdd")),
        ]
    assert list(out.columns) == expected
    assert out.notna().all().all()
    for h in ("1d", "1w"):
        proba = out[proba_cols(h, N_CLASSES)].to_numpy()
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
        assert (proba >= 0).all() and proba.shape[1] == N_CLASSES
        assert (out[prediction_col("vol", h)] >= 0).all()
        assert (out[prediction_col("mdd", h)] <= 0).all()
    assert model._prep.columns == ["f0", "f1", "f2", "f3", "f4"]  # the all-NaN f5 is dropped


@pytest.mark.parametrize("cls", [MLPForecaster, LSTMForecaster])
def test_same_seed_same_predictions_and_save_load_round_trip(cls, data, tmp_path):
    panel, targets, day = data
    train, test = np.flatnonzero(day < 200), np.flatnonzero(day >= 250)
    kw = {"horizons": ("1w",), "max_train_rows": 1000, **FAST}  # a subsample drawn by seed
    if cls is LSTMForecaster:
        kw["window"] = 8
    fit = lambda seed: cls(seed=seed, **kw).fit(panel, train, targets.iloc[train])  # noqa: E731
    rng_state = torch.get_rng_state()
    a, b = fit(3), fit(3)
    assert torch.equal(rng_state, torch.get_rng_state())  # the caller's RNG is left alone
    pa = a.predict(panel, test)
    pd.testing.assert_frame_equal(pa, b.predict(panel, test), check_exact=True)
    assert not np.allclose(pa["ret_1w"], fit(4).predict(panel, test)["ret_1w"])

    a.save(tmp_path / "model")
    loaded = cls.load(tmp_path / "model")
    pd.testing.assert_frame_equal(pa, loaded.predict(panel, test), check_exact=True)
    pd.testing.assert_frame_equal(pa, load_net(tmp_path / "model").predict(panel, test))
    other = LSTMForecaster if cls is MLPForecaster else MLPForecaster
    with pytest.raises(ConfigError, match="holds a"):
        other.load(tmp_path / "model")


@pytest.mark.slow  # only on a busy machine: torch's default threads then contend
@pytest.mark.parametrize("cls", [MLPForecaster, LSTMForecaster])
def test_same_seed_same_predictions_with_the_default_threads(cls, data):
    panel, targets, day = data
    train, test = np.flatnonzero(day < 200), np.flatnonzero(day >= 250)
    kw = {**FAST, "horizons": ("1w",), "epochs": 2, "num_threads": None}
    fit = lambda: cls(**kw).fit(panel, train, targets.iloc[train])  # noqa: E731
    pd.testing.assert_frame_equal(fit().predict(panel, test), fit().predict(panel, test))


def test_mlp_learns_the_planted_signal(data):
    panel, targets, day = data
    train, test = np.flatnonzero(day < 200), np.flatnonzero(day >= 220)
    model = MLPForecaster(
        horizons=("1w", "1m"), hidden=32, epochs=40, patience=8, purge=5, lr=3e-3, num_threads=1
    )
    out = model.fit(panel, train, targets.iloc[train]).predict(panel, test)
    truth = targets["excess_1w"].iloc[test]
    ok = truth.notna().to_numpy()
    ic = pd.Series(out["ret_1w"].to_numpy()[ok]).corr(pd.Series(truth[ok].to_numpy()), "spearman")
    assert ic > 0.2, ic
    # The class head learns it too: the expected class rises with the true return.
    expected_class = out[proba_cols("1w", N_CLASSES)].to_numpy() @ np.arange(N_CLASSES)
    assert pd.Series(expected_class[ok]).corr(pd.Series(truth[ok].to_numpy()), "spearman") > 0.2


@pytest.mark.parametrize("loss", ["mse", "sign_ratio"])
def test_other_losses_train(loss, data):
    panel, targets, day = data
    train = np.flatnonzero(day < 200)
    model = MLPForecaster(horizons=("1w",), loss=loss, **FAST).fit(
        panel, train, targets.iloc[train]
    )
    assert np.isfinite([r["train_loss"] for r in model.history_]).all()


def test_lstm_reads_only_past_rows_of_the_same_ticker(data):
    panel, targets, day = data
    train = np.flatnonzero(day < 150)
    model = LSTMForecaster(horizons=("1w",), window=10, **FAST)
    model.fit(panel, train, targets.iloc[train])
    rows = np.arange(len(panel))
    base = model.predict(panel, rows)
    tickers = panel.index.get_level_values("ticker")

    future = panel.copy()
    later = (tickers == "T0") & (day > 180)
    future.loc[later] = 5.0
    moved = model.predict(future, rows)
    pd.testing.assert_frame_equal(base[~later], moved[~later], check_exact=True)
    assert not np.allclose(base[later]["ret_1w"], moved[later]["ret_1w"])

    other = panel.copy()
    other.loc[tickers == "T1"] = -3.0
    moved = model.predict(other, rows)
    keep = tickers != "T1"
    pd.testing.assert_frame_equal(base[keep], moved[keep], check_exact=True)

    # A row's window includes earlier rows: changing day 100 of T0 moves T0's day 105.
    once = panel.copy()
    once.loc[(tickers == "T0") & (day == 100)] = 4.0
    moved = model.predict(once, rows)
    at = np.flatnonzero((tickers == "T0") & (day == 105))
    assert moved["ret_1w"].iloc[at[0]] != base["ret_1w"].iloc[at[0]]


def test_early_stopping_stops_on_noise_and_purges_before_validation():
    panel, targets, day = make_panel(seed=5, signal=0.0)
    train = np.flatnonzero(day < 250)
    model = MLPForecaster(
        horizons=("1w",), hidden=32, epochs=60, patience=2, lr=1e-2, purge=20, num_threads=1
    )
    model.fit(panel, train, targets.iloc[train])
    assert model.n_epochs_ < 60
    assert model.best_epoch_ == int(np.nanargmin([r["val_loss"] for r in model.history_]))

    tr, val = model._split(panel.index, train)
    first_val = day[train][val].min()
    assert day[train][tr].max() == first_val - 20 - 1  # exactly `purge` dates dropped
    assert len(np.unique(day[train][val])) == round(0.15 * 250)


def test_bad_arguments_are_named(data):
    panel, targets, _ = data
    with pytest.raises(ConfigError, match="loss"):
        MLPForecaster(loss="l1")
    with pytest.raises(ConfigError, match="horizons"):
        MLPForecaster(horizons=("2y",))
    with pytest.raises(TypeError, match="window"):
        MLPForecaster(window=5)
    with pytest.raises(ConfigError, match="lack"):
        MLPForecaster(**FAST).fit(panel, np.arange(10), targets.iloc[:10].drop(columns="vol_1m"))
    with pytest.raises(ConfigError, match="not fitted"):
        MLPForecaster().predict(panel, np.arange(3))
