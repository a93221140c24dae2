"""Exact, faster scoring for the tfidf provider's linear model.

Profiling the served path (cProfile) showed two thirds of the time in scikit-learn's
`TfidfVectorizer.transform`: a Python loop that slices every character n-gram of every text,
looks each up, and then validates and normalises a sparse matrix built for general use. This
module computes the same logit from the same fitted vectorizers:

- character n-grams only ever span one word (`char_wb`), so each distinct word's n-gram ids are
  computed once with scikit-learn's own `_char_wb_ngrams` and cached (words repeat: Zipf); the
  cache is bounded in bytes, not only in entries (`word_cache_entries`);
- the counts of a whole batch are gathered with one `np.unique`, and sublinear tf, idf, the L2
  norm and the dot product with the weights are done with vectorised numpy.

The result equals `LinearTextModel.logits` to floating-point rounding (checked in the tests); it
is used only when the vectorizers' settings are the ones implemented here, else the provider
keeps scikit-learn's path. It reads the fitted vectorizers and weights it is given and nothing
else of the model, so this module does not import `model.py`.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sklearn.feature_extraction.text import TfidfVectorizer

# The memory the word cache may take. An entry's size grows with its word's length (a word of n
# characters has about 4n n-grams), so a cap on entries alone let distinct random 5,000-letter
# "words" fill it with 64 KB each: gigabytes. Words longer than MAX_CACHED_WORD_CHARS are never
# cached (real words are shorter; a long one costs its own n-grams once per request, as any text
# costs its length), and the number of entries is what the budget holds of the largest entry.
WORD_CACHE_BYTES = 32 << 20
MAX_CACHED_WORD_CHARS = 24
# A cached entry beyond its key and value: functools.lru_cache's link and its dict slot.
_LRU_ENTRY_OVERHEAD_BYTES = 128


def word_cache_entries(
    ngram_range: tuple[int, int],
    budget_bytes: int = WORD_CACHE_BYTES,
    max_word_chars: int = MAX_CACHED_WORD_CHARS,
) -> int:
    """How many words fit in `budget_bytes` when every entry is as large as one can be: the
    longest cached word, in the widest string representation, with every n-gram in the
    vocabulary (the ids themselves are the vocabulary's own int objects, shared)."""
    low, high = ngram_range
    padded = max_word_chars + 2  # char_wb pads each word with a space on both sides
    grams = sum(max(0, padded - n + 1) for n in range(low, high + 1))
    largest = (
        sys.getsizeof("\U0010ffff" * max_word_chars)
        + sys.getsizeof(tuple(range(grams)))
        + _LRU_ENTRY_OVERHEAD_BYTES
    )
    return max(1, budget_bytes // largest)


_EXPECTED = {
    "lowercase": False,
    "preprocessor": None,
    "tokenizer": None,
    "stop_words": None,
    "strip_accents": None,
    "binary": False,
    "use_idf": True,
    "sublinear_tf": True,
    "norm": "l2",
}


def supports(word_vectorizer: TfidfVectorizer, char_vectorizer: TfidfVectorizer) -> bool:
    """True when both vectorizers use exactly the settings this module implements."""
    word, char = word_vectorizer.get_params(), char_vectorizer.get_params()
    return (
        all(word.get(k) == v and char.get(k) == v for k, v in _EXPECTED.items())
        and word.get("analyzer") == "word"
        and char.get("analyzer") == "char_wb"
        and word.get("ngram_range") in ((1, 1), (1, 2))
    )


def _linear_part(
    ids: list[int], lengths: list[int], n_docs: int, idf: np.ndarray, coef: np.ndarray
) -> np.ndarray:
    """sum_i(tfidf_i * coef_i) / ||tfidf|| per document, from the flat feature ids; one column
    per column of `coef` when it has two dimensions (a model with more than one head)."""
    shape = (n_docs,) + coef.shape[1:]
    if not ids:
        return np.zeros(shape)
    size = len(idf)
    doc = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    keys = doc * size + np.asarray(ids, dtype=np.int64)
    unique, counts = np.unique(keys, return_counts=True)
    rows = unique // size
    cols = unique - rows * size
    weights = (np.log(counts) + 1.0) * idf[cols]  # sublinear tf times idf, as scikit-learn
    norm2 = np.bincount(rows, weights=weights * weights, minlength=n_docs)
    safe = np.sqrt(np.where(norm2 > 0, norm2, 1.0))
    per_head = coef[cols].reshape(len(cols), -1)
    out = np.empty((n_docs, per_head.shape[1]))
    for head in range(per_head.shape[1]):
        dot = np.bincount(rows, weights=weights * per_head[:, head], minlength=n_docs)
        out[:, head] = np.where(norm2 > 0, dot / safe, 0.0)
    return out.reshape(shape)


class FastLinearScorer:
    """The word and character parts of the logit, from the fitted vectorizers and weights."""

    def __init__(
        self,
        word: TfidfVectorizer,
        char: TfidfVectorizer,
        coef_word: np.ndarray,
        coef_char: np.ndarray,
        cache_bytes: int = WORD_CACHE_BYTES,
    ) -> None:
        self.word_vocab: dict[str, int] = word.vocabulary_
        self.char_vocab: dict[str, int] = char.vocabulary_
        self.word_idf = np.asarray(word.idf_, dtype=np.float64)
        self.char_idf = np.asarray(char.idf_, dtype=np.float64)
        self.coef_word = coef_word
        self.coef_char = coef_char
        self.bigrams = word.get_params()["ngram_range"] == (1, 2)
        self.token_pattern = re.compile(word.token_pattern)
        # scikit-learn's own n-gram function, so the grams are the very same strings.
        self._char_wb_ngrams: Callable[[str], list[str]] = char._char_wb_ngrams
        self.cached_char_ids: Callable[[str], tuple[int, ...]] = functools.lru_cache(
            maxsize=word_cache_entries(char.get_params()["ngram_range"], cache_bytes)
        )(self._char_ids)

    def _char_ids(self, word: str) -> tuple[int, ...]:
        vocab = self.char_vocab
        return tuple(vocab[g] for g in self._char_wb_ngrams(word) if g in vocab)

    def _word_ids(self, doc: str) -> list[int]:
        tokens = self.token_pattern.findall(doc)
        grams: list[str] = tokens
        if self.bigrams and len(tokens) > 1:
            grams = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
        get = self.word_vocab.get
        return [i for i in map(get, grams) if i is not None]

    def linear(self, normalized: Sequence[str]) -> np.ndarray:
        """The word and character parts of the logit (without lexicon and intercept): one value
        per text, or one row per text when the weights have a column per head."""
        word_ids: list[int] = []
        word_lengths: list[int] = []
        char_ids: list[int] = []
        char_lengths: list[int] = []
        cached, uncached = self.cached_char_ids, self._char_ids
        for doc in normalized:
            ids = self._word_ids(doc)
            word_ids.extend(ids)
            word_lengths.append(len(ids))
            before = len(char_ids)
            for word in doc.split():
                if len(word) > MAX_CACHED_WORD_CHARS:
                    char_ids.extend(uncached(word))
                else:
                    char_ids.extend(cached(word))
            char_lengths.append(len(char_ids) - before)
        n = len(normalized)
        word_part = _linear_part(word_ids, word_lengths, n, self.word_idf, self.coef_word)
        char_part = _linear_part(char_ids, char_lengths, n, self.char_idf, self.coef_char)
        out: np.ndarray = word_part + char_part
        return out
