"""The tokenizer: a byte-level BPE trained on our own corpus, with chat control tokens.

Why each choice (figures measured on 4,000 conversations of `make demo`'s dataset and 500
of its test split; vocab_size 4096):

- Byte-level BPE (`ByteLevel`, no normalizer): any text round-trips exactly
  (`decode(encode(x)) == x`, unicode included) and there is no unknown token.
- Pre-tokenization isolates numbers and nothing else: a number (`+8.4%`, `$1,050,000`,
  `0.27`, `2018`) is one piece, and the text between two numbers is another, spaces and
  punctuation included. BPE merges only inside a piece, so
  - a number tokenizes the same wherever it stands (never merged with a neighbouring space
    or comma), and the frequent ones become one token each: copying `-9.1%` from the prompt
    into the answer is copying one token;
  - the fixed wording of the prompts and answers merges across words: `), expected `,
    `m max drawdown `, and `{"decision":"SKIP","conviction":` are single tokens.
  A prompt is 165 tokens instead of 581 with the GPT-2 word regex and one digit per token
  (the earlier tokenizer), an answer 33 instead of 122, and the system prompt, counted as
  often as the conversations that carry it, 5 instead of 156. The model reads and writes
  ~3.5x fewer tokens, which is most of what decoding costs on a CPU. All 101 convictions
  `0.00`..`1.00` are single tokens at this vocabulary (53 at 2,048), which the decoder's
  expected conviction reads (`decode`).
- Each decision's opening (`{"decision":"SKIP","conviction":`, `OPENINGS`) is one token
  at any vocabulary size (an added token, not left to the merges: a small vocabulary over a
  corpus with few SELLs spells SELL's in 8): the decoder reads the decisions' probabilities
  in one step and steers the decision there (`decode`).
- A decoder must respect the pieces: where the grammar forces text, it leaves the last piece
  to the model (`decode`), since training merged that piece with what followed.
- Control tokens are *special*: ids 0-5, never merged by BPE, skipped by `decode`. Text never
  produces them: `encode_special_tokens` is on, so a literal "<|end|>" in a prompt is spelled
  as ordinary tokens ("<", "|", "end", ...) and cannot end a turn or fake an answer. `render`
  inserts control tokens by id, the only way they enter a sequence.
- Training is deterministic: the same texts give the same tokenizer.json, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from synthpm.data.errors import SynthpmError
from synthpm.folders import atomic_file
from synthpm.signals import DECISIONS, signal_json

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<|bos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|pad|>")
FILE = "tokenizer.json"
# Each decision's answer up to its conviction, as the training answers spell it.
OPENINGS = tuple(
    (text := signal_json(d, 0.5, 7, "", [], [], []))[: text.index("0.50")] for d in DECISIONS
)
# A number: optional sign or dollar, digits with `.`/`,` groups, optional percent sign.
NUMBER = r"[+\-$]?\d+(?:[.,]\d+)*%?"


class TokenizerNotFoundError(SynthpmError, FileNotFoundError):
    """No trained tokenizer at the given folder."""


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(NUMBER), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


class Rendered(NamedTuple):
    """A conversation as token ids, and the loss mask (1 on what the model must emit)."""

    ids: list[int]
    mask: list[float]  # 0/1 here; training weighs the answer's opening (`train.opening_weights`)


class ChatTokenizer:
    """A `tokenizers.Tokenizer` plus the chat layout: system, user, assistant turns."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        missing = [t for t in SPECIAL_TOKENS if tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(f"tokenizer lacks the control tokens {missing}")
        # Not stored in tokenizer.json, so set on every construction: text cannot inject
        # control tokens (see the module docstring).
        tokenizer.encode_special_tokens = True
        self._tok = tokenizer
        self._ids: tuple[int, ...] = tuple(tokenizer.token_to_id(t) for t in SPECIAL_TOKENS)

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2
    ) -> ChatTokenizer:
        """Learn merges from `texts`: the corpus' system, user and assistant strings, each as
        often as it occurs (a system prompt once per conversation)."""
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = _pre_tokenizer()
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size - len(OPENINGS),  # the openings are added after
            min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS),  # first, so their ids are 0-5
            # All 256 bytes, seen or not, so any text encodes (no unknown token).
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        tok.add_tokens([AddedToken(o, normalized=False) for o in OPENINGS])
        return cls(tok)

    def save(self, path: str | Path) -> Path:
        folder = Path(path)
        with atomic_file(folder / FILE) as tmp:  # a kill mid-save leaves no torn file
            self._tok.save(str(tmp))
        return folder

    @classmethod
    def load(cls, path: str | Path) -> ChatTokenizer:
        file = Path(path) / FILE
        if not file.is_file():
            raise TokenizerNotFoundError(f"no trained tokenizer at {path} (expected {file})")
        return cls(Tokenizer.from_file(str(file)))

    @property
    def vocab_size(self) -> int:
        """Every id the tokenizer can emit is below this: the embedding table's size."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def backend(self) -> Tokenizer:
        return self._tok

    @property
    def bos_id(self) -> int:
        return self._ids[0]

    @property
    def system_id(self) -> int:
        return self._ids[1]

    @property
    def user_id(self) -> int:
        return self._ids[2]

    @property
    def assistant_id(self) -> int:
        return self._ids[3]

    @property
    def end_id(self) -> int:
        return self._ids[4]

    @property
    def pad_id(self) -> int:
        return self._ids[5]

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # The `_fast` variant skips offsets, which we never use; Rust spreads it over cores.
        return [e.ids for e in self._tok.encode_batch_fast(texts, add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def _layout(
        self, sys_ids: list[int], user_ids: list[int], asst_ids: list[int] | None
    ) -> Rendered:
        prompt = [self.bos_id, self.system_id, *sys_ids, self.end_id]
        prompt += [self.user_id, *user_ids, self.end_id, self.assistant_id]
        if asst_ids is None:
            return Rendered(prompt, [0] * len(prompt))
        # The loss covers what the model must emit: the answer and the end that stops it.
        return Rendered(
            prompt + asst_ids + [self.end_id], [0] * len(prompt) + [1] * (len(asst_ids) + 1)
        )

    def render(self, system: str, user: str, assistant: str | None = None) -> Rendered:
        """One conversation's ids and loss mask; without `assistant`, the generation prompt."""
        answer = None if assistant is None else self.encode(assistant)
        return self._layout(self.encode(system), self.encode(user), answer)

    def render_batch(
        self,
        systems: Sequence[str],
        users: Sequence[str],
        assistants: Sequence[str | None] | None = None,
    ) -> list[Rendered]:
        """`render` for many conversations at once: one Rust batch for all the text."""
        n = len(users)
        answers = list(assistants) if assistants is not None else [None] * n
        if not len(systems) == n == len(answers):
            raise ValueError(f"{len(systems)} systems, {n} users, {len(answers)} assistants")
        # The system prompt is nearly always the same string: encode each distinct one once.
        distinct = list(dict.fromkeys(systems))
        texts = distinct + list(users) + [a for a in answers if a is not None]
        encoded = self.encode_batch(texts)
        sys_of = dict(zip(distinct, encoded[: len(distinct)], strict=True))
        rest = iter(encoded[len(distinct) + n :])
        return [
            self._layout(sys_of[s], encoded[len(distinct) + i], None if a is None else next(rest))
            for i, (s, a) in enumerate(zip(systems, answers, strict=True))
        ]

    def to_huggingface(self) -> PreTrainedTokenizerFast:
        """The same tokenizer as a transformers tokenizer (for xgrammar and the like).

        eos is `<|end|>`: the token that closes the assistant's answer, where generation
        stops. `split_special_tokens` keeps text from producing control tokens there too."""
        from transformers import PreTrainedTokenizerFast

        return PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer.from_str(self._tok.to_str()),  # a copy: HF mutates it
            bos_token="<|bos|>",
            eos_token="<|end|>",
            pad_token="<|pad|>",
            additional_special_tokens=["<|system|>", "<|user|>", "<|assistant|>"],
            split_special_tokens=True,
        )
