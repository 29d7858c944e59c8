"""A grammar for answers whose text can cite only the numbers its prompt states.

The faithfulness check (`synthpm.dataset.faithfulness`) fails an answer that cites a number,
date or other digit-bearing word its prompt does not state. A small model copies numbers
badly (it writes "+8.3%" for the prompt's "+8.4%"), so the decoder does not leave this to
the model: in full mode each prompt gets its own grammar, in which the answer's strings can
contain digits only inside the prompt's own digit-bearing chunks (`+8.4%`, `$45.45`,
`2018-06-01`, `52-week`, `6/10`), copied whole. The model still chooses which facts to cite
and what to say about them; it cannot misquote one. Every answer of the training data
passes this grammar (checked on the demo dataset), so it forbids nothing the model learned.

A string is chunks joined by single separators (space, `(`, `[`). A chunk is either free text
(no digits, no separators) or a prompt literal followed by nothing, a `.`, or one of
`,;:)]!?` and at most two more punctuation marks (`0.27),`): so a literal never touches a
letter, digit, `%`, `-` or `.` that would make it another word (`+8.4%0`, `8.4%x`,
`0.27:x`, `-8.4%` from `8.4%`).

Lengths: the schema's string patterns (`[...]{0,N}`) become unbounded `cite_chunk` runs, and
the decoder closes a string once it reaches N characters (`SignalDecoder`): a string
overruns N by at most the token that crossed it and the literal it was writing. Bounded
repetitions in the grammar would state the limit exactly, but they make xgrammar's compile
and token masks much costlier with the default tokenizer's long tokens
(benchmarks/results/design_choices.md).

Not constrained: tickers and acronyms in capitals and event names, which the check also
verifies; `lm eval` measures the faithfulness rate that results.
"""

from __future__ import annotations

import json
import re

from synthpm.dataset.faithfulness import without_quotes

SEPARATORS = " (["
LITERAL_END = ",;:)]!?"
MAX_LITERAL = 16  # longer prompt chunks cannot be cited (none in our prompts)
_PRINTABLE = [chr(c) for c in range(32, 127) if chr(c) not in '"\\']  # JSON-safe, no escapes
_PATTERN_RULE = re.compile(r'^(\w+) ::= Regex\("\^\[[^"]*\]\{0,(\d+)\}\$".*\)$', re.M)


def literals(prompt: str) -> list[str]:
    """The prompt's digit-bearing chunks (split at whitespace and the separators), trimmed
    of trailing punctuation."""
    found = set()
    for chunk in re.split(r"[\s([]+", without_quotes(prompt)):  # a post's numbers back nothing
        chunk = chunk.rstrip(LITERAL_END + ".")
        if (
            len(chunk) <= MAX_LITERAL
            and any(c.isdigit() for c in chunk)
            and all(c in _PRINTABLE for c in chunk)
        ):
            found.add(chunk)
    return sorted(found)


def _chars(chars) -> str:
    """An EBNF character class."""
    return "[" + "".join("\\" + c if c in "]\\^-[" else c for c in chars) + "]"


def cited_grammar(schema_ebnf: str, prompt: str) -> str:
    """`schema_ebnf` (xgrammar's EBNF of the JSON schema) with each string pattern rule
    replaced by text that cites only `prompt`'s literals."""
    lits = literals(prompt)
    free = [c for c in _PRINTABLE if not c.isdigit() and c not in SEPARATORS]
    rules = [
        f"cite_free ::= {_chars(free)}*",
        f"cite_sep ::= {_chars(SEPARATORS)}",
    ]
    if lits:
        rules += [
            "cite_lit ::= " + " | ".join(json.dumps(x) for x in lits),
            f'cite_end ::= "." | {_chars(LITERAL_END)} {_chars(LITERAL_END + ".")}{{0,2}}',
            "cite_chunk ::= cite_free | cite_lit | cite_lit cite_end",
        ]
    else:
        rules.append("cite_chunk ::= cite_free")

    body, replaced = _PATTERN_RULE.subn(r"\1 ::= cite_chunk (cite_sep cite_chunk)*", schema_ebnf)
    if not replaced:
        raise ValueError("no string pattern rule in the schema grammar")
    return body + "\n" + "\n".join(rules)
