"""LightGBM forecasters: the default return model and the event-probability model.

Return model, per horizon, four regressors sharing one binned `lgb.Dataset` (binning is
most of a small fit's cost; the boosters swap only its labels):
- `ret`: the expected excess return. The booster learns the excess return's percentile
  among its date's training rows (least squares on percentile − 0.5), and a straight line
  fitted on the training rows turns its score into a return, so the ranking is the
  booster's and the unit is a return. Chosen on validation years (S&P 500 members,
  2010-2018, `benchmarks/forecaster_variants.py`): its 1m rank IC beat Huber loss on the
  raw excess return (+0.010 against +0.004, positive in 8 of the 9 years): on a raw target
  a few names' extreme months steer the trees, and a ranking is judged on the date's ranks;
- `abs`: the expected absolute excess return, a heteroscedastic scale: the predictive
  distribution of the excess return is taken as normal with mean `ret` and standard
  deviation `abs * sqrt(pi/2)`, and the return-class probabilities are its mass between the
  fold's class edges (`targets.attrs["class_edges"]`). A 5-class booster grows five trees
  a round, so it is much slower, and its expected return ranked worse
  (benchmarks/results/design_choices.md);
- `vol` and `mdd`: realised volatility and max drawdown ahead.
The other three are trained with Huber loss, its delta 1.5 training standard deviations,
so a few crash days do not steer the trees. The parameters suit noisy daily panels: shallow
trees, large leaves, row and feature subsampling; `deterministic` with a fixed seed makes a
fit reproducible bit for bit on the same data and thread count.

Event model: one binary classifier per event group with enough examples, trained on the
rows of tickers with filing coverage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Self

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import ndtr
from sklearn.linear_model import LinearRegression

from synthpm.columns import (
    EVENTS_COVERED,
    event_prob_col,
    event_target_col,
    event_target_group,
    prediction_col,
    proba_cols,
    target_col,
)
from synthpm.forecast.base import HORIZONS, N_CLASSES

BASE_PARAMS = {
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 400,
    "feature_fraction": 0.7,
    "bagging_fraction": 0.7,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    "max_bin": 63,
    "verbosity": -1,
    "deterministic": True,
    "force_col_wise": True,
    "num_threads": 2,
}


def _matrix(panel: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """float32 values of the panel's `rows` (copies only those rows)."""
    return panel.iloc[rows].to_numpy(dtype=np.float32)


def _key(target: str, horizon: str) -> str:
    """A return booster's name and file stem: its target (`TARGETS`) at the horizon."""
    return f"{target}_{horizon}"


class LightGBMForecaster:
    """Gradient-boosted regressors per horizon and target (see the module docstring)."""

    name = "lightgbm"
    TARGETS = ("ret", "abs", "vol", "mdd")

    def __init__(
        self, horizons=tuple(HORIZONS), rounds: int = 100, seed: int = 0, **params
    ) -> None:
        self.horizons = tuple(horizons)
        self.rounds = rounds
        self.seed = seed
        self.params = {**BASE_PARAMS, **params, "seed": seed}
        self.boosters: dict[str, lgb.Booster] = {}
        self.features: list[str] = []
        self.class_edges: dict[str, list[float]] = {}
        # per horizon, (intercept, slope) from the `ret` booster's score to a return; a model
        # saved before the ranked target has none, and its booster gives returns itself
        self.ret_lines: dict[str, tuple[float, float]] = {}

    def fit(self, panel: pd.DataFrame, rows: np.ndarray, targets: pd.DataFrame) -> Self:
        self.features = list(panel.columns)
        self.class_edges = {h: list(targets.attrs["class_edges"][h]) for h in self.horizons}
        data = lgb.Dataset(
            _matrix(panel, rows),
            label=np.zeros(len(rows)),
            feature_name=self.features,
            params={k: self.params[k] for k in ("max_bin", "verbosity", "min_data_in_leaf")},
            free_raw_data=False,
        ).construct()
        fitted: list[tuple[np.ndarray, lgb.Booster]] = []
        dates = targets.index.get_level_values("date")
        for h in self.horizons:
            excess = targets[target_col("excess", h)].to_numpy(dtype=np.float64)
            ranked = pd.Series(excess).groupby(dates).rank(pct=True).to_numpy() - 0.5
            labels = {
                "ret": ranked,
                "abs": np.abs(excess),
                "vol": targets[target_col("vol", h)].to_numpy(dtype=np.float64),
                "mdd": targets[target_col("mdd", h)].to_numpy(dtype=np.float64),
            }
            for target, y in labels.items():
                # Identical labels, identical booster: vol_1d and vol_1w both read 5 days.
                same = [b for seen, b in fitted if np.array_equal(seen, y, equal_nan=True)]
                if same:
                    self.boosters[_key(target, h)] = same[0]
                    continue
                data.set_label(y)
                if target == "ret":
                    params = {**self.params, "objective": "regression"}
                else:
                    params = {**self.params, "objective": "huber", "alpha": 1.5 * float(np.std(y))}
                self.boosters[_key(target, h)] = lgb.train(params, data, self.rounds)
                fitted.append((y, self.boosters[_key(target, h)]))
            score = self.boosters[_key("ret", h)].predict(data.get_data())
            self.ret_lines[h] = return_line(score, excess)
        return self

    def predict(self, panel: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
        x = _matrix(panel[self.features], rows)
        out: dict[str, np.ndarray] = {}
        for h in self.horizons:
            intercept, slope = self.ret_lines.get(h, (0.0, 1.0))
            mean = intercept + slope * self.boosters[_key("ret", h)].predict(x)
            scale = np.maximum(self.boosters[_key("abs", h)].predict(x), 1e-6) * np.sqrt(np.pi / 2)
            out.update(
                zip(
                    proba_cols(h, N_CLASSES),
                    class_probabilities(mean, scale, self.class_edges[h]).T,
                    strict=True,
                )
            )
            out[prediction_col("ret", h)] = mean
            vol, mdd = self.boosters[_key("vol", h)], self.boosters[_key("mdd", h)]
            out[prediction_col("vol", h)] = np.maximum(vol.predict(x), 0.0)
            out[prediction_col("mdd", h)] = np.minimum(mdd.predict(x), 0.0)
        return pd.DataFrame(out, index=panel.index[rows])

    def shap_values(self, panel: pd.DataFrame, rows: np.ndarray, horizon: str) -> pd.DataFrame:
        """Mean |SHAP| per feature of the expected-return model of `horizon`, over `rows`.

        LightGBM computes exact TreeSHAP itself (`pred_contrib`), so the `shap` package is
        not needed.
        """
        x = _matrix(panel[self.features], rows)
        contrib = self.boosters[_key("ret", horizon)].predict(x, pred_contrib=True)[:, :-1]
        return (
            pd.DataFrame({"feature": self.features, "mean_abs_shap": np.abs(contrib).mean(axis=0)})
            .sort_values("mean_abs_shap", ascending=False)
            .reset_index(drop=True)
        )

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        meta = {
            "name": self.name,
            "horizons": self.horizons,
            "rounds": self.rounds,
            "seed": self.seed,
            "params": self.params,
            "features": self.features,
            "class_edges": self.class_edges,
            "ret_lines": self.ret_lines,
        }
        (path / "meta.json").write_text(json.dumps(meta, indent=1))
        for key, booster in self.boosters.items():
            booster.save_model(str(path / f"{key}.txt"))

    @classmethod
    def load(cls, path: Path) -> Self:
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text())
        params = {k: v for k, v in meta["params"].items() if k != "seed"}
        model = cls(meta["horizons"], meta["rounds"], meta["seed"], **params)
        model.features = meta["features"]
        model.class_edges = meta["class_edges"]
        model.ret_lines = {h: tuple(line) for h, line in meta.get("ret_lines", {}).items()}
        for file in sorted(path.glob("*.txt")):
            model.boosters[file.stem] = lgb.Booster(model_file=str(file))
        return model


def return_line(score: np.ndarray, excess: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of the least-squares line from the ranking score to the excess
    return, over the rows with both, its slope held at or above 0 so that the line never
    reverses the booster's ranking (scores that carry nothing give a flat line)."""
    ok = np.isfinite(score) & np.isfinite(excess)
    fit = LinearRegression(positive=True).fit(score[ok, None], excess[ok])
    return float(fit.intercept_), float(fit.coef_[0])


def class_probabilities(mean: np.ndarray, scale: np.ndarray, edges) -> np.ndarray:
    """Mass of N(mean, scale) in each return class; (rows, 5), rows sum to 1."""
    z = (np.asarray(edges)[None, :] - mean[:, None]) / scale[:, None]
    cdf = np.hstack([np.zeros((len(mean), 1)), ndtr(z), np.ones((len(mean), 1))])
    return np.diff(cdf, axis=1)


class EventForecaster:
    """P(a filing of each event group becomes known in the next period), LightGBM binary."""

    MIN_EXAMPLES = 30  # of each class, or the group gets no model

    def __init__(self, rounds: int = 80, seed: int = 0, num_threads: int = 2) -> None:
        self.rounds = rounds
        self.params = {**BASE_PARAMS, "min_data_in_leaf": 50, "seed": seed, "objective": "binary",
                       "num_threads": num_threads}  # fmt: skip
        self.boosters: dict[str, lgb.Booster] = {}
        self.features: list[str] = []

    def fit(self, panel: pd.DataFrame, rows: np.ndarray, labels: pd.DataFrame) -> Self:
        self.features = list(panel.columns)
        for column in labels.columns:
            y = labels[column].to_numpy()
            keep = ~np.isnan(y)
            positives = int(y[keep].sum())
            if min(positives, int(keep.sum()) - positives) < self.MIN_EXAMPLES:
                continue
            data = lgb.Dataset(
                _matrix(panel, rows[keep]),
                label=y[keep],
                feature_name=self.features,
                params={"verbosity": -1, "max_bin": 63},
            )
            self.boosters[event_target_group(column)] = lgb.train(self.params, data, self.rounds)
        return self

    def predict(self, panel: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
        """`event_prob_<group>` per modelled group; NaN for rows with no filing coverage."""
        if not self.boosters:
            return pd.DataFrame(index=panel.index[rows])
        x = _matrix(panel[self.features], rows)
        covered = panel[EVENTS_COVERED].to_numpy()[rows] > 0 if EVENTS_COVERED in panel else True
        out = {
            event_prob_col(group): np.where(covered, booster.predict(x), np.nan)
            for group, booster in self.boosters.items()
        }
        return pd.DataFrame(out, index=panel.index[rows])

    def save(self, path: Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "events.json").write_text(json.dumps({"features": self.features}))
        for group, booster in self.boosters.items():
            booster.save_model(str(path / f"{event_target_col(group)}.txt"))

    @classmethod
    def load(cls, path: Path) -> Self:
        path = Path(path)
        model = cls()
        if (path / "events.json").exists():
            model.features = json.loads((path / "events.json").read_text())["features"]
        for file in sorted(path.glob(f"{event_target_col('*')}.txt")):
            model.boosters[event_target_group(file.stem)] = lgb.Booster(model_file=str(file))
        return model
