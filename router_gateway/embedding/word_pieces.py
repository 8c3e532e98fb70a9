"""Word-piece ids of a prompt, cached per whitespace-separated word: the static embedders' tokenizer.

The static lookup itself costs ~25 us for a 200-token prompt; HF ``tokenizers`` spent ~0.3-0.5 ms
on the same prompt (most of it fixed per-call work, not per token), so tokenising was most of the
routing decision. Prompts repeat their words (Zipf), so the ids of each word are cached: a prompt
becomes one split plus a dict lookup per word (~15 us for 200 tokens), and only unseen words go to
the tokenizer, in one batch call.

Exactness. The ids are the ones ``tokenizer.encode(text, add_special_tokens=False)`` gives
(then truncated): BERT's normaliser (clean text, CJK spacing, accent stripping, lower case) works
character by character and its pre-tokenizer splits at whitespace, so splitting first at the ASCII
separators space, tab, newline and carriage return (the only ones split here) changes nothing. Other
Unicode whitespace stays inside a word and is handled by the tokenizer as before. A test checks the
equality on real prompts and on awkward input.
"""
from __future__ import annotations

import re

#: maximal runs of characters that are not ASCII space / tab / newline / carriage return
_WORDS = re.compile(r"[^ \t\n\r]+")
#: words cached before the cache is emptied and refilled (bounded memory: ~25 MB at most; a
#: client sending random words only costs the tokenizer calls the cache would have saved)
MAX_CACHED_WORDS = 100_000
#: unseen words of one prompt tokenised in one batch call from this many (a typical prompt has a few:
#: a number, a name; encode_batch costs ~1.5x a single encode for one word, less per word for many)
BATCH_FROM = 16


class WordPieceCache:
    """``ids(text)``: the tokenizer's word-piece ids of ``text`` (no special tokens), at most ``max_tokens``."""

    def __init__(self, tokenizer, max_tokens: int, max_words: int = MAX_CACHED_WORDS):
        # no truncation (tokenizer.json truncates at 128) nor padding: a word's ids must be all of its
        # ids. The tokenizer is changed in place: the cache owns it from now on.
        self._tokenizer = tokenizer
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.max_tokens = max_tokens
        self.max_words = max_words
        self._words: dict[str, tuple[int, ...]] = {}

    def ids(self, text: str) -> list[int]:
        words = _WORDS.findall(text)
        out: list[int] = []
        # a word gives at least one piece unless normalised away, so max_tokens words nearly always do
        for start in range(0, len(words), self.max_tokens):
            out += self._pieces_of(words[start:start + self.max_tokens])
            if len(out) >= self.max_tokens:
                return out[:self.max_tokens]
        return out

    def _pieces_of(self, words: list[str]) -> list[int]:
        cache = self._words
        missing = [w for w in dict.fromkeys(words) if w not in cache]
        if missing:
            self._learn(missing)
            cache = self._words
        out: list[int] = []
        for word in words:
            pieces = cache.get(word)
            out += pieces if pieces is not None else self._encode_one(word)
        return out

    def _learn(self, words: list[str]) -> None:
        if len(self._words) + len(words) > self.max_words:
            self._words = {}  # new dict, not clear(): a concurrent reader keeps its old one
        if len(words) <= BATCH_FROM:  # one call each: the batch call's own overhead is larger
            for word in words:
                self._words[word] = self._encode_one(word)
            return
        for word, encoding in zip(words, self._tokenizer.encode_batch(words, add_special_tokens=False)):
            self._words[word] = tuple(encoding.ids)

    def _encode_one(self, word: str) -> tuple[int, ...]:
        """One word's ids (also for a word no longer cached: another thread emptied the cache)."""
        return tuple(self._tokenizer.encode(word, add_special_tokens=False).ids)
