"""Text normalisation shared by training and serving.

`normalize` is the one function that turns raw text into what the TF-IDF model sees. Training
calls it before fitting and the `tfidf` provider calls it before scoring, so the two cannot drift
apart. The sequence classifiers (`transformer`, `onnx`) run it too when their artifact's metadata
says `"input_normalization": "deobfuscate"` (`sequence.py`): a tokenizer splits `f.u.c.k` or
`sh1t` into pieces the model rarely saw. It undoes the cheap tricks people use to get abuse past a
filter:

- Unicode compatibility forms (NFKC: full-width and "mathematical bold" letters become ASCII),
- invisible characters (zero-width spaces and joiners, soft hyphens) and combining accents,
- homoglyphs (Cyrillic and Greek letters that look Latin),
- spaced or dotted letters (``f u c k``, ``f.u.c.k``),
- leetspeak inside words (``sh1t``, ``b!tch``, ``@ss`` is lost to the mention rule, see below),
- masking characters inside known abusive words (``f*ck``, ``sh.t``),
- long character runs (``fuuuuuck`` -> ``fuuck``).

It also canonicalises what differs between sources but carries no meaning: HTML entities, URLs and
@-mentions (the tweet sets anonymise mentions as ``@user``; Davidson keeps real handles).

Cost matters because it runs on every served text: the common all-ASCII, no-obfuscation path is a
few regex scans (see `training/bench_tfidf.py` for the measured cost per text).
"""

from __future__ import annotations

import html
import re
import unicodedata

from ml_prod_api.providers.lexicon import ABUSIVE_WORDS, VOCABULARY

__all__ = ["normalize"]

# Characters with no visible width that are used to split a word so a filter misses it.
_INVISIBLE = "\u00ad\u034f\u180e\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff"

# Letters from other scripts that render like Latin ones. NFKC leaves these alone because they are
# distinct letters, not compatibility forms, so they need an explicit table.
_HOMOGLYPHS = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d",
    "ɡ": "g", "һ": "h", "ԛ": "q", "ԝ": "w", "ү": "y", "ӏ": "l",
    "А": "a", "В": "b", "Е": "e", "К": "k", "М": "m", "Н": "h", "О": "o", "Р": "p", "С": "c",
    "Т": "t", "У": "y", "Х": "x", "Ѕ": "s", "І": "i", "Ј": "j",
    # Greek
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k",
    "Μ": "m", "Ν": "n", "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
}  # fmt: skip

_TRANSLATE = {ord(ch): None for ch in _INVISIBLE} | {ord(k): v for k, v in _HOMOGLYPHS.items()}
# Combining diacritics: accents used to dodge a filter (`fück`) and "zalgo" noise.
_COMBINING = re.compile("[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff]")

# Masked tokens (`f*ck`, `st*pid`) are matched against a fixed vocabulary shipped in the package,
# indexed by (length, first letter, last letter) so a lookup scans a handful of candidates.
_VOCABULARY_SET = frozenset(VOCABULARY)
_ABUSIVE_SET = frozenset(ABUSIVE_WORDS)
_BY_SHAPE: dict[tuple[int, str, str], tuple[str, ...]] = {}
_BY_LEN: dict[int, tuple[str, ...]] = {}
for _word in VOCABULARY:
    _shape = (len(_word), _word[0], _word[-1])
    _BY_SHAPE[_shape] = (*_BY_SHAPE.get(_shape, ()), _word)
    _BY_LEN[len(_word)] = (*_BY_LEN.get(len(_word), ()), _word)
# Spaced letters that ran into their neighbours (`a f u c k`, `y o u r a s s`) are split into the
# cheapest sequence of known words; an unknown stretch costs this many known words. Two-letter words
# do not count as known there, or `u s a` would come out as `us a`.
_SEGMENT_WORDS = frozenset(w for w in VOCABULARY if len(w) >= 3) | {"a", "i", "u"}
_UNKNOWN_COST = 4
_MAX_SEGMENT = 40

_URL = re.compile(r"https?://\S+|www\.\S+")
_MENTION = re.compile(r"@\w+")
# Three or more single letters separated by one space, dot, dash or underscore: `f u c k`. A letter
# after an apostrophe (`it's a d*mn`) is the end of a word, not a spaced letter.
_SPACED = re.compile(r"(?<![^\W\d_])(?<!['’])(?:[^\W\d_][ .\-_]){2,}[^\W\d_](?![^\W\d_])(?!['’])")
_SPACED_SEP = re.compile(r"[ .\-_]")
# Leet or masking characters inside a word, `$`/`@` opening one, `$` closing one, any `*`: only
# texts with one of these take the slower token-by-token pass.
_SUSPECT = re.compile(
    r"[^\W\d_][013457@$!*._]+[^\W\d_]|(?<![\w@$])(?:[013457$]|@(?!user\b))[^\W\d_]{2}"
    r"|[^\W\d_]\$|[^\W\d_]{3}[013457](?!\w)|\*"
)
_TOKEN = re.compile(r"\S+")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a",
                       "$": "s", "!": "i"})  # fmt: skip
# Leet characters between two letters (`sh1t`), opening a word of 2+ more letters (`$hit`, `1diot`,
# but not ordinals like `1st`), `$` closing one (`a$$`), one digit closing a word of 3+ letters
# (`tha7`). Other trailing digits stay: `covid19`, `mp3`, `win10`.
_LEET_INNER = re.compile(
    r"(?<=[^\W\d_])[013457@$!]{1,2}(?=[^\W\d_])"
    r"|^[013457@$](?=[^\W\d_]{2})(?!(?:st|nd|rd|th)\b)"
    r"|(?<=[^\W\d_])\$+$|(?<=[^\W\d_]{3})[013457]$"
)
# NFKD turns some characters into many (U+FDFA into 18), and every later step costs per
# character: the decomposed text is cut at this many times the original's length, which leaves
# room for Hangul (a syllable decomposes into up to 3 jamo, recomposed by NFC).
_MAX_NFKD_EXPANSION = 4
_REPEATS = re.compile(r"(.)\1{2,}")
_SPACES = re.compile(r"\s+")
_EDGE_PUNCT = ".,!?;:\"'()[]{}<>"


def normalize(text: str) -> str:
    """Return the canonical form of `text` that the model is trained and served on."""
    if not text.isascii():
        # NFKD splits accents off their letters (`fück` -> `fu` + U+0308 + `ck`) so the combining
        # marks can go; NFC then recomposes what must stay composed (Hangul syllables).
        limit = _MAX_NFKD_EXPANSION * len(text)
        text = unicodedata.normalize("NFKD", text)[:limit].translate(_TRANSLATE)
        text = unicodedata.normalize("NFC", _COMBINING.sub("", text))
    if "&" in text:
        text = html.unescape(text)
    text = text.lower()
    if "http" in text or "www." in text:
        text = _URL.sub("url", text)
    if "@" in text:
        text = _MENTION.sub("@user", text)
    text = _SPACED.sub(_join_spaced, text)
    if _SUSPECT.search(text):
        text = _TOKEN.sub(_deobfuscate_token, text)
    text = _REPEATS.sub(r"\1\1", text)
    return _SPACES.sub(" ", text).strip()


def _join_spaced(match: re.Match[str]) -> str:
    joined = _SPACED_SEP.sub("", match.group(0))
    if joined in _VOCABULARY_SET or len(joined) > _MAX_SEGMENT:
        return joined
    return " ".join(_segment(joined))


def _segment(letters: str) -> list[str]:
    """Split `letters` into known words and unknown stretches, fewest cost then fewest pieces.

    `afucking` -> `a fucking`, `yourass` -> `your ass`; `control`, unknown as a whole, stays one
    piece because splitting it would cost more than the one unknown stretch.
    """
    n = len(letters)
    # best[i] = (cost, pieces, start of the last piece) for letters[:i]
    best: list[tuple[int, int, int]] = [(0, 0, 0)] + [(1 << 30, 0, 0)] * n
    for end in range(1, n + 1):
        for start in range(end):
            cost, pieces, _ = best[start]
            piece = 1 if letters[start:end] in _SEGMENT_WORDS else _UNKNOWN_COST
            candidate = (cost + piece, pieces + 1, start)
            if candidate[:2] < best[end][:2]:
                best[end] = candidate
    words: list[str] = []
    end = n
    while end > 0:
        start = best[end][2]
        words.append(letters[start:end])
        end = start
    return words[::-1]


def _deobfuscate_token(match: re.Match[str]) -> str:
    token = match.group(0)
    # The mention placeholder, not a password (bandit B105).
    if token == "@user":  # nosec B105
        return token
    # Keep sentence punctuation around the word out of the way: `sh1t!` is `shit` + `!`.
    core = token.strip(_EDGE_PUNCT)
    if not core or core.isalpha():
        return token
    start = token.index(core)
    prefix, suffix = token[:start], token[start + len(core) :]
    # Two passes: the inner digits of `1d10t` must be letters before its first `1` can count as
    # opening a word.
    fixed = _LEET_INNER.sub(_unleet, _LEET_INNER.sub(_unleet, core))
    if "*" in fixed or "." in fixed or "_" in fixed:
        fixed = _unmask(fixed)
    return prefix + fixed + suffix


def _unleet(match: re.Match[str]) -> str:
    return match.group(0).translate(_LEET)


def _unmask(word: str) -> str:
    """`f*ck` -> `fuck`, `sh.t` -> `shit`, `se.x` -> `sex`; abbreviations (`e.g`) stay."""
    joined = word.replace(".", "").replace("_", "")
    if joined in _ABUSIVE_SET:
        return joined
    if "*" in joined and joined.strip("*"):
        found = _match_masked(joined, min_len=1)
        return found if found is not None else joined.replace("*", "")
    # A dot standing for a letter (`sh.t`) only counts for words of four letters or more, so
    # abbreviations such as `a.m` or `u.k` are never turned into words.
    found = _match_masked(word.replace(".", "*").replace("_", "*"), min_len=4)
    if found is not None:
        return found
    # A dot splitting a word (`tha.t`, `k.ids`) goes; one between single letters (`e.g`, `a.m`) is
    # an abbreviation and stays. A missing space after a full stop (`fine.thanks`) is joined too,
    # a small loss the model is trained with.
    parts = word.replace("_", ".").split(".")
    if "*" not in word and all(parts) and max(len(p) for p in parts) >= 2:
        return "".join(parts)
    return word


def _match_masked(pattern: str, min_len: int) -> str | None:
    # Each `*` stands for one letter; the first vocabulary word of that shape wins (abusive words
    # first, see `lexicon.py`). Masked tokens are rare, so this is off the hot path.
    if len(pattern) < min_len:
        return None
    first, last = pattern[0], pattern[-1]
    if first != "*" and last != "*":
        candidates = _BY_SHAPE.get((len(pattern), first, last), ())
    else:
        candidates = _BY_LEN.get(len(pattern), ())
    for candidate in candidates:
        if all(c == "*" or c == w for c, w in zip(pattern, candidate, strict=True)):
            return candidate
    return None
