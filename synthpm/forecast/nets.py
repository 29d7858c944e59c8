"""PyTorch forecasters: an MLP over a row's features and an LSTM over a ticker's trailing rows.

Both implement `ReturnModel` (see `base.py`) with one multitask net: a shared trunk, then one
linear head per horizon giving 5 class logits, `ret_h` (excess return), `vol_h` and `mdd_h`.
The training loss is the sum over horizons of
- cross-entropy on `class_h`;
- a sign-aware loss (`losses.py`) on `excess_h / std` ("mse" or "huber" plus a sign-error
  penalty, or "sign_ratio", a smooth fraction of sign errors). The target is divided by its
  training std but not centred, so its sign survives; `predict` multiplies back;
- MSE on `vol_h` and `mdd_h` standardised by their training mean and std;
each a mean over the rows whose target is not NaN (a missing label is ignored, not guessed).

Point in time: everything learnt (preprocessing, target scales, weights) comes from the rows
passed to `fit`. Early stopping holds out the last `val_fraction` of those rows' distinct
dates, and drops the training rows of the `purge` panel dates before the first held-out
date, so no training label (which reads up to 63 days ahead) overlaps the held-out period.
The LSTM reads, for a row (t, ticker), the `window` rows of the same ticker up to and
including t; a ticker's first rows are left-padded with zeros (the training mean). The nets'
inputs are prepared in `net_inputs`, their torch modules are in `net_layers`.

Reproducible on CPU: `fit` seeds torch (inside `fork_rng`, so the caller's RNG state is left
alone) and a numpy Generator from `seed`; two fits with the same seed and thread count give
identical weights. `save` writes a directory of JSON and plain tensors (no pickled objects).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Self

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from synthpm.columns import TARGET_KINDS, prediction_col, proba_cols, target_col
from synthpm.data.errors import ConfigError
from synthpm.forecast.base import HORIZONS, N_CLASSES
from synthpm.forecast.losses import masked_mse, sign_aware_loss, sign_error_ratio_loss
from synthpm.forecast.net_inputs import Preprocessor, WindowIndex, index_level, take_features
from synthpm.forecast.net_layers import HEAD_WIDTH, LSTMNet, MLPNet

LOSSES = ("mse", "huber", "sign_ratio")
FORMAT = 1  # version of the saved directory layout
_IGNORE = -100  # class label of rows without one (cross_entropy's ignore_index)
_PREDICT_CHUNK = 65_536  # rows whose features are gathered at once in predict


def _chunks(idx: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for lo in range(0, len(idx), size):
        yield idx[lo : lo + size]


def _scale_key(kind: str, horizon: str, stat: str) -> str:
    """A target's training `std` or `mean` in `_scales` (saved in config.json)."""
    return f"{target_col(kind, horizon)}_{stat}"


class _Split(NamedTuple):
    train: np.ndarray  # positions into the fitted rows
    val: np.ndarray  # the held-out ones (empty: no early stopping)


class _Batch(NamedTuple):
    """A training batch on the device: the net's inputs, and the targets by column."""

    inputs: torch.Tensor
    targets: dict[str, torch.Tensor]


class _TorchForecaster:
    """Shared fit / predict / save of the nets; subclasses define the net and its inputs."""

    name: str
    _extra: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        horizons: tuple[str, ...] = tuple(HORIZONS),
        hidden: int = 64,
        epochs: int = 50,
        batch_size: int = 512,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        dropout: float = 0.1,
        patience: int = 5,
        loss: str = "huber",
        sign_weight: float = 0.5,
        huber_delta: float = 1.0,
        seed: int = 0,
        max_train_rows: int | None = 200_000,
        purge: int = 63,
        val_fraction: float = 0.15,
        device: str = "cpu",
        num_threads: int | None = None,
        **extra: Any,
    ) -> None:
        unknown = set(extra) - set(self._extra)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown kwargs {sorted(unknown)}")
        self.params: dict[str, Any] = {
            "horizons": list(horizons), "hidden": hidden, "epochs": epochs,
            "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "dropout": dropout, "patience": patience, "loss": loss, "sign_weight": sign_weight,
            "huber_delta": huber_delta, "seed": seed, "max_train_rows": max_train_rows,
            "purge": purge, "val_fraction": val_fraction, "device": device,
            "num_threads": num_threads, **self._extra, **extra,
        }  # fmt: skip
        self._validate()
        self.horizons = tuple(horizons)
        self._prep: Preprocessor | None = None
        self._scales: dict[str, float] = {}
        self._net: nn.Module | None = None
        self.history_: list[dict[str, float]] = []
        self.best_epoch_: int | None = None

    def _validate(self) -> None:
        p = self.params
        bad = [h for h in p["horizons"] if h not in HORIZONS]
        if bad or not p["horizons"]:
            raise ConfigError(f"horizons must be a non-empty subset of {list(HORIZONS)}: {bad}")
        if p["loss"] not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, not {p['loss']!r}")
        for key in ("hidden", "epochs", "batch_size", "patience"):
            if int(p[key]) < 1:
                raise ConfigError(f"{key} must be >= 1, got {p[key]}")
        if p["purge"] < 0 or not 0 <= p["val_fraction"] < 1 or p["sign_weight"] < 0:
            raise ConfigError("need purge >= 0, 0 <= val_fraction < 1 and sign_weight >= 0")
        if p["max_train_rows"] is not None and p["max_train_rows"] < 1:
            raise ConfigError(f"max_train_rows must be >= 1 or None, got {p['max_train_rows']}")

    # -- what subclasses define ------------------------------------------------------------
    def _build_net(self, n_features: int) -> nn.Module:
        raise NotImplementedError

    def _context(self, panel: pd.DataFrame) -> Any:
        """Per-call state shared by every chunk of rows (the LSTM's window index)."""
        return None

    def _source(
        self, panel: pd.DataFrame, rows: np.ndarray, ctx: Any
    ) -> Callable[[np.ndarray], torch.Tensor]:
        """A function from positions into `rows` to the net's input tensor for those rows."""
        raise NotImplementedError

    # -- fit -------------------------------------------------------------------------------
    def fit(self, panel: pd.DataFrame, rows: np.ndarray, targets: pd.DataFrame) -> Self:
        """Learn from panel rows `rows` with `targets` aligned to them (see `base.py`)."""
        rows = np.asarray(rows, dtype=np.intp)
        if len(targets) != len(rows):
            raise ConfigError(f"targets has {len(targets)} rows for {len(rows)} panel rows")
        p = self.params
        y = self._target_arrays(targets)
        with self._threads(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(p["seed"])
            rng = np.random.default_rng(p["seed"])
            cap = p["max_train_rows"]
            if cap is not None and len(rows) > cap:
                keep = np.sort(rng.choice(len(rows), size=cap, replace=False))
                rows, y = rows[keep], {k: v[keep] for k, v in y.items()}
            split = self._split(panel.index, rows)
            if len(split.train) == 0:
                raise ConfigError("fit was given no training rows")
            columns = [str(c) for c in panel.columns]
            self._prep = Preprocessor.fit(take_features(panel, rows[split.train], columns), columns)
            self._scales = self._fit_scales(y, split.train)
            ty = self._target_tensors(y)
            source = self._source(panel, rows, self._context(panel))
            self._net = self._build_net(len(self._prep.columns)).to(p["device"])
            self._train(source, ty, split, rng)
        return self

    def _split(self, index: pd.MultiIndex, rows: np.ndarray) -> _Split:
        """Training and validation positions into `rows`: validation is the last
        `val_fraction` of the rows' distinct dates, with the `purge` panel dates before it
        dropped from training. No validation (train for all `epochs`) when too few dates
        are left for both."""
        p = self.params
        day, _ = pd.factorize(index_level(index, "date", 0), sort=True)
        row_day = day[rows]
        days = np.unique(row_day)
        n_val = round(p["val_fraction"] * len(days))
        everything = np.arange(len(rows))
        if n_val < 1:
            return _Split(everything, everything[:0])
        first_val = days[len(days) - n_val]
        train = np.flatnonzero(row_day < first_val - p["purge"])
        if len(train) == 0:
            return _Split(everything, everything[:0])
        return _Split(train, np.flatnonzero(row_day >= first_val))

    def _target_arrays(self, targets: pd.DataFrame) -> dict[str, np.ndarray]:
        need = [target_col(k, h) for h in self.horizons for k in TARGET_KINDS]
        missing = [c for c in need if c not in targets.columns]
        if missing:
            raise ConfigError(f"targets lack column(s) {missing}")
        out = {}
        for col in need:
            v = pd.to_numeric(targets[col], errors="coerce").to_numpy(np.float64, na_value=np.nan)
            out[col] = np.where(np.isfinite(v), v, np.nan)
        return out

    def _fit_scales(self, y: dict[str, np.ndarray], train: np.ndarray) -> dict[str, float]:
        """Training std of excess (not centred), training mean and std of vol and mdd."""

        scales = {}
        for h in self.horizons:
            for kind in ("excess", "vol", "mdd"):
                v = y[target_col(kind, h)][train]
                v = v[np.isfinite(v)]
                std = float(v.std()) if v.size > 1 else 0.0
                scales[_scale_key(kind, h, "std")] = std if std > 0 else 1.0
                if kind != "excess":
                    scales[_scale_key(kind, h, "mean")] = float(v.mean()) if v.size else 0.0
        return scales

    def _target_tensors(self, y: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        s, out = self._scales, {}
        for h in self.horizons:
            label, excess = target_col("class", h), target_col("excess", h)
            c = y[label]
            ok = np.isfinite(c) & (c >= 0) & (c < N_CLASSES) & (c == np.round(c))
            out[label] = torch.from_numpy(np.where(ok, c, _IGNORE).astype(np.int64))
            out[excess] = torch.from_numpy(y[excess] / s[_scale_key("excess", h, "std")])
            for kind in ("vol", "mdd"):
                mean, std = s[_scale_key(kind, h, "mean")], s[_scale_key(kind, h, "std")]
                out[target_col(kind, h)] = torch.from_numpy((y[target_col(kind, h)] - mean) / std)
        return {k: (v if v.dtype == torch.int64 else v.float()) for k, v in out.items()}

    def _loss(self, out: dict[str, torch.Tensor], yb: dict[str, torch.Tensor]) -> torch.Tensor:
        p = self.params
        total = torch.zeros((), device=p["device"])
        for h in self.horizons:
            o, cls = out[h], yb[target_col("class", h)]
            n_cls = (cls != _IGNORE).sum().clamp(min=1)
            ce = F.cross_entropy(o[:, :N_CLASSES], cls, ignore_index=_IGNORE, reduction="sum")
            ret, excess = o[:, N_CLASSES], yb[target_col("excess", h)]
            if p["loss"] == "sign_ratio":
                reg = sign_error_ratio_loss(ret, excess)
            else:
                reg = sign_aware_loss(
                    ret, excess, base=p["loss"], sign_weight=p["sign_weight"],
                    delta=p["huber_delta"],
                )  # fmt: skip
            vol = masked_mse(o[:, N_CLASSES + 1], yb[target_col("vol", h)])
            mdd = masked_mse(o[:, N_CLASSES + 2], yb[target_col("mdd", h)])
            total = total + ce / n_cls + reg + vol + mdd
        return total

    def _train(
        self,
        source: Callable[[np.ndarray], torch.Tensor],
        ty: dict[str, torch.Tensor],
        split: _Split,
        rng: np.random.Generator,
    ) -> None:
        """AdamW with ReduceLROnPlateau on the validation loss; keep the best state dict,
        stop after `patience` epochs without improvement."""
        p, net = self.params, self._net
        train, val = split.train, split.val
        assert net is not None
        dev = p["device"]
        opt = torch.optim.AdamW(net.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=0.5, patience=max(1, p["patience"] // 2)
        )

        def batch(idx: np.ndarray) -> _Batch:
            t = torch.from_numpy(idx)
            return _Batch(source(idx).to(dev), {k: v[t].to(dev) for k, v in ty.items()})

        best, bad = math.inf, 0
        best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        self.history_, self.best_epoch_ = [], None
        for epoch in range(p["epochs"]):
            net.train()
            seen, running = 0, 0.0
            for idx in _chunks(rng.permutation(train), p["batch_size"]):
                x, yb = batch(idx)
                loss = self._loss(net(x), yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
                seen, running = seen + len(idx), running + loss.item() * len(idx)
            record = {"epoch": epoch, "train_loss": running / seen, "lr": opt.param_groups[0]["lr"]}
            if len(val):
                net.eval()
                total = 0.0
                with torch.no_grad():
                    for idx in _chunks(val, 4 * p["batch_size"]):
                        x, yb = batch(idx)
                        total += float(self._loss(net(x), yb)) * len(idx)
                record["val_loss"] = vloss = total / len(val)
                sched.step(vloss)
                if vloss < best - 1e-6:
                    best, bad, self.best_epoch_ = vloss, 0, epoch
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    bad += 1
            self.history_.append(record)
            if len(val) and bad >= p["patience"]:
                break
        if len(val):
            net.load_state_dict(best_state)
        else:
            self.best_epoch_ = len(self.history_) - 1
        net.eval()

    @property
    def n_epochs_(self) -> int:
        """Epochs actually run (early stopping may end before `epochs`)."""
        return len(self.history_)

    # -- predict ---------------------------------------------------------------------------
    def predict(self, panel: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
        """Per horizon h: `proba_h_0..4`, `ret_h`, `vol_h` (>= 0), `mdd_h` (<= 0)."""
        if self._net is None or self._prep is None:
            raise ConfigError(f"{self.name} model is not fitted")
        rows = np.asarray(rows, dtype=np.intp)
        net, dev, s = self._net, self.params["device"], self._scales
        outs: dict[str, list[torch.Tensor]] = {h: [] for h in self.horizons}
        with self._threads(), torch.no_grad():
            net.eval()
            ctx = self._context(panel)
            for chunk in _chunks(rows, _PREDICT_CHUNK):
                source = self._source(panel, chunk, ctx)
                for idx in _chunks(np.arange(len(chunk)), 4 * self.params["batch_size"]):
                    for h, o in net(source(idx).to(dev)).items():
                        outs[h].append(o.cpu().double())
        cols: dict[str, np.ndarray] = {}
        for h in self.horizons:
            o = torch.cat(outs[h]) if outs[h] else torch.zeros((0, HEAD_WIDTH), dtype=torch.float64)
            proba = torch.softmax(o[:, :N_CLASSES], dim=1).numpy()
            cols.update(zip(proba_cols(h, N_CLASSES), proba.T, strict=True))
            ret = o[:, N_CLASSES].numpy() * s[_scale_key("excess", h, "std")]
            cols[prediction_col("ret", h)] = ret
            for k, (kind, lo, hi) in enumerate([("vol", 0.0, None), ("mdd", None, 0.0)]):
                z = o[:, N_CLASSES + 1 + k].numpy()
                value = z * s[_scale_key(kind, h, "std")] + s[_scale_key(kind, h, "mean")]
                cols[prediction_col(kind, h)] = np.clip(value, lo, hi)
        return pd.DataFrame(cols, index=panel.index[rows])

    @contextmanager
    def _threads(self) -> Iterator[None]:
        n, before = self.params["num_threads"], torch.get_num_threads()
        if n:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if n:
                torch.set_num_threads(before)

    # -- save / load -----------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """A directory: config.json, weights.pt (state dict), preprocess.pt (stat tensors)."""
        if self._net is None or self._prep is None:
            raise ConfigError(f"{self.name} model is not fitted")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {
            "format": FORMAT, "model": self.name, "params": self.params,
            "columns": self._prep.columns, "scales": self._scales,
            "history": self.history_, "best_epoch": self.best_epoch_,
        }  # fmt: skip
        (path / "config.json").write_text(json.dumps(config, indent=1))
        state = {k: v.detach().cpu() for k, v in self._net.state_dict().items()}
        torch.save(state, path / "weights.pt")
        torch.save(self._prep.state(), path / "preprocess.pt")

    @classmethod
    def load(cls, path: Path) -> Self:
        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        if config.get("format") != FORMAT or config.get("model") != cls.name:
            raise ConfigError(
                f"{path} holds a {config.get('model')!r} model (format {config.get('format')}),"
                f" not {cls.name!r} (format {FORMAT})"
            )
        params = dict(config["params"])
        params["horizons"] = tuple(params["horizons"])
        model = cls(**params)
        prep_state = torch.load(path / "preprocess.pt", weights_only=True)
        model._prep = Preprocessor.from_state(config["columns"], prep_state)
        model._scales = {k: float(v) for k, v in config["scales"].items()}
        model.history_, model.best_epoch_ = config["history"], config["best_epoch"]
        net = model._build_net(len(model._prep.columns))
        net.load_state_dict(torch.load(path / "weights.pt", weights_only=True))
        model._net = net.to(params["device"]).eval()
        return model


class MLPForecaster(_TorchForecaster):
    """Two GELU layers of `hidden` units over one row's preprocessed features."""

    name = "mlp"

    def _build_net(self, n_features: int) -> nn.Module:
        p = self.params
        return MLPNet(n_features, p["hidden"], p["dropout"], self.horizons)

    def _source(
        self, panel: pd.DataFrame, rows: np.ndarray, ctx: Any
    ) -> Callable[[np.ndarray], torch.Tensor]:
        assert self._prep is not None
        x = torch.from_numpy(self._prep.transform(take_features(panel, rows, self._prep.columns)))
        return lambda idx: x[torch.from_numpy(idx)]


class LSTMForecaster(_TorchForecaster):
    """An LSTM over each row's trailing `window` rows of the same ticker (point in time).

    Extra kwargs: `window` (rows, default 20, the row itself included) and `layers` (LSTM
    layers, default 1). Only the rows the windows read are preprocessed, once per chunk of
    rows; windows are gathered batch by batch with `WindowIndex` arithmetic.
    """

    name = "lstm"
    _extra: ClassVar[dict[str, Any]] = {"window": 20, "layers": 1}

    def _validate(self) -> None:
        super()._validate()
        if int(self.params["window"]) < 1 or int(self.params["layers"]) < 1:
            raise ConfigError("window and layers must be >= 1")

    def _build_net(self, n_features: int) -> nn.Module:
        p = self.params
        return LSTMNet(n_features, p["hidden"], p["dropout"], self.horizons, p["layers"])

    def _context(self, panel: pd.DataFrame) -> WindowIndex:
        return WindowIndex(panel.index, int(self.params["window"]))

    def _source(
        self, panel: pd.DataFrame, rows: np.ndarray, ctx: WindowIndex
    ) -> Callable[[np.ndarray], torch.Tensor]:
        assert self._prep is not None
        needed = ctx.needed(rows)
        values = self._prep.transform(take_features(panel, needed, self._prep.columns))
        x = torch.from_numpy(np.vstack([values, np.zeros((1, values.shape[1]), np.float32)]))
        remap = np.full(len(ctx.order), len(needed), dtype=np.intp)  # pads -> the zero row
        remap[needed] = np.arange(len(needed))

        def gather(idx: np.ndarray) -> torch.Tensor:
            pos = ctx.positions(rows[idx])
            sub = np.where(pos >= 0, remap[np.maximum(pos, 0)], len(needed))
            return x[torch.from_numpy(sub)]

        return gather


MODELS: dict[str, type[_TorchForecaster]] = {"mlp": MLPForecaster, "lstm": LSTMForecaster}


def load_net(path: Path) -> _TorchForecaster:
    """Load a saved MLP or LSTM forecaster, whichever the directory holds."""
    name = json.loads((Path(path) / "config.json").read_text()).get("model")
    if name not in MODELS:
        raise ConfigError(f"{path} holds no PyTorch forecaster (model {name!r})")
    return MODELS[name].load(path)
