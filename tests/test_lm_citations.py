"""The cited-text grammar: an answer's strings can hold digits, words in capitals and event
names only as the prompt states them, and every training answer still fits it."""

from __future__ import annotations

import json
import random

import pytest
import xgrammar as xgr
from conftest import tiny_dataset
from lm_corpus import SYSTEM, answer, user

from synthpm.lm.citations import cited_grammar, literals, unbacked_words
from synthpm.lm.decode import signal_schema
from synthpm.lm.tokenizer import ChatTokenizer
from synthpm.lm.train import sample_split
from synthpm.signals import signal_json

PROMPT = (
    "COMPANY: AAPL (Information Technology), weekly review\nPRICE: $45.45\n"
    "TRENDS: 1w +1.1%, 3m +8.4%; 0.0% below 52-week high, 8.4% above 50-day SMA; RSI 67\n"
    "PORTFOLIO: 6/10 positions (conf 0.26), DATE: 2018-06-01.\n"
    "EVENTS: results 12d ago; new_debt 40d ago.\nFORECASTS: 1m up_a_lot (conf 0.40)"
)


@pytest.fixture(scope="module")
def compiler() -> xgr.GrammarCompiler:
    rng = random.Random(0)
    texts = [SYSTEM, PROMPT] + [t for _ in range(200) for t in (user(rng), answer(rng))]
    tok = ChatTokenizer.train(texts, vocab_size=512)
    info = xgr.TokenizerInfo.from_huggingface(tok.to_huggingface(), vocab_size=tok.vocab_size)
    return xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)


def schema_ebnf() -> str:
    schema = json.dumps(signal_schema(True, 300, 80, 3))
    grammar = xgr.Grammar.from_json_schema(
        schema, any_whitespace=False, separators=(",", ":"), strict_mode=True
    )
    return str(grammar)


def accepts(compiler, prompt: str, reasoning: str, items: tuple[str, ...] = ()) -> bool:
    grammar = compiler.compile_grammar(cited_grammar(schema_ebnf(), prompt))
    matcher = xgr.GrammarMatcher(grammar, terminate_without_stop_token=True)
    text = signal_json("BUY", 0.8, 30, reasoning, list(items), [], [])
    return matcher.accept_string(text) and matcher.is_terminated()


def test_literals_are_the_prompts_digit_bearing_chunks_and_words_in_capitals():
    assert literals(PROMPT) == sorted(
        [
            *("$45.45", "+1.1%", "+8.4%", "0.0%", "52-week", "8.4%", "50-day", "67", "6/10"),
            *("0.26", "2018-06-01", "1w", "3m", "12d", "40d", "1m", "0.40"),
            *("AAPL", "COMPANY", "PRICE", "TRENDS", "SMA", "RSI", "PORTFOLIO", "DATE", "EVENTS"),
            *("FORECASTS", "BUY", "SELL", "SKIP", "new_debt", "up_a_lot"),
        ]
    )
    assert {"results", "debt"}.isdisjoint(unbacked_words(PROMPT))
    assert {"impairment", "bankruptcy", "adverse"} <= set(unbacked_words(PROMPT))
    assert all("_" not in name for name in unbacked_words(PROMPT))  # snake_case: literals


@pytest.mark.parametrize(
    "reasoning",
    [
        "3m +8.4%, 8.4% above the 50-day SMA (RSI 67); 6/10 positions.",
        "Price $45.45 on 2018-06-01 [conf 0.26]: 0.0% below the 52-week high!",
        "No numbers at all, just words & punctuation - fine.",
        "(conf 0.26), then 8.4%; RSI 67).",
        "AAPL: a BUY. Results and new-debt (new_debt) news; Debt is fine, resultsish.",
        "1m up_a_lot (conf 0.40), de-risk.",
        "Impairments, bankrupt, adversely: words that only begin like a name.",
        "",
    ],
)
def test_citing_the_prompts_chunks_is_allowed(compiler, reasoning):
    assert accepts(compiler, PROMPT, reasoning, items=("3m +8.4%",))


@pytest.mark.parametrize(
    "reasoning",
    [
        "3m +8.3%",  # a misquote
        "up 8%",  # a number the prompt does not state
        "3m -8.4%",  # a sign flip: "-" cannot precede a literal
        "8.4%x",  # glued to a letter: another token
        "+8.4%0",  # glued to a digit
        "RSI 67%",  # a unit the prompt does not give it
        "RSI 67.5",  # more digits after a literal
        "in 1w1m",  # two literals glued
        "3m+8.4%",  # a literal may only follow a space or a bracket
        "RSI 67:high",  # glued to a word through punctuation
        "as MSFT did",  # a ticker the prompt does not state
        "AAPLE",  # a literal glued to a capital
        "the USA",  # capitals of any word
        "A-B",  # joined capitals are one token: "A-B"
        "x_A",  # a capital after `_`
        "an impairment",  # an event the prompt does not state
        "IMPAIRMENT",  # in any case
        "Bankruptcy.",
        "officer_director_change",  # snake_case only as the prompt's own
        "up_a_little",
        "adverse_x and adverse",  # the second one
    ],
)
def test_anything_else_with_digits_is_not(compiler, reasoning):
    assert not accepts(compiler, PROMPT, reasoning)
    assert not accepts(compiler, PROMPT, "fine", items=(reasoning,))


def test_a_prompt_without_numbers_allows_no_digits(compiler):
    assert accepts(compiler, "COMPANY: KO", "flat, no data")
    assert not accepts(compiler, "COMPANY: KO", "up 1")


def test_every_training_answer_fits(compiler, tmp_path):
    tiny_dataset(tmp_path)
    # drawn from every date, decisions alike: filings, scenarios and forecast classes vary
    train = sample_split(tmp_path, "train", 250, columns=("user", "assistant", "decision"))
    schema = schema_ebnf()
    for prompt, text in zip(train["user"], train["assistant"], strict=True):
        grammar = compiler.compile_grammar(cited_grammar(schema, prompt))
        matcher = xgr.GrammarMatcher(grammar, terminate_without_stop_token=True)
        assert matcher.accept_string(text) and matcher.is_terminated(), text
