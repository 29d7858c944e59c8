"""Property-based fuzzing of what reads a model's output (issue 23): the signal parser and
the faithfulness checker. A model may write anything; the parser returns a valid `Signal` or
raises a `DecodeError` naming the problem, and the checker answers for any text.

`SYNTHPM_FUZZ_EXAMPLES` sets the cases (50 by default; `make fuzz` runs 1,000).
"""

from __future__ import annotations

import json
import os

from hypothesis import event, given, settings
from hypothesis import strategies as st
from test_faithfulness import EVIDENCE, PROMPT

from synthpm.dataset.faithfulness import check_faithfulness
from synthpm.lm.decode import DecodeError, parse_signal
from synthpm.signals import Signal

EXAMPLES = int(os.environ.get("SYNTHPM_FUZZ_EXAMPLES", "50"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
VALID = Signal(
    decision="BUY",
    conviction=0.62,
    hold_duration_days=21,
    reasoning="RSI 71; 1m forecast up_a_lot (conf 0.42).",
    risk_factors=["VIX 15.2"],
    catalysts=["results"],
    exit_triggers=["price below $500"],
).to_json()
ODD_VALUES = ["null", "-1", "1.5", "1e308", "NaN", '"BUY"', '"HOLD"', "[]", "{}", "true", '""',
              "366", "0", '"0.5"', "\"\\ud800\""]  # fmt: skip


@st.composite
def model_output(draw) -> bytes:
    """A signal as a model might write it: valid, or with one defect."""
    text = VALID.encode()
    defect = draw(st.sampled_from(["none", "truncate", "delete", "insert", "value", "key",
                                   "bytes", "wrap"]))  # fmt: skip
    event(defect)
    if defect == "truncate":
        return text[: draw(st.integers(0, len(text) - 1))]
    if defect == "delete":
        start = draw(st.integers(0, len(text) - 1))
        return text[:start] + text[start + draw(st.integers(1, 10)) :]
    if defect == "insert":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.binary(min_size=1, max_size=8)) + text[at:]
    if defect == "value":
        data = json.loads(text)
        key = draw(st.sampled_from(list(data)))
        raw = json.dumps(data).replace(json.dumps(data[key]), draw(st.sampled_from(ODD_VALUES)), 1)
        return raw.encode()
    if defect == "key":
        data = json.loads(text)
        data.pop(draw(st.sampled_from(list(data))))
        data[draw(st.sampled_from(["extra", "decision", "Decision"]))] = "BUY"
        return json.dumps(data).encode()
    if defect == "bytes":
        return draw(st.binary(max_size=300))
    if defect == "wrap":  # a chatty model: prose around the JSON, or a list of signals
        return draw(st.sampled_from([b"Sure! ", b"[", b"```json\n"])) + text
    return text


@FUZZ
@given(text=model_output(), signal_only=st.booleans())
def test_any_model_output_parses_to_a_signal_or_a_named_decode_error(text, signal_only):
    try:
        signal = parse_signal(text, signal_only)
    except DecodeError as error:
        event("refused")
        assert "signal" in str(error) or "hold_duration_days" in str(error)
    else:
        event("parsed")
        assert signal.decision in ("BUY", "SELL", "SKIP") and 0 <= signal.conviction <= 1
        assert 1 <= signal.hold_duration_days <= 365


def test_a_valid_signal_parses_back_to_itself():
    assert parse_signal(VALID.encode()).to_json() == VALID
    assert parse_signal(VALID.encode(), signal_only=True).conviction == 0.62


PROMPT_WORDS = PROMPT.split()


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.lists(st.sampled_from(PROMPT_WORDS), max_size=40).map(" ".join),
        st.lists(
            st.sampled_from([*PROMPT_WORDS, "$9.9M", "TSLA", "2031-01-01", "+99%"]), max_size=40
        ).map(" ".join),
    ),
    shape=st.sampled_from(["str", "dict", "signal_like"]),
)
def test_the_faithfulness_checker_answers_any_text(text, shape):
    answer = {
        "str": text,
        "dict": {"reasoning": text, "risk_factors": [text, 3], "catalysts": None},
        "signal_like": {"reasoning": 7, "exit_triggers": (text,)},
    }[shape]
    result = check_faithfulness(answer, EVIDENCE)
    written = f"{text} 3 7"  # what the answer wrote: the text, and the numbers beside it
    assert all(cited in written for cited in result.unsupported)
    assert check_faithfulness(answer, PROMPT) == result  # the prompt and its Evidence agree
    event("faithful" if result.ok else "unsupported")


@FUZZ
@given(words=st.lists(st.sampled_from(PROMPT_WORDS), min_size=1, max_size=30))
def test_words_copied_from_the_prompt_are_always_faithful(words):
    assert check_faithfulness(" ".join(words), EVIDENCE).unsupported == ()
