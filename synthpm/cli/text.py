"""Dated text: import, embed, factors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from synthpm.cli.common import StoreOption, command, console, options
from synthpm.cli.common import store_at as _store
from synthpm.cli.data import _show_report
from synthpm.data.errors import SynthpmError
from synthpm.text.embed import EmbedConfig
from synthpm.text.factors import FactorConfig

text_app = typer.Typer(help="Dated text: import, embed, factors.", no_args_is_help=True)


@text_app.command("import")
def text_import(
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="FILE", help="texts: .csv, .tsv, .parquet, .jsonl (ticker, time, text)"
        ),
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="source of rows without one (default: the file's stem)")
    ] = None,
    events: Annotated[
        bool, typer.Option("--events", help="the store's 8-K events as texts (source 8-K)")
    ] = False,
    store: StoreOption = None,
) -> None:
    """Validate dated texts, then import them as one all-or-nothing transaction."""
    from synthpm.data.importers.text import events_as_text, import_text

    if (path is None) == (not events):
        raise SynthpmError("give a FILE or --events, not both or neither")
    if events and source is not None:
        raise SynthpmError("--source applies to a FILE import only")
    target = _store(store)
    started = time.perf_counter()
    with console.status(f"reading and validating {'8-K events' if events else path}"):
        batch = events_as_text(target) if events else import_text(path, source=source)
    with console.status(f"writing {len(batch.frames['texts']):,} texts to {target.path}"):
        report = target.write(batch)
    _show_report(report)
    console.print(f"done in {time.perf_counter() - started:.1f}s (write {report.seconds:.1f}s)")


def _cache(target, cache: Path | None) -> Path:
    # beside the store, as the feature cache: embeddings are shared by every later run
    return cache if cache is not None else target.path.parent / ".synthpm-cache" / "embeddings"


CacheOption = Annotated[
    Path | None,
    typer.Option(help="embeddings cache folder [default: .synthpm-cache/embeddings by the store]"),
]
ConceptsOption = Annotated[
    Path | None,
    typer.Option(help="YAML of your own concepts (seed phrases), added to the built-in ones"),
]
Embedding = Annotated[EmbedConfig, options("embedder", "batch_size", "threads")]


@command(text_app, "embed")
def text_embed(
    *,
    config: Embedding,
    concepts: ConceptsOption = None,
    cache: CacheOption = None,
    store: StoreOption = None,
) -> None:
    """Embed every stored text into the cache (batched; texts embedded before are skipped)."""
    from synthpm import progress
    from synthpm.text.concepts import load_concepts
    from synthpm.text.embed import embed, make_embedder

    target = _store(store)
    texts = target.texts()
    if texts.empty:
        raise SynthpmError(f"no texts in {target.path}: run `synthpm text import` first")
    with console.status(f"loading the {config.embedder} embedder"):
        embedder = make_embedder(config, load_concepts(concepts).phrases())
    progress.enable()
    started = time.perf_counter()
    _, computed = embed(texts["text"].tolist(), embedder, _cache(target, cache))
    seconds = time.perf_counter() - started
    rate = f", {computed / seconds:,.0f} texts/s" if computed else ""
    console.print(
        f"{len(texts):,} texts, {computed:,} embedded now ({embedder.name}) "
        f"in {seconds:.1f}s{rate}; cache {_cache(target, cache) / embedder.name}"
    )


@command(text_app, "factors")
def text_factors(
    *,
    config: Annotated[FactorConfig, options("halflife", "window", "baseline", "quote_chars")],
    embedding: Embedding,
    concepts: ConceptsOption = None,
    cache: CacheOption = None,
    store: StoreOption = None,
) -> None:
    """Daily text factors per ticker (concept scores, counts, attention, a quoted post),
    point in time, written to the store: the feature panel's `text` family and the
    prompt's SOCIAL section read them."""
    from synthpm import progress
    from synthpm.text.concepts import load_concepts
    from synthpm.text.factors import factors_batch

    target = _store(store)
    progress.enable()
    batch, stats = factors_batch(
        target, config, embedding, load_concepts(concepts), _cache(target, cache), console.print
    )
    with console.status(f"writing {stats['factor_rows']:,} factor rows to {target.path}"):
        target.write(batch)
    console.print(
        f"{stats['tickers']} tickers: {stats['factor_rows']:,} factor values, "
        f"{stats['quote_rows']:,} quoted days from {stats['texts']:,} texts "
        f"(embedded now {stats['embedded_now']:,} in {stats['embed_seconds']:.1f}s, "
        f"factors {stats['factor_seconds']:.1f}s)"
    )
