"""The lowercase BPE tokenizer (Hugging Face `tokenizers`).

Text is lowercased, split GPT-2 style into words that carry their leading
space, and each piece is encoded with BPE over a capped character alphabet.
A text that starts fresh (a prompt, a document) gets one space prepended, as
SentencePiece's dummy prefix does, so its first word is the same token as that
word in running text: "who is caesar?" is " who", " is", " caesar", "?".
Characters outside that alphabet (Greek, emoji, most accented letters)
become `[UNK]` instead of disappearing, so the UI can show them.
"""

from __future__ import annotations

import logging
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from rome_core.errors import RomeError

log = logging.getLogger(__name__)

UNK = "[UNK]"
EOT = "<|endoftext|>"
VOCAB_SIZE = 3000
DUMMY_PREFIX = " "
# The base alphabet: printable lowercase ASCII, always, so any such text round-trips exactly,
# plus the most frequent other characters of the training text up to ALPHABET_LIMIT in all.
# Rarer characters (Greek, emoji, most accented letters) map to [UNK].
ASCII_ALPHABET = sorted(set(string.printable.lower()) - set("\r\x0b\x0c"))
ALPHABET_LIMIT = 80
# GPT-2's split: words and numbers keep one leading space, and runs of whitespace stay whole,
# so decoding by plain concatenation restores the text exactly.
SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


@dataclass(frozen=True)
class Token:
    """One token of an encoded text. `start`/`end` index the lowercased input."""

    id: int
    text: str
    start: int
    end: int
    unknown: bool


@dataclass(frozen=True)
class Encoding:
    """The lowercased text and its tokens."""

    text: str
    tokens: list[Token]

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]

    def covered(self, token: Token) -> str:
        """Return the characters of the lowercased text that `token` stands for (what an [UNK] swallowed)."""
        return self.text[token.start : token.end]


def _new_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE(unk_token=UNK, fuse_unk=True))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    return tokenizer


class RomeTokenizer:
    """Wraps a `tokenizers.Tokenizer` with RomeGPT's conventions (lowercasing, [UNK], end-of-text)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        unk_id = tokenizer.token_to_id(UNK)
        eot_id = tokenizer.token_to_id(EOT)
        if unk_id is None or eot_id is None:
            raise RomeError(f"tokenizer lacks the special tokens {UNK} and {EOT}; train it with `romegpt train`")
        self.unk_id: int = unk_id
        self.eot_id: int = eot_id

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = VOCAB_SIZE) -> "RomeTokenizer":
        """Train a BPE vocabulary of `vocab_size` entries (special tokens included) on `texts`."""
        sample: list[str] = []
        non_blank = False
        for text in texts:
            sample.append(text)
            non_blank = non_blank or bool(text.strip())
        if not non_blank:
            raise RomeError("cannot train a tokenizer on empty or whitespace-only text; give it some real text")
        tokenizer = _new_tokenizer()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[UNK, EOT],
            limit_alphabet=ALPHABET_LIMIT,
            initial_alphabet=ASCII_ALPHABET,
            show_progress=False,
        )
        tokenizer.train_from_iterator((t.lower() for t in sample), trainer=trainer)
        result = cls(tokenizer)
        if result.vocab_size < vocab_size:
            log.warning(
                "the training text is too small for %d tokens: the vocabulary has %d; "
                "the model is sized to match",
                vocab_size,
                result.vocab_size,
            )
        return result

    @classmethod
    def load(cls, path: Path) -> "RomeTokenizer":
        path = Path(path)
        if not path.is_file():
            raise RomeError(f"{path}: tokenizer file not found; a checkpoint folder needs its tokenizer.json")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # tokenizers raises a bare Exception for malformed files
            first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise RomeError(f"{path}: not a valid tokenizer.json ({first_line})") from None
        return cls(tokenizer)

    def save(self, path: Path) -> None:
        self._tokenizer.save(str(path))

    def to_json(self) -> str:
        return self._tokenizer.to_str()

    # -- use ------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, start_of_text: bool = True) -> Encoding:
        """Lowercase `text` and split it into tokens with ids, spans and unknown flags.

        With `start_of_text` (a prompt or the start of a document) the dummy-prefix space is
        prepended; spans still index the lowercased `text`, so the first token's span leaves
        that space out. Pass False for text that continues earlier text.
        """
        lowered = text.lower()
        prefix = DUMMY_PREFIX if start_of_text and lowered else ""
        encoded = self._tokenizer.encode(prefix + lowered, add_special_tokens=False)
        shift = len(prefix)
        tokens = [
            Token(id=i, text=piece, start=max(0, start - shift), end=max(0, end - shift), unknown=i == self.unk_id)
            for i, piece, (start, end) in zip(encoded.ids, encoded.tokens, encoded.offsets)
        ]
        return Encoding(text=lowered, tokens=tokens)

    def encode_ids(self, text: str, start_of_text: bool = True) -> list[int]:
        return self.encode(text, start_of_text).ids

    def encode_batch_ids(self, texts: list[str], start_of_text: list[bool] | None = None) -> list[list[int]]:
        """Encode many texts in parallel (the Rust side uses every core). `start_of_text` is per text, default False."""
        flags = start_of_text or [False] * len(texts)
        lowered = [(DUMMY_PREFIX if flag and t else "") + t.lower() for t, flag in zip(texts, flags)]
        return [e.ids for e in self._tokenizer.encode_batch(lowered, add_special_tokens=False)]

    def decode(self, ids: Iterable[int], start_of_text: bool = True) -> str:
        """Concatenate the pieces of `ids`; [UNK] decodes to the literal text "[UNK]".

        With `start_of_text` the dummy-prefix space that `encode` added is removed again, so
        `decode(encode(s).ids) == s.lower()` for text inside the alphabet.
        """
        text = "".join(self.id_to_token(i) for i in ids)
        if start_of_text and text.startswith(DUMMY_PREFIX):
            text = text[len(DUMMY_PREFIX) :]
        return text

    def id_to_token(self, token_id: int) -> str:
        piece = self._tokenizer.id_to_token(token_id)
        if piece is None:
            raise RomeError(f"token id {token_id} is outside the vocabulary of {self.vocab_size}")
        return piece

    def token_to_id(self, piece: str) -> int | None:
        return self._tokenizer.token_to_id(piece)


class IncrementalDecoder:
    """Turns a stream of token ids into text pieces with nothing repeated or dropped.

    Every piece is whole characters (the tokenizer works on characters, not bytes), so
    appending the pieces gives exactly `tokenizer.decode(all_ids, start_of_text=False)`.
    """

    def __init__(self, tokenizer: RomeTokenizer) -> None:
        self._tokenizer = tokenizer

    def feed(self, token_id: int) -> str:
        return self._tokenizer.id_to_token(token_id)

    def stream(self, ids: Iterable[int]) -> Iterator[str]:
        for token_id in ids:
            yield self.feed(token_id)
