"""Corpus pipeline: read text files, clean them, split train/validation, tokenize once to disk.

Cleaning per file: strip a byte-order mark, normalise line endings, decode stray Latin-1
bytes, drop the Project Gutenberg header and licence footer, join hard-wrapped lines back
into paragraphs, lowercase. The validation split is a slice out of the middle of every
document, so it is ordinary prose from every work and never overlaps the training text.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rome_core.errors import RomeError
from rome_core.tokenizer import ALPHABET_LIMIT, RomeTokenizer

log = logging.getLogger(__name__)

# Bump when cleaning or splitting changes, so cached token files are rebuilt.
PIPELINE_VERSION = 3
# The validation slice of each document, as fractions of its length in characters.
VAL_START, VAL_END = 0.45, 0.50
TEXT_SUFFIXES = {".txt", ".text"}

_START_MARKERS = re.compile(
    r"^\*\*\* ?START OF (?:THE|THIS) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT.*$",
    re.IGNORECASE | re.MULTILINE,
)
_END_MARKERS = re.compile(
    r"^\*\*\* ?END OF (?:THE|THIS) PROJECT GUTENBERG.*$|^End of (?:the )?Project Gutenberg.*$",
    re.IGNORECASE | re.MULTILINE,
)
_BLANK_LINES = re.compile(r"\n[ \t]*\n+")
_SPACES = re.compile(r"[ \t]+")


@dataclass
class CleaningStats:
    """Counts of the changes cleaning made to one file, logged so that no change is silent."""

    bom: bool = False
    crlf: int = 0
    latin1: int = 0
    gutenberg: bool = False


@dataclass
class Document:
    name: str
    text: str
    stats: CleaningStats = field(default_factory=CleaningStats)


_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _decode(raw: bytes, stats: CleaningStats) -> str:
    """Decode UTF-8, reading any byte that is not valid UTF-8 as Latin-1 (and counting it)."""
    # surrogateescape turns each invalid byte b into U+DC00 + b; U+0000 + b is that byte in Latin-1.
    text = raw.decode("utf-8", errors="surrogateescape")
    text, stats.latin1 = _ESCAPED_BYTE.subn(lambda match: chr(ord(match.group()) - 0xDC00), text)
    return text


def strip_gutenberg(text: str) -> tuple[str, bool]:
    """Return the text between Project Gutenberg's START and END markers, if it has them."""
    start = _START_MARKERS.search(text)
    if not start:
        return text, False
    end = _END_MARKERS.search(text, start.end())
    return text[start.end() : end.start() if end else len(text)], True


def unwrap_paragraphs(text: str) -> list[str]:
    """Join hard-wrapped lines into paragraphs; blank lines separate paragraphs."""
    paragraphs = []
    for block in _BLANK_LINES.split(text):
        joined = _SPACES.sub(" ", " ".join(line.strip() for line in block.split("\n"))).strip()
        if joined:
            paragraphs.append(joined)
    return paragraphs


def read_document(path: Path) -> Document:
    """Read and clean one text file. Raises RomeError naming the file if it is unreadable or empty."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise RomeError(f"{path}: cannot read file ({error.strerror}); check the path and permissions") from None
    stats = CleaningStats()
    if b"\x00" in raw[:65536]:
        raise RomeError(f"{path}: not a text file (it contains NUL bytes); remove it from the training data")
    if raw.startswith(codecs.BOM_UTF8):
        stats.bom = True
        raw = raw[len(codecs.BOM_UTF8) :]
    text = _decode(raw, stats)
    # A few stray Latin-1 bytes are normal in old texts; a file full of them is not UTF-8 text at all.
    if stats.latin1 > max(16, len(raw) // 100):
        raise RomeError(
            f"{path}: not UTF-8 text ({stats.latin1} invalid bytes); convert it to UTF-8 or remove it from the training data"
        )
    stats.crlf = text.count("\r\n")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text, stats.gutenberg = strip_gutenberg(text)
    cleaned = "\n\n".join(unwrap_paragraphs(text)).lower()
    if not cleaned:
        raise RomeError(f"{path}: file has no text; remove it from the training data")
    if stats.bom or stats.crlf or stats.latin1:
        log.info(
            "%s: removed BOM=%s, converted %d CRLF line endings, decoded %d stray Latin-1 bytes",
            path.name, stats.bom, stats.crlf, stats.latin1,
        )
    return Document(name=path.name, text=cleaned, stats=stats)


def find_text_files(inputs: list[Path]) -> list[Path]:
    """Expand folders into their text files (sorted, so runs are reproducible)."""
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
            if not found:
                raise RomeError(f"{item}: folder has no .txt files; point --data at a folder of plain-text files")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise RomeError(f"{item}: no such file or folder; check the --data path")
    return files


def split_document(text: str) -> tuple[list[str], str]:
    """Split one cleaned document into training pieces and its validation slice.

    The cut points move to the nearest paragraph break, before or after, so no paragraph is
    split. A document with few breaks may hold out much less or more than the 5% aimed at.
    """
    def snap(fraction: float) -> int:
        target = int(len(text) * fraction)
        after = text.find("\n\n", target)
        before = text.rfind("\n\n", 0, target)
        candidates = [cut for cut in (before, after) if cut >= 0] or [len(text)]
        return min(candidates, key=lambda cut: abs(cut - target))

    a, b = snap(VAL_START), snap(VAL_END)
    train = [piece.strip("\n") for piece in (text[:a], text[b:]) if piece.strip()]
    return train, text[a:b].strip("\n")


@dataclass
class TokenizedCorpus:
    """Token ids of both splits, memory-mapped from disk as uint16."""

    train: np.ndarray
    val: np.ndarray
    meta: dict

    @property
    def val_chars_per_token(self) -> float:
        return self.meta["val_chars"] / max(1, self.meta["val_tokens"])


def files_key(files: list[Path]) -> str:
    """Return a cache key for the input files, built from their paths, sizes and modification times."""
    digest = hashlib.sha256(f"pipeline-{PIPELINE_VERSION}".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_documents(files: list[Path]) -> list[Document]:
    documents = [read_document(path) for path in files]
    log.info("read %d files, %d characters after cleaning", len(documents), sum(len(d.text) for d in documents))
    return documents


def _encode_pieces(tokenizer: RomeTokenizer, pieces: list[str]) -> np.ndarray:
    """Encode pieces paragraph by paragraph and join them, each piece ended by end-of-text."""
    out: list[np.ndarray] = []
    for piece in pieces:
        paragraphs = piece.split("\n\n")
        texts = [p + "\n\n" for p in paragraphs[:-1]] + [paragraphs[-1]]
        # Only the first paragraph starts a text: the others continue after a blank line.
        starts = [True] + [False] * (len(texts) - 1)
        for ids in tokenizer.encode_batch_ids(texts, start_of_text=starts):
            out.append(np.asarray(ids, dtype=np.uint16))
        out.append(np.asarray([tokenizer.eot_id], dtype=np.uint16))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint16)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def tokenize_corpus(
    documents: list[Document], tokenizer: RomeTokenizer, cache_dir: Path, key: str
) -> TokenizedCorpus:
    """Tokenize both splits once into `cache_dir/<key>-<tokenizer hash>/`, reusing it when present."""
    if tokenizer.vocab_size > 65535:
        raise RomeError(f"vocabulary of {tokenizer.vocab_size} does not fit uint16 token files")
    tok_hash = hashlib.sha256(tokenizer.to_json().encode()).hexdigest()[:12]
    folder = cache_dir / f"{key}-{tok_hash}"
    meta_path = folder / "meta.json"
    if meta_path.is_file():
        log.info("reusing tokenized corpus in %s", folder)
        return _open_tokenized(folder)

    folder.mkdir(parents=True, exist_ok=True)
    train_pieces: list[str] = []
    val_pieces: list[str] = []
    for doc in documents:
        train, val = split_document(doc.text)
        train_pieces.extend(train)
        if val:
            val_pieces.append(val)
    train_ids = _encode_pieces(tokenizer, train_pieces)
    val_ids = _encode_pieces(tokenizer, val_pieces)
    if len(val_ids) < 2 or len(train_ids) < 2:
        raise RomeError("the training text is too short to split into training and validation data; add more text")
    _write_atomic(folder / "train.bin", train_ids.tobytes())
    _write_atomic(folder / "val.bin", val_ids.tobytes())
    meta = {
        "documents": [{"name": d.name, "characters": len(d.text)} for d in documents],
        "train_tokens": int(len(train_ids)),
        "val_tokens": int(len(val_ids)),
        "train_chars": sum(len(p) for p in train_pieces),
        "val_chars": sum(len(p) for p in val_pieces),
        "vocab_size": tokenizer.vocab_size,
    }
    _write_atomic(meta_path, json.dumps(meta, indent=2).encode())
    log.info("tokenized %d training and %d validation tokens into %s", len(train_ids), len(val_ids), folder)
    return _open_tokenized(folder)


def _open_tokenized(folder: Path) -> TokenizedCorpus:
    meta = json.loads((folder / "meta.json").read_text())
    train = np.memmap(folder / "train.bin", dtype=np.uint16, mode="r")
    val = np.memmap(folder / "val.bin", dtype=np.uint16, mode="r")
    return TokenizedCorpus(train=train, val=val, meta=meta)


def prepare(
    inputs: list[Path], cache_dir: Path, tokenizer: RomeTokenizer | None = None, vocab_size: int = 3000
) -> tuple[RomeTokenizer, TokenizedCorpus]:
    """Read, clean and tokenize `inputs`; train a tokenizer on the training split unless one is given."""
    files = find_text_files(inputs)
    key = files_key(files)
    documents = load_documents(files)
    if tokenizer is None:
        tokenizer_path = cache_dir / f"{key}-tokenizer-{vocab_size}-a{ALPHABET_LIMIT}.json"
        if tokenizer_path.is_file():
            tokenizer = RomeTokenizer.load(tokenizer_path)
            log.info("reusing tokenizer %s", tokenizer_path)
        else:
            train_text = (piece for doc in documents for piece in split_document(doc.text)[0])
            tokenizer = RomeTokenizer.train(train_text, vocab_size=vocab_size)
            cache_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(tokenizer_path, tokenizer.to_json().encode())
    return tokenizer, tokenize_corpus(documents, tokenizer, cache_dir, key)
