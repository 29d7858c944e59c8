"""The torch modules of the nets: a trunk (an MLP over a row, or an LSTM over its window)
and one linear head per horizon.
"""

from __future__ import annotations

import torch
from torch import nn

from synthpm.forecast.base import N_CLASSES

HEAD_WIDTH = N_CLASSES + 3  # per-horizon head: 5 class logits, ret, vol, mdd


class Heads(nn.Module):
    """One linear head per horizon: [5 class logits, ret, vol, mdd]."""

    def __init__(self, hidden: int, horizons: tuple[str, ...]) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({h: nn.Linear(hidden, HEAD_WIDTH) for h in horizons})

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {h: head(z) for h, head in self.heads.items()}


class MLPNet(nn.Module):
    def __init__(self, n_in: int, hidden: int, dropout: float, horizons: tuple[str, ...]):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(n_in, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
        )  # fmt: skip
        self.heads = Heads(hidden, horizons)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.trunk(x))


class LSTMNet(nn.Module):
    """LSTM over the window; the last step's output (the row itself) feeds a small MLP."""

    def __init__(
        self, n_in: int, hidden: int, dropout: float, horizons: tuple[str, ...], layers: int
    ):
        super().__init__()
        self.lstm = nn.LSTM(
            n_in, hidden, num_layers=layers, batch_first=True,
            dropout=dropout if layers > 1 else 0.0,
        )  # fmt: skip
        self.post = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout))
        self.heads = Heads(hidden, horizons)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out, _ = self.lstm(x)
        return self.heads(self.post(out[:, -1]))
