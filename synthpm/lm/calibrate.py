"""Calibrated conviction: the model's expected conviction mapped to the probability of a win.

`Signal.conviction` means the probability that the stock beats the benchmark, net of costs,
over the hold (a win: the dataset's `outcome` > 0). The model's expectation (`decode`,
conviction "expected") ranks outcomes, but its scale is the labels' (the outcome's
percentile among the date's members), not a probability. `fit_calibration` maps it to one:

- **Rows.** The validation split (dates after training, before test): the `empty` scenario
  only, so each context counts once (its copies under the other scenarios share its outcome
  and would weigh it up to 10 times) and no book shapes the answer; a dataset without that
  scenario keeps one row per context. Up to `n` of them drawn uniformly with `seed`, so
  every part of the split is represented and each date weighs by its number of contexts, as
  the agent meets them (an equal weight per date would overweight filing-only days).
- **Decoding.** Signal mode, the batched decode the agent and `lm eval` run
  (`read_convictions`), unrounded.
- **Map.** `IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0, y_max=1)` of
  win on the expectation: monotone, and no shape assumed; the map runs linearly through the
  middle of each flat step, so it ties no convictions between its first and last step
  (the manager sizes by their rank). Increasing is fixed, not "auto": a model whose conviction
  anti-ranks outcomes gets a flat map (its base rate), not a flipped one.
- **Bands** (`Bands`): the expected convictions at which the agent decides (`decode`'s
  steered decision): BUY at or above the quantile `1 - buy rate`, SELL a holding at or
  below the quantile `sell rate`, of the same rows' expectations (before the map, which
  may flatten a range into ties). The rates are
  the labels' own bars (`buy_conviction`, `sell_conviction` in the model's `dataset.json`:
  BUY the top 30% of a date's outcomes, SELL a holding in the bottom 30%), so the agent
  buys and sells as often as its training labels did, on its ranking of the stocks. The
  bars are stored too: on a date with many stocks the agent decides by the expectations'
  ranks among the date's at those bars (`decide_on_date`), and by the bands where it
  analyses a stock alone.
- **Stored** in the model folder as `calibration.json`: the steps' middles and values
  (applied with `np.interp`, clipped outside; no pickle), the rows' count, scenario and
  date range, the Brier score and ECE before and after on those rows (after is in sample:
  `lm eval` scores the map on the test split), and the sha256 of the `model.pt` it was fitted on: a
  retrained model must be recalibrated, and `Calibration.load` refuses a stale map.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss

from synthpm.data.errors import ConfigError
from synthpm.dataset.labels import LabelConfig
from synthpm.executor import LOCAL, ExecutorConfig, parallel_map
from synthpm.folders import write_atomic
from synthpm.lm.decode import SignalDecoder, parse_signal
from synthpm.lm.tokenizer import ChatTokenizer
from synthpm.lm.train import load_model

FILE = "calibration.json"
SCENARIO = "empty"  # one row per context, and no portfolio to shape the answer
BINS = 10  # equal-width bins of the reliability table and the ECE
ROWS = ("date", "ticker", "scenario", "system", "user", "outcome")


# Prompts one fresh decoder reads: the unit an executor spreads (decoding a piece costs far
# more than building its decoder).
PIECE = 1000


class Convictions(NamedTuple):
    """Each row's conviction as the answer writes it, and the model's expectation of it."""

    written: np.ndarray
    expected: np.ndarray


def read_convictions(
    model,
    tokenizer: ChatTokenizer,
    rows: pd.DataFrame,
    batch_size: int = 32,
    executor: ExecutorConfig = LOCAL,
    piece: int = PIECE,
) -> Convictions:
    """(written, expected) conviction of each row's conversation, decoded in signal mode:
    one pass gives both readings (the text holds the written one). The rows are read in
    pieces of `piece`, each by a fresh decoder: a decoder keeps the prefixes of its earlier
    batches, so a piece's numbers would otherwise depend on what was read before it. Where
    `executor` runs the pieces thus changes no bit of the result."""
    prompts = [
        tokenizer.render(s, u).ids for s, u in zip(rows["system"], rows["user"], strict=True)
    ]
    pieces = [prompts[i : i + piece] for i in range(0, len(prompts), piece)]
    threads = torch.get_num_threads()
    read = list(parallel_map(_read_piece, (model, tokenizer, batch_size, threads), pieces,
                             executor, threads))  # fmt: skip
    return Convictions(
        np.concatenate([r.written for r in read]) if read else np.array([], dtype=float),
        np.concatenate([r.expected for r in read]) if read else np.array([], dtype=float),
    )


def _read_piece(shared: tuple, prompts: list[list[int]]) -> Convictions:
    model, tokenizer, batch_size, threads = shared
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # a worker sums as the caller would: with its threads
    try:
        decoder = SignalDecoder(model, tokenizer)
        scored = decoder.decode_scored(prompts, mode="signal", batch_size=batch_size)
    finally:
        torch.set_num_threads(before)
    written = np.array([parse_signal(s.text, True).conviction for s in scored], dtype=float)
    return Convictions(written, np.array([s.expected for s in scored], dtype=float))


def reliability(p: np.ndarray, won: np.ndarray, bins: int = BINS) -> list[dict]:
    """Per equal-width bin of [0, 1]: its edges, `count`, `mean_predicted` and `observed`
    (the win rate; both None for an empty bin). A value on an inner edge is in the upper bin."""
    p, won = np.asarray(p, dtype=float), np.asarray(won, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table = []
    for b in range(bins):
        inside = which == b
        table.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": int(inside.sum()),
                "mean_predicted": float(p[inside].mean()) if inside.any() else None,
                "observed": float(won[inside].mean()) if inside.any() else None,
            }
        )
    return table


def calibration_error(p: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: the bins' |mean predicted - win rate|, weighted by count."""
    table = reliability(p, y, bins)
    total = sum(row["count"] for row in table)
    return float(
        sum(row["count"] / total * abs(row["mean_predicted"] - row["observed"])
            for row in table if row["count"])
    )  # fmt: skip


def scores(p: np.ndarray, won: np.ndarray) -> dict[str, float]:
    """Brier score and ECE of probabilities `p` against wins (0/1)."""
    return {"brier": float(brier_score_loss(won, p)), "ece": calibration_error(p, won)}


def assess(p: np.ndarray, won: np.ndarray, calibration: Calibration | None) -> dict:
    """`raw` and `calibrated` (None without a calibration): Brier, ECE and reliability table."""
    out: dict = {"raw": None, "calibrated": None}
    if not len(p):  # nothing to score (no test date had enough contexts)
        return out
    readings = {"raw": np.asarray(p, dtype=float)}
    if calibration is not None:
        readings["calibrated"] = calibration(readings["raw"])
    for name, values in readings.items():
        out[name] = {**scores(values, won), "reliability": reliability(values, won)}
    return out


def model_digest(model_dir: str | Path) -> str | None:
    """sha256 of the folder's `model.pt` (None without one): which weights a map belongs to."""
    weights = Path(model_dir) / "model.pt"
    if not weights.is_file():
        return None
    digest = hashlib.sha256()
    with weights.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bands:
    """The expected convictions the agent decides at (module docstring)."""

    sell_below: float  # SELL a holding at or below
    buy_at: float  # BUY at or above
    sell_bar: float = 0.3  # the labels' bars: the quantiles the bands were fitted at
    buy_bar: float = 0.7

    def decide(self, conviction: np.ndarray, held: np.ndarray) -> list[str]:
        """Each row's decision from its expected conviction and whether the book holds it."""
        conviction = np.asarray(conviction, dtype=float)
        return _decisions(conviction >= self.buy_at, conviction <= self.sell_below, held)

    def decide_on_date(self, conviction: np.ndarray, held: np.ndarray) -> list[str]:
        """The decisions of one date's stocks by their expectations' ranks among each other
        (module docstring): BUY the top `1 - buy_bar`, SELL a holding in the bottom
        `sell_bar`."""
        rank = date_percentile(np.asarray(conviction, dtype=float))
        return _decisions(rank >= self.buy_bar, rank <= self.sell_bar, held)

    @classmethod
    def fit(cls, conviction: np.ndarray, labels: LabelConfig) -> Bands:
        """The quantiles of `conviction` at the labels' bars (module docstring)."""
        bars = labels.sell_conviction, labels.buy_conviction
        sell, buy = np.quantile(conviction, bars)
        return cls(float(sell), float(buy), *bars)


def date_percentile(values: np.ndarray) -> np.ndarray:
    """Each value's percentile among `values`, as the labels rank a date's outcomes: 0 the
    lowest, 1 the highest, ties averaged, 0.5 alone."""
    if len(values) < 2:
        return np.full(len(values), 0.5)
    return (pd.Series(values).rank(method="average").to_numpy() - 1) / (len(values) - 1)


def _decisions(buy: np.ndarray, sell: np.ndarray, held: np.ndarray) -> list[str]:
    sell = ~buy & np.asarray(held, dtype=bool) & sell
    return np.where(buy, "BUY", np.where(sell, "SELL", "SKIP")).tolist()


@dataclass(frozen=True)
class Calibration:
    """A monotone map of expected conviction to win probability: linear between the middles
    of the isotonic regression's steps (`fit`), clipped outside them."""

    x: np.ndarray  # the middle of each isotonic step, increasing
    y: np.ndarray  # the step's win rate, increasing, in [0, 1]
    record: dict = field(default_factory=dict)  # how it was fitted (module docstring)
    bands: Bands | None = None  # where the agent decides; None: the model's own decision

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(p, dtype=float), self.x, self.y)

    @classmethod
    def fit(cls, p: np.ndarray, won: np.ndarray, record: dict | None = None) -> Calibration:
        """The isotonic regression of wins (0/1) on `p` (module docstring)."""
        iso = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0, y_max=1)
        iso.fit(np.asarray(p, dtype=float), np.asarray(won, dtype=float))
        x, y = iso.X_thresholds_.astype(float), iso.y_thresholds_.astype(float)
        # Through the middle of each flat step rather than along it: the map stays monotone
        # but no longer ties a step's convictions, whose order the manager sizes by.
        block = np.concatenate([[0], np.cumsum(np.diff(y) != 0)])
        x = pd.Series(x).groupby(block).agg(lambda v: (v.iloc[0] + v.iloc[-1]) / 2).to_numpy()
        y = pd.Series(y).groupby(block).first().to_numpy()
        return cls(x, y, record or {})

    def save(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / FILE
        document = {**self.record, "x_thresholds": self.x.tolist(), "y_thresholds": self.y.tolist()}
        if self.bands is not None:
            document["bands"] = asdict(self.bands)
        return write_atomic(path, json.dumps(document, indent=1))

    @classmethod
    def load(cls, model_dir: str | Path) -> Calibration | None:
        """The folder's calibration; None without `calibration.json`. ConfigError when it was
        fitted on other weights than the folder's `model.pt` (retrained since)."""
        path = Path(model_dir) / FILE
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        x, y = (np.array(record.pop(k), dtype=float) for k in ("x_thresholds", "y_thresholds"))
        bands = record.pop("bands", None)  # a map fitted before bands existed has none
        fitted, current = record.get("model_sha256"), model_digest(model_dir)
        if fitted and current and fitted != current:
            raise ConfigError(
                f"{path} was fitted on other weights than {Path(model_dir) / 'model.pt'}: "
                f"run `synthpm lm calibrate {model_dir} --data ...` again"
            )
        return cls(x, y, record, Bands(**bands) if bands else None)


def calibration_rows(data: str | Path, n: int | None, seed: int = 0) -> pd.DataFrame:
    """The validation rows to calibrate on (module docstring), in date and ticker order."""
    parts = sorted((Path(data) / "validation").glob("part-*.parquet"))
    if not parts:
        raise ConfigError(f"no validation examples in {data} (run `synthpm dataset build`)")
    present = set(pq.read_schema(parts[0]).names)
    columns = [c for c in ROWS if c in present]
    one = "scenario" in present and any(
        (pd.read_parquet(p, columns=["scenario"])["scenario"] == SCENARIO).any() for p in parts
    )
    # the prompts' text is most of a shard: read only the rows that can be used
    where = [("scenario", "==", SCENARIO)] if one else None
    frames = [pd.read_parquet(p, columns=columns, filters=where) for p in parts]
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[np.isfinite(rows["outcome"].to_numpy(dtype=float))]
    rng = np.random.default_rng(seed)
    if not one and {"date", "ticker"} <= set(rows):  # one copy of each context, at random
        rows = rows.iloc[rng.permutation(len(rows))].drop_duplicates(["date", "ticker"])
    if n is not None and len(rows) > n:
        rows = rows.iloc[np.sort(rng.choice(len(rows), n, replace=False))]
    order = [c for c in ("date", "ticker") if c in rows]
    return rows.sort_values(order, kind="stable").reset_index(drop=True) if order else rows


def fit_calibration(
    model_dir: str | Path,
    data_dir: str | Path,
    n: int | None = 2000,
    seed: int = 0,
    batch_size: int = 32,
    executor: ExecutorConfig = LOCAL,
) -> Calibration:
    """Fit the map on the validation split and write `calibration.json` (module docstring)."""
    model, tokenizer = load_model(model_dir)
    rows = calibration_rows(data_dir, n, seed)
    if rows.empty:
        raise ConfigError(f"no labelled validation rows in {data_dir} to calibrate on")
    _, expected = read_convictions(model, tokenizer, rows, batch_size, executor)
    won = (rows["outcome"].to_numpy(dtype=float) > 0).astype(float)
    calibration = Calibration.fit(expected, won)
    trained = Path(model_dir) / "dataset.json"
    labels = json.loads(trained.read_text()).get("labels") if trained.is_file() else None
    labels = LabelConfig(**(labels or {}))
    bands = Bands.fit(expected, labels)
    one_scenario = "scenario" in rows and (rows["scenario"] == SCENARIO).all()
    dates = pd.to_datetime(rows["date"]) if "date" in rows else None
    record = {
        "split": "validation",
        "scenario": SCENARIO if one_scenario else "one row per context",
        "n": len(rows),
        "seed": seed,
        "dates": [str(dates.min().date()), str(dates.max().date())] if dates is not None else None,
        "n_dates": int(dates.nunique()) if dates is not None else None,
        "win_rate": float(won.mean()),
        "before": scores(expected, won),
        "after": scores(calibration(expected), won),  # in sample: `lm eval` scores it on test
        "model_sha256": model_digest(model_dir),
        "data": str(Path(data_dir).resolve()),
        "bars": {"sell": labels.sell_conviction, "buy": labels.buy_conviction},
    }
    calibration = replace(calibration, record=record, bands=bands)
    calibration.save(model_dir)
    return calibration
