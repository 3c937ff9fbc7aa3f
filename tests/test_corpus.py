import codecs
import logging

import numpy as np
import pytest

from rome_core import corpus
from rome_core.errors import RomeError
from rome_core.tokenizer import RomeTokenizer
from tests.sample_text import sample_text

GUTENBERG = (
    "The Project Gutenberg EBook of Something\r\nLicence text here.\r\n"
    "*** START OF THIS PROJECT GUTENBERG EBOOK SOMETHING ***\r\n\r\n"
    "The Senate met\r\nat dawn and spoke\r\nof Caesar.\r\n\r\nA second\r\nparagraph.\r\n\r\n"
    "*** END OF THIS PROJECT GUTENBERG EBOOK SOMETHING ***\r\nMore licence text.\r\n"
)


def test_gutenberg_file_is_cleaned(tmp_path, caplog):
    path = tmp_path / "book.txt"
    path.write_bytes(codecs.BOM_UTF8 + GUTENBERG.encode("utf-8"))
    with caplog.at_level(logging.INFO, logger="rome_core.corpus"):
        doc = corpus.read_document(path)
    assert doc.text == "the senate met at dawn and spoke of caesar.\n\na second paragraph."
    assert doc.stats.bom
    assert doc.stats.gutenberg
    assert doc.stats.crlf == GUTENBERG.count("\r\n")
    assert "book.txt" in caplog.text


def test_latin1_strays_are_decoded_and_counted(tmp_path):
    path = tmp_path / "mixed.txt"
    path.write_bytes("Cæsar and ".encode("utf-8") + "Cæsar".encode("latin-1") + b" again")
    doc = corpus.read_document(path)
    assert doc.text == "cæsar and cæsar again"
    assert doc.stats.latin1 == 1


def test_plain_text_without_markers_is_kept(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Line one\nline two\n\n\nNext paragraph  here\n")
    assert corpus.read_document(path).text == "line one line two\n\nnext paragraph here"


def test_empty_file_is_named(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("  \n\n ")
    with pytest.raises(RomeError, match="empty.txt: file has no text"):
        corpus.read_document(path)


def test_bad_data_paths_are_named(tmp_path):
    with pytest.raises(RomeError, match="missing: no such file or folder"):
        corpus.find_text_files([tmp_path / "missing"])
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"\x89PNG")
    with pytest.raises(RomeError, match="images: folder has no .txt files"):
        corpus.find_text_files([tmp_path / "images"])


def test_split_takes_validation_from_the_middle():
    paragraphs = [f"paragraph number {i} of the book." for i in range(200)]
    text = "\n\n".join(paragraphs)
    train, val = corpus.split_document(text)
    val_paragraphs = val.split("\n\n")
    first = paragraphs.index(val_paragraphs[0])
    assert 80 <= first <= 100  # starts near 45% of the document, not at the end
    assert len(val_paragraphs) >= 8
    train_paragraphs = set("\n\n".join(train).split("\n\n"))
    assert not train_paragraphs & set(val_paragraphs)
    assert len(train_paragraphs) + len(val_paragraphs) == 200
    assert corpus.split_document(text) == (train, val)


def test_prepare_tokenizes_once_and_reuses_cache(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text(sample_text(80))
    (data / "b.txt").write_text(sample_text(40, seed=2))
    cache = tmp_path / "cache"
    tokenizer, first = corpus.prepare([data], cache, vocab_size=200)
    assert first.train.dtype == np.uint16
    assert isinstance(first.train, np.memmap)
    assert first.meta["val_tokens"] == len(first.val)
    assert int(first.train.max()) < tokenizer.vocab_size
    # Each document ends with end-of-text in both splits.
    assert int((np.asarray(first.val) == tokenizer.eot_id).sum()) == 2
    stamp = {p.name: p.stat().st_mtime_ns for p in cache.rglob("*.bin")}
    again_tokenizer, again = corpus.prepare([data], cache, vocab_size=200)
    assert {p.name: p.stat().st_mtime_ns for p in cache.rglob("*.bin")} == stamp
    assert again_tokenizer.to_json() == tokenizer.to_json()
    assert np.array_equal(np.asarray(again.train), np.asarray(first.train))


def test_given_tokenizer_is_reused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text(sample_text(60))
    tokenizer = RomeTokenizer.train([sample_text(10, seed=5)], vocab_size=150)
    used, _ = corpus.prepare([data], tmp_path / "cache", tokenizer=tokenizer)
    assert used is tokenizer


def test_binary_files_are_rejected(tmp_path):
    blob = tmp_path / "blob.txt"
    blob.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(RomeError, match="blob.txt: not a text file"):
        corpus.read_document(blob)
    noise = tmp_path / "noise.txt"
    noise.write_bytes(bytes(range(128, 256)) * 40)
    with pytest.raises(RomeError, match="noise.txt: not UTF-8 text"):
        corpus.read_document(noise)


def test_split_cuts_at_the_nearest_paragraph_break():
    # Paragraph breaks at about 44%, 49% and 89%: taking the next break after each cut point
    # would hold out 40% of the document instead of its second paragraph.
    paragraph = " ".join(["word"] * 20)
    paragraphs = [" ".join([paragraph] * count) for count in (44, 5, 40, 11)]
    train, val = corpus.split_document("\n\n".join(paragraphs))
    assert val == paragraphs[1]
    assert train == [paragraphs[0], "\n\n".join(paragraphs[2:])]
