"""Sign-aware regression losses for the return heads of the PyTorch forecasters.

A portfolio cares more about the sign of an excess-return forecast than about its size:
a long that should have been a short costs twice, a forecast of +0.5% for +2% costs little.
Plain MSE treats both the same, so these losses add a term for sign errors.

Every loss here:
- takes `pred` and `target` of the same shape (1-D per head in practice) and returns a
  scalar mean over the rows whose target is not NaN (missing labels are ignored, never
  imputed);
- returns `0` with a gradient (an exact zero that still belongs to the graph) when every
  target of the batch is NaN, so a batch with no labels for one head costs nothing and does
  not break `backward()`;
- keeps NaN out of the gradient: masked targets are replaced before any arithmetic with
  `pred`, so `pred`'s gradient at a masked row is exactly 0.

The nets feed targets divided by their training standard deviation (not centred: the sign
must survive), so `delta`, `scale` and the weights below are in units of one target std.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F


class _Masked(NamedTuple):
    """A target made safe for arithmetic, with the rows that count and how many there are."""

    target: torch.Tensor  # NaN replaced by 0
    mask: torch.Tensor  # 1.0 on the rows with a target, in pred's dtype
    count: int  # rows with a target


def _masked(pred: torch.Tensor, target: torch.Tensor) -> _Masked:
    """(target with NaN replaced by 0, float mask of valid rows, number of valid rows)."""
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    valid = ~torch.isnan(target)
    clean = torch.where(valid, target, torch.zeros_like(target))
    return _Masked(clean, valid.to(pred.dtype), int(valid.sum()))


def _masked_mean(values: torch.Tensor, mask: torch.Tensor, count: int) -> torch.Tensor:
    """Mean of `values` over the rows where `mask` is 1; 0 (with a grad) when none is."""
    return (values * mask).sum() / max(count, 1)


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the rows whose target is not NaN (0 when none is)."""
    clean, mask, count = _masked(pred, target)
    return _masked_mean((pred - clean) ** 2, mask, count)


def sign_aware_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    base: Literal["mse", "huber"] = "mse",
    sign_weight: float = 0.5,
    delta: float = 1.0,
    squared_penalty: bool = False,
) -> torch.Tensor:
    """MSE or Huber plus a penalty on the rows whose predicted sign is wrong.

        loss = mean_i [ base(pred_i - t_i) + sign_weight * wrong_i * |pred_i - t_i|^p ]

    over rows i with a target, where `wrong_i = 1[pred_i * t_i < 0]` (a zero prediction or a
    zero target is never a sign error), `p = 1` (or 2 with `squared_penalty`), and `base` is
    the squared error or the Huber loss with threshold `delta` (quadratic inside, linear
    outside: robust to the fat tails of returns).

    Differentiability: the indicator is piecewise constant, so its gradient is 0 almost
    everywhere and the gradient comes through `|pred - t|`. On a wrong-sign row
    `|pred - t| = |pred| + |t|`, so the penalty's gradient equals that of the hinge
    `sign_weight * relu(-pred * sign(t))`: an extra constant pull of `sign_weight` towards
    the right side of zero, the same however small the error. The value also jumps by
    `sign_weight * |t|` as `pred` crosses 0; the optimiser never sees that jump, but a
    validation loss (early stopping) does, so model selection prefers fewer sign errors on
    large moves. `sign_weight = 0` gives the plain base loss.
    """
    if base not in ("mse", "huber"):
        raise ValueError(f"base must be 'mse' or 'huber', not {base!r}")
    if sign_weight < 0 or delta <= 0:
        raise ValueError("sign_weight must be >= 0 and delta > 0")
    clean, mask, count = _masked(pred, target)
    err = pred - clean
    huber = base == "huber"
    core = F.huber_loss(pred, clean, reduction="none", delta=delta) if huber else err**2
    wrong = (pred.detach() * clean < 0).to(pred.dtype)
    penalty = err**2 if squared_penalty else err.abs()
    return _masked_mean(core + sign_weight * wrong * penalty, mask, count)


def sign_error_ratio_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    k: float = 4.0,
    scale: float = 1.0,
    mse_weight: float = 0.1,
) -> torch.Tensor:
    """A smooth fraction of sign errors plus a small MSE that pins the scale.

        loss = mean_i sigmoid(-k * pred_i * t_i / scale) + mse_weight * mean_i (pred_i - t_i)^2

    over rows i with a target. `sigmoid(-k * pred * t / scale)` is near 1 when the signs
    differ, near 0 when they agree with conviction, and 0.5 when either is 0; as `k` grows
    it tends to the indicator of a sign error, so the first term tends to the fraction of
    wrong signs (1 - sign accuracy). With standardised targets (`scale = 1`, one std) and
    `k = 4`, a right-signed forecast of one std on a one-std move scores sigmoid(-4) = 0.018.

    Its gradient in `pred` is `-k * t / scale * s * (1 - s)` with `s` the sigmoid, so a row
    pulls in proportion to the size of its move and stops pulling once the sign is clearly
    right. On its own the term is scale free (it only asks that pred * t be large), hence
    the MSE term: it keeps predictions in target units so `ret_h` stays a return estimate.
    """
    if k <= 0 or scale <= 0 or mse_weight < 0:
        raise ValueError("k and scale must be > 0 and mse_weight >= 0")
    clean, mask, count = _masked(pred, target)
    smooth = torch.sigmoid(-k * pred * clean / scale)
    return _masked_mean(smooth + mse_weight * (pred - clean) ** 2, mask, count)
