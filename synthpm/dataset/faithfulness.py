"""Faithfulness: a signal's text may cite only facts that its prompt states.

Token based, so it survives changes to the prompt's layout: `Evidence` reads a prompt once
into a set of citation keys, and a text is faithful when every citation it makes has its key
there. It runs on every generated example (millions), so both sides split on whitespace (C
speed) and classify each distinct chunk once, cached; see the timings in the tests' notes.

What cites a fact, and what backs it:

- Numbers: optional sign (`+`, `-`, `−`), optional `$`, digits with optional thousands
  commas and decimals, then optional `%` or magnitude `K`/`M`/`B`/`bn` (`bn` reads `B`).
  Canonical form drops commas and redundant zeros, so "1,080,000" == "1080000" and
  "3.20%" == "3.2%"; magnitudes are not expanded ("$3.4M" != "$3,400,000"). A citation may
  state less than the prompt, never more or otherwise. Sign: an explicit `-` needs `-` in
  the prompt, an explicit `+` needs `+` or no sign ("+3.2%" for "-3.2%" is a sign flip), an
  unsigned number matches any sign ("down 4.2%" paraphrases "-4.2%"). Unit: a cited `$`,
  `%` or magnitude must be the prompt's ("40%" needs "40%"; "0.42" is not "42%"), a bare
  number matches any unit ("RSI 71", "12 positions"). `/` separates numbers: "12/20" is
  the numbers 12 and 20.
- Digit-bearing words (digits glued to a letter, or to `-`/`.` and more): "8-K", "52-week",
  "1m", "Q3", dates like "2012-01-24" must occur in the prompt as tokens, ignoring case: a
  horizon or a date is a fact ("3m" is not "1m"). The number pieces of such prompt words
  also back bare numbers ("52 weeks", "in 2012"). "1M" is a number (a million), not "1m".
- All-caps tokens of 2+ characters (with `.`/`-` inside, e.g. BRK.B, BF-B): tickers and
  acronyms (VIX, RSI, CEO) must occur in the prompt in the same case; Title-case words are
  ordinary words. BUY, SELL and SKIP are exempt: they are the answer's own vocabulary (the
  decision), not facts taken from the prompt.
- Event types (`EVENT_TYPES`) and groups (`EVENT_GROUPS`) as whole words in any case,
  snake_case, hyphenated or as consecutive words ("officer director change") must occur in
  the prompt in one of those forms (spaced ones with single spaces). A multi-word name in
  the prompt also backs its words that are names ("new_debt" backs "debt"). Reported in
  snake_case.
- Everything else (single letters, ordinary words, punctuation) cites nothing.

Quoted text: a prompt's spans between « and » (a post quoted verbatim in SOCIAL) back no
fact at all, since a post's numbers and tickers are someone's words, not the context's. An
answer may quote them: each «span» it writes must occur in one of the prompt's quotes (same
words, whitespace aside), and nothing inside it is read as a citation.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

from synthpm.data.taxonomy import EVENT_TYPES
from synthpm.features.filings import EVENT_GROUPS

EXEMPT = frozenset({"BUY", "SELL", "SKIP"})
TEXT_FIELDS = ("reasoning", "risk_factors", "catalysts", "exit_triggers")
EVENT_NAMES = frozenset(EVENT_TYPES) | frozenset(EVENT_GROUPS)
_MULTI = {name: name.split("_") for name in EVENT_NAMES if "_" in name}
_PHRASE_WORDS = frozenset(word for parts in _MULTI.values() for word in parts)
# A prompt's facts carry "\0word" for each word of a spaced name it has (no citation starts
# so); the name counts when all its words occur and the prompt has them in order.
_PHRASE_MARKS = frozenset("\0" + word for word in _PHRASE_WORDS)
_SPACED = [
    (name, frozenset("\0" + p for p in parts), " ".join(parts)) for name, parts in _MULTI.items()
]

# A number: sign, $, digits with thousands commas, decimals, % or magnitude. Glued to a
# letter, or to -/. and a letter or digit, it is part of a word instead ("52-week", "1m").
_NUMBER = r"([+\-\u2212])?(\$)?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(%|bn|[KMB])?"
_TOKEN = re.compile(
    rf"(?<![\w.]){_NUMBER}(?![.\-]?\w)|[A-Za-z0-9_]+(?:[.\-][A-Za-z0-9_]+)*", re.ASCII
)
_NUMBER_CHUNK = re.compile(rf"[(\[]?{_NUMBER}[)\].,;:!?]*", re.ASCII).fullmatch  # fast path
_PLAIN_NUMBER = re.compile(r"(\d+)(?:\.(\d+))?", re.ASCII).fullmatch
_DIGIT = re.compile(r"\d").search
_QUOTE = re.compile(r"«([^«»]*)»")
_UNITS = {None: "", "bn": "B"}


def _decimal(whole: str, frac: str | None) -> str:
    """Canonical decimal: no commas, no redundant zeros ("1,080,000.50" -> "1080000.5")."""
    whole = whole.replace(",", "").lstrip("0") or "0"
    frac = (frac or "").rstrip("0")
    return f"{whole}.{frac}" if frac else whole


class _Number(NamedTuple):
    """A number's canonical parts; joined, in this order, they are its citation key."""

    sign: str  # "-", "+" or ""
    dollar: str  # "$" or ""
    value: str  # canonical decimal (`_decimal`)
    unit: str  # "%", "K", "M", "B" or ""


def _number(match: re.Match[str]) -> _Number:
    """The canonical parts of a number matched by `_NUMBER` (its five groups)."""
    sign, dollar, whole, frac, unit = match.groups()
    sign = "-" if sign == "\u2212" else (sign or "")
    return _Number(sign, dollar or "", _decimal(whole or "", frac), _UNITS.get(unit, unit or ""))


def _number_backs(match: re.Match[str]) -> list[str]:
    """A prompt number backs itself with less stated: sign, $ or unit left out."""
    sign, dollar, value, unit = _number(match)
    forms = {value, dollar + value, value + unit, dollar + value + unit}
    return [*forms, *(("-" if sign == "-" else "+") + form for form in forms)]


def _event_backs(name: str) -> set[str]:
    return {name, *(p for p in name.split("_") if p in EVENT_NAMES)}


class _Cite(NamedTuple):
    """A citation: the key a prompt must back, and the form a report shows."""

    key: str
    shown: str


def _word_cite(token: str) -> _Cite | None:
    """(key, readable form) of the citation a non-number token makes, or None."""
    low = token.lower().replace("-", "_")
    if low in EVENT_NAMES:
        return _Cite(low, low)
    if _DIGIT(token):
        return _Cite(token.lower(), token)
    if len(token) >= 2 and token.isupper() and token not in EXEMPT:
        return _Cite(token, token)
    return None


def _phrase_word(matches: list[re.Match[str]]) -> str | None:
    word = matches[0].group().lower() if len(matches) == 1 else None
    return word if word in _PHRASE_WORDS else None


class _ChunkCites(NamedTuple):
    """What a text chunk cites, and its word if that is one of a spaced event name's."""

    cites: tuple[_Cite, ...]
    phrase_word: str | None


# Chunk caches: what a text chunk cites (and its word, if one of a spaced event name), what a
# prompt chunk backs. Chunks repeat across examples; numbers make them unbounded, so reset.
_CACHE_LIMIT = 50_000
_cites: dict[str, _ChunkCites] = {}
_backs: dict[str, tuple[str, ...]] = {}


def _cite_chunk(chunk: str) -> _ChunkCites:
    if len(_cites) >= _CACHE_LIMIT:
        _cites.clear()
    cites: list[_Cite] = []
    matches = list(_TOKEN.finditer(chunk))
    for m in matches:
        if m[3] is not None:
            key = "".join(_number(m))
            cites.append(_Cite(key, key))
        elif cited := _word_cite(m.group()):
            cites.append(cited)
    info = _cites[chunk] = _ChunkCites(tuple(cites), _phrase_word(matches))
    return info


def _back_chunk(chunk: str) -> tuple[str, ...]:
    if m := _NUMBER_CHUNK(chunk):
        backs = _backs[chunk] = tuple(_number_backs(m))
        return backs
    keys: set[str] = set()
    matches = list(_TOKEN.finditer(chunk))
    for m in matches:
        if m[3] is not None:
            keys.update(_number_backs(m))
        elif cited := _word_cite(token := m.group()):
            keys.update(_event_backs(cited.key) if cited.key in EVENT_NAMES else [cited.key])
            pieces = map(_PLAIN_NUMBER, token.split("-"))  # "52-week" backs "52 weeks"
            keys.update(_decimal(*n.groups()) for n in pieces if n)
    word = _phrase_word(matches)
    backs = _backs[chunk] = (*keys, "\0" + word) if word else tuple(keys)
    return backs


def _citations(text: str) -> dict[str, str]:
    """key -> readable form of each citation in text, in order of first appearance."""
    out: dict[str, str] = {}
    prev2 = prev = None  # the run of event-name words just before, for "new debt"
    for chunk in text.split():
        cites, word = _cites.get(chunk) or _cite_chunk(chunk)
        if word is None:
            prev2 = prev = None
        else:
            for name in (f"{prev2}_{prev}_{word}", f"{prev}_{word}") if prev else ():
                if name in _MULTI:  # the phrase, not its last word, is the citation
                    cites = (_Cite(name, name),)
                    break
            prev2, prev = prev, word
        for key, shown in cites:
            if key not in out:
                out[key] = shown
    return out


def cited_facts(text: str) -> frozenset[str]:
    """Canonical citation tokens found in text (numbers, tickers/all-caps tokens, event types,
    digit-bearing words)."""
    return frozenset(_citations(text))


def without_quotes(prompt: str) -> str:
    """The prompt less its quoted posts: the text whose facts an answer may cite."""
    return _QUOTE.sub(" ", prompt) if "«" in prompt else prompt


class Evidence:
    """The facts a prompt makes available, extracted once, checked against many texts."""

    __slots__ = ("facts", "quotes")

    def __init__(self, prompt: str) -> None:
        self.quotes: tuple[str, ...] = ()
        if "«" in prompt:
            self.quotes = tuple(" ".join(q.split()) for q in _QUOTE.findall(prompt))
            prompt = without_quotes(prompt)
        chunks = set(prompt.split())
        missing = chunks.difference(_backs)  # C loops on the hot path; Python only on misses
        if len(_backs) + len(missing) >= _CACHE_LIMIT:
            _backs.clear()
            missing = chunks
        for chunk in missing:
            _back_chunk(chunk)
        facts = set().union(*map(_backs.__getitem__, chunks))
        if not facts.isdisjoint(_PHRASE_MARKS):
            low = prompt.lower()
            for name, marks, spaced in _SPACED:
                if marks <= facts and spaced in low and re.search(rf"\b{spaced}\b", low):
                    facts |= _event_backs(name)
        self.facts: frozenset[str] = frozenset(facts)

    def unsupported(self, text: str) -> list[str]:
        """Citations in text the prompt does not back, in order of appearance, deduplicated."""
        facts, misquoted = self.facts, []
        if "«" in text:
            for span in _QUOTE.findall(text):
                quoted = " ".join(span.split()).removesuffix("…").strip()
                if quoted and not any(quoted in q for q in self.quotes):
                    misquoted.append(f"«{span}»")
            text = _QUOTE.sub(" | ", text)
        return misquoted + [shown for key, shown in _citations(text).items() if key not in facts]

    def extend(self, more_prompt_text: str) -> Evidence:
        """A new Evidence with more prompt text (a scenario's portfolio section) added."""
        more = Evidence(more_prompt_text)
        new = Evidence.__new__(Evidence)
        new.facts, new.quotes = self.facts | more.facts, self.quotes + more.quotes
        return new


@dataclass(frozen=True)
class FaithfulnessResult:
    ok: bool
    unsupported: tuple[str, ...]


def _texts(answer: object) -> Iterable[str]:
    if isinstance(answer, str):
        yield answer
        return
    for name in TEXT_FIELDS:
        value = answer.get(name) if isinstance(answer, Mapping) else getattr(answer, name, None)
        if isinstance(value, list | tuple | set):
            yield from map(str, value)
        elif value is not None:  # a model may write a number where text belongs: check it too
            yield str(value)


def check_faithfulness(answer: object, prompt: str | Evidence) -> FaithfulnessResult:
    """Check the text of an answer (a str, or a mapping or object with any of reasoning,
    risk_factors, catalysts, exit_triggers; decision, conviction and hold_duration_days are
    not checked) against a prompt or its `Evidence`."""
    evidence = prompt if isinstance(prompt, Evidence) else Evidence(prompt)
    # One pass over the joined fields; the lone "|" chunk keeps a phrase from spanning two.
    missing = evidence.unsupported(" | ".join(_texts(answer)))
    return FaithfulnessResult(ok=not missing, unsupported=tuple(missing))
