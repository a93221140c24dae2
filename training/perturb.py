"""Spellings that evade a word filter: leetspeak, masks, dots, zero-width characters, homoglyphs
and spaced letters, each applied to one word (`obfuscation_robustness.py` measures how a model
copes with them)."""

from __future__ import annotations

import random
from collections.abc import Callable

_LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"}
_HOMOGLYPH = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "x": "х", "y": "у", "i": "і"}
_VOWELS = "aeiou"


def leet(word: str, rng: random.Random) -> str:
    spots = [i for i, c in enumerate(word) if c.lower() in _LEET]
    if not spots:
        return word
    chosen = set(rng.sample(spots, k=max(1, len(spots) // 2)))
    return "".join(_LEET[c.lower()] if i in chosen else c for i, c in enumerate(word))


def asterisk(word: str, rng: random.Random) -> str:
    # Mask one inner vowel, the usual `f*ck`; a word without one loses an inner letter instead.
    inner = [i for i in range(1, len(word) - 1) if word[i].lower() in _VOWELS] or list(
        range(1, len(word) - 1)
    )
    i = rng.choice(inner)
    return word[:i] + "*" + word[i + 1 :]


def dots(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word))
    return word[:i] + "." + word[i:]


def zero_width(word: str, rng: random.Random) -> str:
    marks = ["\u200b", "\u200c", "\u200d", "\u2060", "\u00ad"]
    return "".join(c + (rng.choice(marks) if i < len(word) - 1 else "") for i, c in enumerate(word))


def homoglyph(word: str, rng: random.Random) -> str:
    return "".join(_HOMOGLYPH.get(c, c) if rng.random() < 0.7 else c for c in word)


def spaced(word: str, rng: random.Random) -> str:
    return rng.choice([" ", ".", " "]).join(word)


# What an evader does to a word a filter keys on.
METHODS: dict[str, Callable[[str, random.Random], str]] = {
    "leetspeak": leet,
    "asterisk": asterisk,
    "dots": dots,
    "zero_width": zero_width,
    "homoglyph": homoglyph,
    "spaced": spaced,
}
