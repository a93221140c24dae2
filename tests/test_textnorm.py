"""The shared normalisation: each obfuscation it promises to undo, and what it must leave alone."""

from __future__ import annotations

import pytest

from ml_prod_api.providers.lexicon import ABUSIVE_WORDS, COMMON_WORDS, VOCABULARY
from ml_prod_api.providers.tfidf import normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("You ARE an Idiot", "you are an idiot"),
        ("ｆｕｃｋ you", "fuck you"),  # full-width (NFKC)
        ("𝐟𝐮𝐜𝐤 you", "fuck you"),  # mathematical bold (NFKC)
        ("fu\u200bck y\u200dou", "fuck you"),  # zero-width space and joiner
        ("st\u00adupid", "stupid"),  # soft hyphen
        ("іdіоt", "idiot"),  # Cyrillic і and о
        ("fück", "fuck"),  # accent used to dodge a filter
        ("f u c k you", "fuck you"),  # spaced letters
        ("f.u.c.k off", "fuck off"),  # dotted letters
        ("sh1t happens", "shit happens"),  # leetspeak inside a word
        ("what a b!tch.", "what a bitch."),
        ("$hit", "shit"),
        ("a$$hole", "asshole"),
        ("f*ck you", "fuck you"),  # masked letter
        ("f**k", "fuck"),
        ("sh.t", "shit"),
        ("id*ot", "idiot"),
        ("st*pid", "stupid"),  # any lexicon word, not only profanity
        ("he is a l*ar", "he is a liar"),
        ("th*t is it", "that is it"),  # common words are recovered too
        ("he is a l i a r", "he is a liar"),  # spaced letters after a one-letter word
        ("i h a t e you", "i hate you"),
        ("y o u r a s s", "your ass"),  # two spaced words that ran together
        ("it's a d*mn shame", "it's a damn shame"),
        (
            "u s a",
            "usa",
        ),  # joined, not split into two-letter words  # `s a d` after an apostrophe is no word
        ("fuuuuuuck", "fuuck"),  # long runs squashed to two
        ("soooo good!!!!!", "soo good!!"),
        ("@SomeHandle you", "@user you"),  # mentions canonical, as in TweetEval
        ("see http://t.co/abc now", "see url now"),
        ("this &amp; that", "this & that"),  # HTML entities (Davidson)
        ("  many   spaces\n\there ", "many spaces here"),
    ],
)
def test_undoes_obfuscation(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


@pytest.mark.parametrize(
    "text",
    [
        "covid19 is over, see you on the 2nd",
        "e.g. this is fine",
        "a.m. and p.m.",
        "well-known facts",
        "안녕하세요",  # Hangul stays composed after the NFKD/NFC round trip
        "I love you 😍",
    ],
)
def test_leaves_ordinary_text_alone(text: str) -> None:
    assert normalize(text) == text.lower()


def test_is_idempotent() -> None:
    samples = ["F*CK  y0u @someone!!!", "ｓｈ1ｔ", "f u c k", "fuuuuck", "e.g. a.m.", "id*ot",
               "a f u c k", "y o u r a s s"]  # fmt: skip
    for text in samples:
        once = normalize(text)
        assert normalize(once) == once


def test_unknown_masked_word_loses_its_mask() -> None:
    # Not in the list: the mask goes, the letters stay (character n-grams still see them).
    assert normalize("xy*zw") == "xyzw"


def test_lexicon_is_lowercase_words() -> None:
    for words in (ABUSIVE_WORDS, COMMON_WORDS):
        assert all(word.isalpha() and word == word.lower() for word in words)
    assert len(set(VOCABULARY)) == len(VOCABULARY)
    # Identity words are not abuse (and the model already over-weighs them, MODEL_CARD.md).
    assert not {"gay", "queer", "black", "white", "muslim", "jewish", "lesbian"} & set(
        ABUSIVE_WORDS
    )


def test_empty_and_whitespace() -> None:
    assert normalize("") == ""
    assert normalize(" \u200b ") == ""


def test_a_character_that_expands_eighteenfold_is_cut_at_a_bounded_length() -> None:
    # U+FDFA decomposes into 18 characters: 5,000 of them used to cost as 90,000.
    assert len(normalize("\ufdfa" * 5000)) <= 4 * 5000
    assert normalize("안녕하세요 친구") == "안녕하세요 친구"  # Hangul: decomposed, then recomposed
