"""Daily text factors per ticker, point in time, from scored texts.

    batch, stats = factors_batch(store, FactorConfig(), EmbedConfig(), load_concepts())
    store.write(batch)            # tables text_factors (long) and text_quotes

A text counts from the first session on or after its `date_known` (the importer moved a
post after the close to the next business day). On session t, for ticker i, with weights
w_k = 0.5^(k / halflife) over the last `window` sessions (k = 0 is t):

- `text_<concept>`: the weighted mean of the concept's score over the texts known by the
  close of t; `text_<concept>_disp` their weighted standard deviation. NaN when no text
  fell in the window.
- `text_posts_1d`: texts that became known on t; `text_posts`: their weighted count.
- `text_attention`: retail attention's surprise, log(1 + posts over the last 5 sessions)
  minus log(1 + 5 × the mean daily count of the `baseline` - 5 sessions before those).
- a quote: the text of the window closest to the window's weighted mean embedding (its
  most representative post), cut to `quote_chars`.

Rows are written while some text fell in the last `baseline` sessions; the feature panel
reads a missing row as no text (counts 0, concepts NaN). Every value at t is a causal filter
of per-session sums at t and before, so a text known after t cannot change it (a test adds
one and checks).
"""

from __future__ import annotations

import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.signal import lfilter

from synthpm.data.errors import ConfigError
from synthpm.data.store import ImportBatch, Store
from synthpm.progress import track
from synthpm.text.concepts import ConceptSet
from synthpm.text.embed import EmbedConfig, embed, make_embedder

COUNTS = ("text_posts_1d", "text_posts", "text_attention")
SHORT = 5  # sessions in attention's recent count
QUOTE_MARKS = "«»"  # a quote is shown between these; a text's own are replaced


class FactorConfig(BaseModel):
    """How texts known by each close become that day's factors."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    halflife: float = Field(5.0, gt=0, description="sessions for a text's weight to halve")
    window: int = Field(21, ge=1, le=252, description="sessions a text is read for")
    baseline: int = Field(63, ge=SHORT + 1, le=504, description="sessions of usual volume")
    quote_chars: int = Field(200, ge=20, le=2000, description="a quoted post's length cap")


def factor_names(concepts: list[str]) -> list[str]:
    return [*COUNTS, *(n for c in concepts for n in (f"text_{c}", f"text_{c}_disp"))]


def _causal(x: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """y[t] = sum_k weights[k] x[t - k] along axis 0: a causal FIR filter (scipy's C)."""
    return lfilter(weights, [1.0], x, axis=0)


def quote_text(text: str, limit: int) -> str:
    """One line, no quote marks of our own, cut at a word to `limit` characters."""
    flat = " ".join(text.split())
    for mark in QUOTE_MARKS:
        flat = flat.replace(mark, '"')
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1].rsplit(" ", 1)[0] or flat[: limit - 1]
    return cut + "…"


def daily_factors(
    texts: pd.DataFrame,
    scores: np.ndarray,
    vectors: np.ndarray,
    concepts: list[str],
    sessions: pd.DatetimeIndex,
    config: FactorConfig,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long factors (ticker, date, name, value) and quotes (ticker, date, date_known,
    text_id, text) from `texts` (ticker, date_known, time, text_id, text) with their concept
    `scores` (n, k) and L2-normalised `vectors` (n, d), on the sessions given."""
    sessions = pd.DatetimeIndex(sessions).sort_values().unique()
    pos = sessions.searchsorted(pd.to_datetime(texts["date_known"]).to_numpy(), "left")
    keep = pos < len(sessions)  # known after the last session: not yet read by anything
    frame = texts.loc[keep, ["ticker", "time", "text_id", "text"]].assign(_pos=pos[keep])
    scores, vectors = scores[keep], vectors[keep]
    # a fixed order (not the store's): the same texts always pick the same quote
    order = np.lexsort([frame[c].to_numpy() for c in ("text_id", "time", "_pos", "ticker")])
    frame, scores, vectors = frame.iloc[order], scores[order], vectors[order]
    weights = 0.5 ** (np.arange(config.window) / config.halflife)
    names = factor_names(concepts)
    blocks, quotes = [], []
    tickers = frame["ticker"].to_numpy()
    bounds = np.r_[np.flatnonzero(np.r_[True, tickers[1:] != tickers[:-1]]), len(frame)]
    for a, b in track(list(pairwise(bounds)), "text factors"):
        ticker = tickers[a]
        p = frame["_pos"].to_numpy()[a:b]
        lo, hi = int(p[0]), min(len(sessions), int(p[-1]) + config.baseline)
        rel = p - lo
        T = hi - lo
        n = np.bincount(rel, minlength=T).astype(np.float64)
        s = np.zeros((T, len(concepts)))
        np.add.at(s, rel, scores[a:b])
        q = np.zeros_like(s)
        np.add.at(q, rel, scores[a:b].astype(np.float64) ** 2)
        dn = _causal(n, weights)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = _causal(s, weights) / dn[:, None]
            var = np.maximum(_causal(q, weights) / dn[:, None] - mean**2, 0.0)
        empty = dn <= 1e-12
        mean[empty], var[empty] = np.nan, np.nan
        recent = _causal(n, np.ones(SHORT))
        usual = _causal(n, np.ones(config.baseline - SHORT))  # shifted: sessions before those
        usual = np.r_[np.zeros(SHORT), usual[:-SHORT]][:T] / (config.baseline - SHORT)
        attention = np.log1p(recent) - np.log1p(SHORT * usual)
        live = _causal(n, np.ones(config.baseline)) > 0
        cols = [n, dn, attention]
        for j in range(len(concepts)):
            cols += [mean[:, j], np.sqrt(var[:, j])]
        values = np.stack(cols, axis=1)[live]
        rows = np.flatnonzero(live)
        dates = sessions[lo + rows]
        blocks.append(
            pd.DataFrame(
                {
                    "ticker": ticker,
                    "date": np.repeat(dates.to_numpy(), len(names)),
                    "name": np.tile(names, len(rows)),
                    "value": values.ravel(),
                }
            )
        )
        quotes.append(_quotes(frame.iloc[a:b], rel, vectors[a:b], weights, sessions[lo:hi], config))
    long = pd.concat(blocks, ignore_index=True) if blocks else _empty_long()
    long = long[np.isfinite(long["value"].to_numpy())].reset_index(drop=True)
    return long, (pd.concat(quotes, ignore_index=True) if quotes else _empty_quotes())


def _quotes(
    rows: pd.DataFrame,
    rel: np.ndarray,
    vectors: np.ndarray,
    weights: np.ndarray,
    dates: pd.DatetimeIndex,
    config: FactorConfig,
) -> pd.DataFrame:
    """Per session with text in the window: the text closest to the weighted mean vector."""
    T = len(dates)
    daily = np.zeros((T, vectors.shape[1]))
    np.add.at(daily, rel, vectors)
    centre = _causal(daily, weights)
    counts = _causal(np.bincount(rel, minlength=T).astype(float), np.ones(config.window))
    days = np.flatnonzero(counts > 0)
    # the window's texts are a run of the sorted rows; einsum, not BLAS, so a day's scores
    # have the same bits however many later texts there are (and memory stays one window's)
    starts = np.searchsorted(rel, days - config.window + 1, "left")
    ends = np.searchsorted(rel, days, "right")
    best = np.empty(len(days), np.int64)
    for i, (day, a, b) in enumerate(zip(days, starts, ends, strict=True)):
        sims = np.einsum("nd,d->n", vectors[a:b], centre[day])
        best[i] = b - 1 - int(np.argmax(sims[::-1]))  # ties: the latest, read last that day
    picked = rows.iloc[best]
    return pd.DataFrame(
        {
            "ticker": picked["ticker"].to_numpy(),
            "date": dates[days],
            "date_known": dates[rel[best]],
            "text_id": picked["text_id"].to_numpy(),
            "text": [quote_text(t, config.quote_chars) for t in picked["text"]],
        }
    )


def _empty_long() -> pd.DataFrame:
    return pd.DataFrame({"ticker": [], "date": pd.to_datetime([]), "name": [], "value": []})


def _empty_quotes() -> pd.DataFrame:
    cols = {"ticker": [], "date": pd.to_datetime([]), "date_known": pd.to_datetime([])}
    return pd.DataFrame({**cols, "text_id": [], "text": []})


def factors_batch(
    store: Store,
    config: FactorConfig,
    embed_config: EmbedConfig,
    concepts: ConceptSet,
    cache_root: str | Path | None = None,
    log=print,
) -> tuple[ImportBatch, dict]:
    """Every stored text embedded (cached), scored and turned into the store's factor
    tables, replacing each ticker's earlier factors."""
    started = time.perf_counter()
    texts = store.texts()
    if texts.empty:
        raise ConfigError(f"no texts in {store.path}: run `synthpm text import` first")
    sessions = store.query("SELECT DISTINCT date FROM prices ORDER BY date")["date"]
    sessions = pd.DatetimeIndex(sessions)
    if sessions.empty:
        raise ConfigError(f"no prices in {store.path}: text factors live on its sessions")
    embedder = make_embedder(embed_config, concepts.phrases())
    log(f"embedding {len(texts):,} texts with {embedder.name}")
    vectors, computed = embed(texts["text"].tolist(), embedder, cache_root)
    embedded = time.perf_counter()
    scores = concepts.scores(vectors, embedder.encode)
    long, quotes = daily_factors(texts, scores, vectors, concepts.names, sessions, config)
    stats = {
        "texts": len(texts),
        "embedded_now": computed,
        "embedder": embedder.name,
        "embed_seconds": round(embedded - started, 2),
        "factor_seconds": round(time.perf_counter() - embedded, 2),
        "factor_rows": len(long),
        "quote_rows": len(quotes),
        "tickers": int(long["ticker"].nunique()),
    }
    batch = ImportBatch(
        "text-factors",
        f"{embedder.name}; {config.model_dump()}; concepts {','.join(concepts.names)}",
        {"text_factors": long, "text_quotes": quotes},
        notes={"texts": len(texts), "embedded_now": computed},
    )
    return batch, stats
