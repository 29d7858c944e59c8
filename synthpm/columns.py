"""The names of the columns of the frames that flow between stages, spelled here only.

- targets (`forecast.targets`, a fold adds `class`): `target_col(kind, h)` for the
  `TARGET_KINDS`, `event_target_col(group)`;
- a model's raw predictions (`predict`): `proba_cols(h, n)`, `prediction_col(kind, h)` for the
  `PREDICTION_KINDS`, `event_prob_col(group)`;
- the forecast schema (`forecast.walkforward.assemble`): `forecast_col(field, h)` for the
  `FORECAST_FIELDS`, `BEST_HORIZON`, `event_prob_col(group)`, `FOLD`;
- the context frame (`dataset.context.build_contexts`): the forecast schema but `FOLD`, the
  `RECENT` latest 8-K items `event_col(k, field)`, the `NOTABLE` latest open-market insider
  trades `insider_col(k, field)`, `INSIDER_COVERED`, and the feature panel's columns it
  copies, `FROM_PANEL` (`TREND_COLUMNS`, `MARKET_COLUMNS`, `INSIDER_COUNTS`: field of the
  `synthpm.context` type -> column; `VIX_IS_PROXY`, `EVENTS_COVERED`);
- the per-feature correlation table (`research.correlate`): `ic_col(h)`, `ic_ir_col(h)`.
The feature panel's own names are its schema, declared by the `synthpm.features` modules.
"""

from __future__ import annotations

from collections.abc import Iterable

TARGET_KINDS = ("class", "excess", "vol", "mdd")
PREDICTION_KINDS = ("ret", "vol", "mdd")  # `ret` estimates the `excess` target
FORECAST_FIELDS = (
    "return_class",
    "confidence",
    "expected_return",
    "volatility",
    "sharpe",
    "max_drawdown",
)
BEST_HORIZON = "best_horizon"
FOLD = "fold"  # the test period's start

RECENT = 3  # most recent 8-K items in a context
EVENT_FIELDS = ("date", "type", "item")
NOTABLE = 2  # most recent open-market insider trades in a context
INSIDER_FIELDS = ("date", "owner", "role", "code", "value")
EVENTS_COVERED = "ev_covered"  # any filing on record for the ticker by the date
INSIDER_COVERED = "ins_covered"  # any Form 4 transaction on record by the date
VIX_IS_PROXY = "vix_is_proxy"
INSIDER_COUNTS = {
    "buys_90d": "ins_buys_90d",
    "sells_90d": "ins_sells_90d",
    "net_value_90d": "ins_net_value_90d",
}
TREND_COLUMNS = {
    "return_1w": "ret_5d",
    "return_1m": "ret_21d",
    "return_3m": "ret_63d",
    "return_6m": "ret_126d",
    "dist_52w_high": "dist_52w_high",
    "dist_52w_low": "dist_52w_low",
    "dist_sma_50": "dist_sma_50",
    "dist_sma_200": "dist_sma_200",
    "rsi_14": "rsi_14",
    "volatility_1m": "vol_21d",
    "sector_relative_1m": "sector_rel_21d",
}
MARKET_COLUMNS = {
    "index_return_1m": "idx_ret_21d",
    "index_return_3m": "idx_ret_63d",
    "index_dist_sma_200": "idx_dist_sma_200",
    "index_volatility_1m": "idx_vol_21d",
    "vix": "vix",
    "vix_z": "vix_z_252",
}
# the feature panel's columns a context row copies as they are
FROM_PANEL = (
    *TREND_COLUMNS.values(),
    *MARKET_COLUMNS.values(),
    VIX_IS_PROXY,
    EVENTS_COVERED,
    *INSIDER_COUNTS.values(),
)


def _per_horizon(name: str, horizon: str) -> str:
    return f"{name}_{horizon}"


def target_col(kind: str, horizon: str) -> str:
    """A target: `class`, `excess` (return minus the benchmark's), `vol` or `mdd` ahead."""
    return _per_horizon(kind, horizon)


def target_horizons(kind: str, columns: Iterable[str]) -> list[str]:
    """The horizons of the `kind` targets among `columns`, in their order."""
    prefix = target_col(kind, "")
    return [c.removeprefix(prefix) for c in columns if c.startswith(prefix)]


def prediction_col(kind: str, horizon: str) -> str:
    """A raw prediction: `ret` (excess return), `vol` or `mdd`."""
    return _per_horizon(kind, horizon)


def proba_cols(horizon: str, n_classes: int) -> list[str]:
    """The raw class probabilities of `horizon`, class 0 first."""
    return [f"proba_{horizon}_{k}" for k in range(n_classes)]


def forecast_col(field: str, horizon: str) -> str:
    """A column of the forecast schema: one of `FORECAST_FIELDS` at `horizon`."""
    return _per_horizon(field, horizon)


def event_target_col(group: str) -> str:
    """1 when a filing of the event group becomes known in the next period."""
    return f"event_{group}"


def event_target_group(column: str) -> str:
    return column.removeprefix(event_target_col(""))


def event_prob_col(group: str) -> str:
    """The forecast probability of `event_target_col(group)`."""
    return f"event_prob_{group}"


def event_prob_group(column: str) -> str | None:
    """The event group of an event-probability column; None for any other column."""
    prefix = event_prob_col("")
    return column.removeprefix(prefix) if column.startswith(prefix) else None


def event_col(k: int, field: str) -> str:
    """`field` (one of `EVENT_FIELDS`) of the k-th latest 8-K item (k = 1 is the latest)."""
    return f"ev{k}_{field}"


def insider_col(k: int, field: str) -> str:
    """`field` (one of `INSIDER_FIELDS`) of the k-th latest open-market insider trade."""
    return f"ins{k}_{field}"


def ic_col(horizon: str) -> str:
    return _per_horizon("ic", horizon)


def ic_ir_col(horizon: str) -> str:
    return _per_horizon("ic_ir", horizon)
