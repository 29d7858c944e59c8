"""Per-ticker price features: one numeric kernel over one ticker's bars (vectorbt style).

`price_features` takes a ticker's bars in date order as float64 numpy arrays and returns
named float arrays of the same length. Everything is trailing: row i reads bars 0..i only
(TA-Lib's indicators are causal; its EMAs depend on where the series starts, which is still
the past). Levels are made scale-free (ratios to the close, oscillators in their own
units), so one model can read every ticker and every decade, and no feature depends on the
level of a back-adjusted price, which encodes later splits and dividends: multiplying a
ticker's whole history by a constant changes nothing (`tests/test_scale_invariance.py`).

Bars with no open/high/low/volume (the embedded data is close-only) give NaN for the
indicators that need them; `CLOSE_ONLY` lists the ones that never do.
"""

from __future__ import annotations

import numpy as np
import talib

ANNUAL = np.sqrt(252.0)
RETURN_WINDOWS = (5, 21, 63, 126)

# name -> family. The families are the issue's: returns, volatility, momentum, trend, volume.
CLOSE_ONLY: dict[str, str] = {
    **{f"ret_{w}d": "returns" for w in RETURN_WINDOWS},
    "ret_1d": "returns",
    "vol_21d": "volatility",
    "vol_63d": "volatility",
    "vol_ratio_21_63": "volatility",
    "bb_pct_b": "volatility",
    "bb_width": "volatility",
    "rsi_14": "momentum",
    "macd_hist": "momentum",
    "macd": "momentum",
    "ppo": "momentum",
    "cmo_14": "momentum",
    "trix_15": "momentum",
    "stochrsi_k": "momentum",
    "dist_sma_20": "trend",
    "dist_sma_50": "trend",
    "dist_sma_200": "trend",
    "sma_50_200": "trend",
    "slope_20": "trend",
    "dist_52w_high": "trend",
    "dist_52w_low": "trend",
}
NEEDS_OHLCV: dict[str, str] = {
    "natr_14": "volatility",
    "range_1d": "volatility",
    "adx_14": "trend",
    "plus_minus_di": "trend",
    "cci_14": "momentum",
    "willr_14": "momentum",
    "stoch_k": "momentum",
    "ultosc": "momentum",
    "gap_1d": "momentum",
    "volume_z_20": "volume",
    "volume_ratio_20_252": "volume",
    "mfi_14": "volume",
    "obv_slope_20": "volume",
    "adosc": "volume",
}
PRICE_FEATURES = {**CLOSE_ONLY, **NEEDS_OHLCV}


def shift(x: np.ndarray, n: int) -> np.ndarray:
    """`x` lagged by n >= 1 rows, NaN-filled (any length, even shorter than n)."""
    out = np.full_like(x, np.nan)
    if n < len(x):
        out[n:] = x[:-n]
    return out


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b - 1.0


def price_features(
    open_: np.ndarray, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> dict[str, np.ndarray]:
    """All price features of one ticker. Inputs are float64, NaN where a field is missing."""
    out: dict[str, np.ndarray] = {}
    prev = shift(close, 1)
    out["ret_1d"] = _ratio(close, prev)
    for w in RETURN_WINDOWS:
        out[f"ret_{w}d"] = _ratio(close, shift(close, w))
    log_ret = np.log(close / prev)
    # TA-Lib's STDDEV is the population deviation; over 21+ days the ddof difference is <3%.
    out["vol_21d"] = talib.STDDEV(log_ret, 21) * ANNUAL
    out["vol_63d"] = talib.STDDEV(log_ret, 63) * ANNUAL
    with np.errstate(divide="ignore", invalid="ignore"):
        out["vol_ratio_21_63"] = out["vol_21d"] / out["vol_63d"]
    upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["bb_pct_b"] = (close - lower) / (upper - lower)
        out["bb_width"] = (upper - lower) / middle
    out["rsi_14"] = talib.RSI(close, 14)
    macd, _, hist = talib.MACD(close, 12, 26, 9)
    out["macd"] = macd / close
    out["macd_hist"] = hist / close
    out["ppo"] = talib.PPO(close, 12, 26)
    out["cmo_14"] = talib.CMO(close, 14)
    out["trix_15"] = talib.TRIX(close, 15)
    out["stochrsi_k"], _ = talib.STOCHRSI(close, 14, 5, 3)
    sma = {w: talib.SMA(close, w) for w in (20, 50, 200)}
    for w, s in sma.items():
        out[f"dist_sma_{w}"] = _ratio(close, s)
    out["sma_50_200"] = _ratio(sma[50], sma[200])
    out["slope_20"] = talib.LINEARREG_SLOPE(close, 20) / close
    out["dist_52w_high"] = _ratio(close, talib.MAX(close, 252))
    out["dist_52w_low"] = _ratio(close, talib.MIN(close, 252))

    if np.isnan(high).all() or np.isnan(volume).all():
        nan = np.full_like(close, np.nan)
        out.update({name: nan for name in NEEDS_OHLCV})
        return out
    out["natr_14"] = talib.NATR(high, low, close, 14)
    out["range_1d"] = (high - low) / close
    out["adx_14"] = talib.ADX(high, low, close, 14)
    out["plus_minus_di"] = talib.PLUS_DI(high, low, close, 14) - talib.MINUS_DI(
        high, low, close, 14
    )
    out["cci_14"] = talib.CCI(high, low, close, 14)
    out["willr_14"] = talib.WILLR(high, low, close, 14)
    out["stoch_k"], _ = talib.STOCH(high, low, close, 14, 3, 0, 3, 0)
    out["ultosc"] = talib.ULTOSC(high, low, close, 7, 14, 28)
    out["gap_1d"] = _ratio(open_, prev)
    log_vol = np.log1p(volume)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["volume_z_20"] = (log_vol - talib.SMA(log_vol, 20)) / talib.STDDEV(log_vol, 20)
    # Volume against its own year, not dollar volume: where a source's closes carry later
    # dividends and its volumes do not (the survivorship-free panel), close x volume does too.
    with np.errstate(divide="ignore", invalid="ignore"):
        out["volume_ratio_20_252"] = np.log(talib.SMA(volume, 20) / talib.SMA(volume, 252))
    out["mfi_14"] = talib.MFI(high, low, close, volume, 14)
    obv = talib.OBV(close, volume)
    avg_volume = talib.SMA(volume, 20)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["obv_slope_20"] = talib.LINEARREG_SLOPE(obv, 20) / avg_volume
        out["adosc"] = talib.ADOSC(high, low, close, volume, 3, 10) / avg_volume
    return out
