"""A grammar for answers whose text can cite only what its prompt states.

The faithfulness check (`synthpm.dataset.faithfulness`) fails an answer that cites a number,
date or other digit-bearing word, a ticker or acronym in capitals, or an event name its
prompt does not state. A small model copies numbers badly (it writes "+8.3%" for the
prompt's "+8.4%") and writes the tickers it saw in training into another name's answer, so
the decoder does not leave this to the model: in full mode each prompt gets its own grammar,
in which the answer's strings can hold

- digits only inside the prompt's own digit-bearing chunks (`+8.4%`, `$45.45`, `2018-06-01`,
  `52-week`, `6/10`), copied whole;
- a word in capitals (2+ characters, the check's tickers and acronyms: `AAPL`, `RSI`) only
  as one of the prompt's own, or BUY/SELL/SKIP, copied whole;
- a snake_case word (`new_debt`, `up_a_lot`) only as one of the prompt's own, copied whole;
- a one-word event name (`results`, `debt`, in any case) only if the prompt backs it
  (`unbacked_words`).

The model still chooses which facts to cite and what to say about them; it cannot misquote
one or borrow another stock's. Every answer of the training data passes this grammar
(checked on the demo dataset), so it forbids nothing the model learned.

A string is chunks joined by single separators (space, `(`, `[`). A chunk is either free text
(no digits, no separators) or a prompt literal followed by nothing, a `.`, or one of
`,;:)]!?` and at most two more punctuation marks (`0.27),`): so a literal never touches a
letter, digit, `%`, `-` or `.` that would make it another word (`+8.4%0`, `8.4%x`,
`0.27:x`, `-8.4%` from `8.4%`).

Free text is words and the marks between them, with no `_`. A word is parts of letters
joined by `-` (`de-risk`), each part a small letter or a capital then small letters
(`Apple`), so no word in capitals can form there (the check's tokens join letters, digits
and `_` through `.` and `-`, and a capital is always followed by a small letter). A word of
one part whose name the prompt does not back is left out by spelling the complement of those
names (a trie: at each node, stop if it is not a name, take a letter off the names'
branches, or follow a branch). Two ways to cite an event name get through, since neither is
in any training answer and the grammar to close them would cost more to compile than it
saves: a hyphened one (`new-debt` for `new_debt`) and a spaced one (`new debt`); `lm eval`
counts whatever does (`faithfulness_failures`).

Lengths: the schema's string patterns (`[...]{0,N}`) become unbounded `cite_chunk` runs, and
the decoder closes a string once it reaches N characters (`SignalDecoder`): a string
overruns N by at most the token that crossed it and the literal it was writing. Bounded
repetitions in the grammar would state the limit exactly, but they make xgrammar's compile
and token masks much costlier with the default tokenizer's long tokens
(benchmarks/results/design_choices.md).
"""

from __future__ import annotations

import json
import re
import string

from synthpm.dataset.faithfulness import EVENT_NAMES, EXEMPT, Evidence, without_quotes

SEPARATORS = " (["
LITERAL_END = ",;:)]!?"
MAX_LITERAL = 32  # longer prompt chunks cannot be cited (the longest event name has 24)
_PRINTABLE = [chr(c) for c in range(32, 127) if chr(c) not in '"\\']  # JSON-safe, no escapes
_SNAKE = re.compile(r"(?<![\w.\-])[A-Za-z]+(?:_[A-Za-z]+)+(?![\w\-]|\.\w)")
_LOWER = frozenset(string.ascii_lowercase)
_WORD_NAMES = frozenset(name for name in EVENT_NAMES if "_" not in name)
_PATTERN_RULE = re.compile(r'^(\w+) ::= Regex\("\^\[[^"]*\]\{0,(\d+)\}\$".*\)$', re.M)


def literals(prompt: str, evidence: Evidence | None = None) -> list[str]:
    """What an answer may copy whole from the prompt: its digit-bearing chunks (split at
    whitespace and the separators, trimmed of trailing punctuation), its words in capitals
    (the check's tickers and acronyms) and its snake_case words (event names, forecast
    classes), with BUY, SELL and SKIP."""
    found = set(EXEMPT)
    text = without_quotes(prompt)  # a post's numbers and names back nothing
    for chunk in re.split(r"[\s([]+", text):
        chunk = chunk.rstrip(LITERAL_END + ".")
        if any(c.isdigit() for c in chunk) and all(c in _PRINTABLE for c in chunk):
            found.add(chunk)
    facts = (evidence or Evidence(prompt)).facts
    found.update(key for key in facts if key.isupper() and not any(map(str.isdigit, key)))
    found.update(_SNAKE.findall(text))  # `up_a_lot`, `new_debt`
    return sorted(key for key in found if len(key) <= MAX_LITERAL)


def unbacked_words(prompt: str, evidence: Evidence | None = None) -> list[str]:
    """The one-word event names (`results`, `debt`) the prompt does not back: words free
    text cannot write."""
    return sorted(_WORD_NAMES - (evidence or Evidence(prompt)).facts)


def _chars(chars) -> str:
    """An EBNF character class."""
    return "[" + "".join("\\" + c if c in "]\\^-[" else c for c in chars) + "]"


def _word_rules(names: list[str]) -> list[str]:
    """`cite_word`: parts of letters (a capital only first, then small ones) joined by `-`;
    a word of one part is none of `names` in any case: the complement of their trie."""
    children: dict[str, set[str]] = {}
    for name in names:
        for i in range(len(name)):
            children.setdefault(name[:i], set()).add(name[i])
    ids = {prefix: f"cite_w{i}" for i, prefix in enumerate(sorted(children))}

    def node(prefix: str) -> str:
        return ids.get(prefix, "cite_more")  # a whole name: only a longer word goes on

    rules = [
        'cite_word ::= cite_single | cite_part ("-" cite_part)+',
        "cite_part ::= ([a-z] | [A-Z] [a-z]) [a-z]*",
        "cite_more ::= [a-z]+",
    ]
    for prefix, nexts in sorted(children.items()):
        off = _chars(sorted(_LOWER - nexts))
        alts = [f'"{c}" {node(prefix + c)}' for c in sorted(nexts)]
        if not prefix:  # the first letter: small, or a capital with small letters after
            alts += [f'"{c.upper()}" {node(c)}_cap' for c in sorted(nexts)]
            alts += [f"{off} [a-z]*", f"{off.upper()} [a-z]+"]
            rules.append("cite_single ::= " + " | ".join(alts))
            continue
        alts.append(f"{off} [a-z]*")
        if len(prefix) == 1:  # after its capital: a small letter, then as after the small one
            rules.append(f"{node(prefix)}_cap ::= " + " | ".join(alts))
        if prefix not in names:
            alts.append('""')
        rules.append(f"{node(prefix)} ::= " + " | ".join(alts))
    if not names:
        rules.append("cite_single ::= cite_part")
    return rules


def cited_grammar(schema_ebnf: str, prompt: str) -> str:
    """`schema_ebnf` (xgrammar's EBNF of the JSON schema) with each string pattern rule
    replaced by text that cites only what `prompt` states."""
    evidence = Evidence(prompt)  # read once for both
    lits = literals(prompt, evidence)
    free = [c for c in _PRINTABLE if not c.isdigit() and c not in SEPARATORS]
    gap = [c for c in free if not (c.isalpha() or c == "_")]  # no `_`: snake_case is a literal
    rules = [
        # words and the marks between them; between two words, not a lone `-` (it joins them)
        "cite_free ::= cite_gap? (cite_word (cite_mid cite_word)* cite_gap?)?",
        f"cite_gap ::= {_chars(gap)}+",
        f"cite_mid ::= {_chars(c for c in gap if c != '-')} | {_chars(gap)} {_chars(gap)}+",
        *_word_rules(unbacked_words(prompt, evidence)),
        f"cite_sep ::= {_chars(SEPARATORS)}",
        "cite_lit ::= " + " | ".join(json.dumps(x) for x in lits),
        f'cite_end ::= "." | {_chars(LITERAL_END)} {_chars(LITERAL_END + ".")}{{0,2}}',
        "cite_chunk ::= cite_free | cite_lit | cite_lit cite_end",
    ]
    body, replaced = _PATTERN_RULE.subn(r"\1 ::= cite_chunk (cite_sep cite_chunk)*", schema_ebnf)
    if not replaced:
        raise ValueError("no string pattern rule in the schema grammar")
    return body + "\n" + "\n".join(rules)
