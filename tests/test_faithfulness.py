"""The faithfulness checker: an answer cites only numbers, tickers and events its prompt states."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from synthpm.dataset.faithfulness import (
    Evidence,
    FaithfulnessResult,
    check_faithfulness,
    cited_facts,
)

PORTFOLIO = (
    "PORTFOLIO STATE: equity $1,080,000, cash $194,400 (18.0%), 12/20 positions, "
    "Information Technology 14.5% of equity (limit 40%)"
)
PROMPT = f"""COMPANY: AAPL (Information Technology)
DATE: 2012-03-16 (weekly review)
PRICE: $585.57
FORECASTS (walk-forward, out of sample; excess return vs the benchmark):
  1m: up_a_lot (conf 0.42), expected +3.2%, vol 27%, Sharpe 1.4, max drawdown -7.9%
  event odds next 21 trading days: results 62%, officer_change 8%
EVENTS (last 90 days):
  2012-01-24 results (8-K 2.02): Results of operations and financial condition
INSIDER ACTIVITY (last 90 days): 2 buys, 5 sales, net -$3.4M
  2012-02-10 COOK TIMOTHY D (CEO) sold $12.1M
TRENDS: 1w +2.1%, 1m +8.4%, 3m +22.0%; 3.1% below 52-week high; RSI 71
MARKET: index 1m +4.0%, 3m +11.2%; VIX 15.2
{PORTFOLIO}
"""
EVIDENCE = Evidence(PROMPT)

FAITHFUL = [
    "1m forecast up_a_lot (conf 0.42), expected +3.2%; price 3.1% below 52-week high; "
    "12/20 positions leave room.",
    "Results (8-K 2.02) on 2012-01-24; the CEO, COOK TIMOTHY, sold $12.1M; net -$3.4M.",
    "RSI 71 and VIX 15.2 with the index 1m +4.0%, 3m +11.2% (1w +2.1%).",
    "Information Technology is 14.5% of equity against a 40% limit; cash 18.0%.",
    "Odds: results 62%, officer_change 8%, an officer change is possible.",
    "Strong Momentum in A Big Way; the 52 weeks of 2012.",  # Title case, single letters
    "",
]
EQUIVALENT = [
    "expected +3.20%",  # redundant zeros
    "equity $1080000, cash $194,400.00",  # thousands commas
    "expected 3.2%",  # unsigned cites a + number
    "max drawdown 7.9%, down 7.9%",  # unsigned cites a - number
    "max drawdown \u22127.9%",  # unicode minus is a minus
    "vol +27%",  # + cites an unsigned number
    "12 of 20 positions, limit 40, RSI 71.0",  # a bare number cites any unit
    "net -$3.4M, or 3.4M, or $3.4M",  # $ and magnitude may be left out
    "COOK sold; buy, then SELL or SKIP; BUY.",  # the decision words are exempt
]
UNFAITHFUL = [
    ("Shares rose 15% after the results.", ("15%",)),  # a new percentage
    ("Sales hit $5.0M and 41 stores.", ("$5M", "41")),  # new numbers, canonical form
    ("expected -3.2%", ("-3.2%",)),  # sign flip: - for +
    ("max drawdown +7.9%", ("+7.9%",)),  # sign flip: + for -
    ("vol -27%", ("-27%",)),  # - for unsigned
    ("conf 42%", ("42%",)),  # 0.42 is not 42%
    ("MSFT looks weaker", ("MSFT",)),  # unknown ticker
    ("Price above the SMA; EPS beat.", ("SMA", "EPS")),  # unknown acronyms
    ("HOLD for now", ("HOLD",)),  # only BUY/SELL/SKIP are exempt
    ("bankruptcy risk", ("bankruptcy",)),  # event type not in the prompt
    ("Bankruptcy risk", ("bankruptcy",)),  # ... in any case
    ("an officer_director_change", ("officer_director_change",)),  # snake_case
    ("an officer director change", ("officer_director_change",)),  # spaced
    ("an officer-director-change", ("officer_director_change",)),  # hyphenated
    ("material agreement signed", ("material_agreement",)),
    ("new debt raised", ("new_debt",)),  # the phrase, not also the group "debt"
    ("adverse filings", ("adverse",)),  # an event group
    ("filed on 2012-01-25", ("2012-01-25",)),  # a date not in the prompt
    ("the 1d forecast", ("1d",)),  # horizon tokens
    ("a 6m view, Q3 results", ("6m", "Q3")),
    ("a 10-K filing", ("10-K",)),
    ("1M shares traded", ("1M",)),  # a magnitude, not the horizon 1m
    ("MSFT, 15%, MSFT again and 15% again", ("MSFT", "15%")),  # order of appearance, deduped
]


@pytest.mark.parametrize("text", FAITHFUL + EQUIVALENT)
def test_faithful_texts_pass(text):
    assert EVIDENCE.unsupported(text) == []
    assert check_faithfulness(text, PROMPT) == FaithfulnessResult(ok=True, unsupported=())


@pytest.mark.parametrize(("text", "expected"), UNFAITHFUL)
def test_each_unfaithful_citation_is_named(text, expected):
    assert tuple(EVIDENCE.unsupported(text)) == expected
    assert check_faithfulness(text, PROMPT) == FaithfulnessResult(ok=False, unsupported=expected)


def test_cited_facts_are_canonical():
    text = "AAPL rose +3.20% to $1,080,000 on 2012-01-24 (8-K), a 52-week high; BUY the results"
    assert cited_facts(text) == {
        "AAPL",
        "+3.2%",
        "$1080000",
        "2012-01-24",
        "8-k",
        "52-week",
        "results",
    }
    assert cited_facts("") == frozenset()
    assert cited_facts("strong momentum, a good entry") == frozenset()


def test_a_prompt_states_spaced_event_names_and_the_names_inside_them():
    evidence = Evidence("EVENTS: officer director change on 2012-01-02; new_debt 5%")
    text = "officer_director_change, an Officer Director Change; new debt, debt"
    assert evidence.unsupported(text) == []
    assert evidence.unsupported("officer change") == ["officer_change"]


@dataclass
class Answer:
    reasoning: str
    risk_factors: list[str] = field(default_factory=list)
    catalysts: list[str] = field(default_factory=list)
    exit_triggers: list[str] = field(default_factory=list)
    conviction: float = 0.73  # not in the prompt, and not checked
    hold_duration_days: int = 45


def test_check_faithfulness_reads_the_four_text_fields_of_a_dict_or_an_object():
    fields = {
        "reasoning": "1m expected +3.2%",
        "risk_factors": ["MSFT competition"],
        "catalysts": ["results odds 62%", "a 6m rerating"],
        "exit_triggers": ["drawdown beyond -9%"],
    }
    expected = FaithfulnessResult(ok=False, unsupported=("MSFT", "6m", "-9%"))
    assert check_faithfulness({"decision": "BUY", "conviction": 0.73, **fields}, PROMPT) == expected
    assert check_faithfulness(Answer(**fields), EVIDENCE) == expected
    assert check_faithfulness(Answer("1m expected +3.2%"), EVIDENCE).ok
    assert check_faithfulness({"reasoning": "fine"}, PROMPT).ok  # missing fields are fine


@pytest.mark.parametrize("name", ["reasoning", "risk_factors", "catalysts", "exit_triggers"])
def test_every_text_field_is_checked(name):
    answer = {"reasoning": "", name: "MSFT" if name == "reasoning" else ["MSFT"]}
    assert check_faithfulness(answer, EVIDENCE).unsupported == ("MSFT",)


def test_extend_adds_prompt_text_and_leaves_the_base_alone():
    base = Evidence(PROMPT.replace(PORTFOLIO, ""))
    text = "cash $194,400 with 12/20 positions"
    assert base.unsupported(text) == ["$194400", "12", "20"]
    extended = base.extend(PORTFOLIO)
    assert extended.unsupported(text) == []
    assert extended.unsupported("expected +3.2%") == []  # the base facts are kept
    assert base.unsupported(text) == ["$194400", "12", "20"]
    assert extended.facts == EVIDENCE.facts
