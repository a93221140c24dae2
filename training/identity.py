"""Identity terms: what the bias measures group by and what counterfactual augmentation swaps.

Terms are grouped so a swap stays grammatical (an adjective for an adjective, a plural noun for a
plural noun). The list covers the axes of the Jigsaw Unintended Bias identity columns (gender,
sexual orientation, religion, race and origin, disability, age); it is written here, not copied
from an evaluation set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Adjectives that name an identity ("a ___ person", "___ people").
IDENTITY_ADJECTIVES: dict[str, tuple[str, ...]] = {
    "sexual orientation": (
        "gay",
        "lesbian",
        "bisexual",
        "queer",
        "homosexual",
        "heterosexual",
        "straight",
        "lgbt",
        "lgbtq",
        "asexual",
        "pansexual",
    ),
    "gender": (
        "transgender",
        "trans",
        "nonbinary",
        "cisgender",
        "male",
        "female",
        "intersex",
    ),
    "religion": (
        "muslim",
        "jewish",
        "christian",
        "catholic",
        "protestant",
        "hindu",
        "buddhist",
        "sikh",
        "atheist",
        "mormon",
    ),
    "race and origin": (
        "black",
        "white",
        "asian",
        "african",
        "african american",
        "latino",
        "latina",
        "hispanic",
        "mexican",
        "chinese",
        "indian",
        "arab",
        "middle eastern",
        "native american",
        "indigenous",
        "european",
        "korean",
        "japanese",
        "pakistani",
        "nigerian",
        "somali",
        "syrian",
        "polish",
        "irish",
        "romani",
        "immigrant",
        "refugee",
    ),
    "disability": (
        "disabled",
        "deaf",
        "blind",
        "autistic",
        "wheelchair-using",
        "mentally ill",
    ),
    "age": ("old", "elderly", "young", "teenage", "middle aged", "millennial"),
}

# Plural nouns for groups ("___ are ..."), paired with the adjective family they belong to.
IDENTITY_GROUPS: dict[str, tuple[str, ...]] = {
    "sexual orientation": (
        "gays",
        "lesbians",
        "bisexuals",
        "gay men",
        "queer people",
        "homosexuals",
        "heterosexuals",
    ),
    "gender": ("women", "men", "trans women", "trans men", "nonbinary people", "girls", "females"),
    "religion": ("muslims", "jews", "christians", "catholics", "hindus", "sikhs", "atheists"),
    "race and origin": (
        "black people",
        "white people",
        "asians",
        "africans",
        "latinos",
        "mexicans",
        "arabs",
        "immigrants",
        "refugees",
        "migrants",
        "indians",
        "chinese people",
        "native americans",
        "blacks",
        "whites",
        "hispanics",
    ),
    "disability": ("disabled people", "deaf people", "blind people", "autistic people"),
    "age": ("old people", "boomers", "teenagers", "millennials"),
}

# Singular nouns for one person ("a ___"): hate speech names people this way ("a homosexual",
# "a jew") far more often than benign text does, so a model learns the noun form itself as a cue
# unless it also sees it in benign sentences.
IDENTITY_NOUNS: tuple[str, ...] = (
    "homosexual",
    "heterosexual",
    "lesbian",
    "bisexual",
    "gay man",
    "trans woman",
    "trans man",
    "muslim",
    "jew",
    "christian",
    "catholic",
    "hindu",
    "buddhist",
    "sikh",
    "atheist",
    "mormon",
    "immigrant",
    "refugee",
    "migrant",
    "asian",
    "african",
    "latino",
    "latina",
    "hispanic",
    "mexican",
    "arab",
    "black man",
    "black woman",
    "white man",
    "white woman",
    "woman",
    "feminist",
)

ALL_ADJECTIVES: tuple[str, ...] = tuple(t for terms in IDENTITY_ADJECTIVES.values() for t in terms)
ALL_GROUPS: tuple[str, ...] = tuple(t for terms in IDENTITY_GROUPS.values() for t in terms)


def _pattern(terms: Iterable[str]) -> re.Pattern[str]:
    # Longest first, so "african american" wins over "african"; word boundaries on both sides.
    ordered = sorted(set(terms), key=len, reverse=True)
    return re.compile(
        r"(?<![\w-])(" + "|".join(re.escape(t) for t in ordered) + r")(?![\w-])", re.I
    )


ADJECTIVE_PATTERN = _pattern(ALL_ADJECTIVES)
GROUP_PATTERN = _pattern(ALL_GROUPS)
ANY_PATTERN = _pattern(ALL_ADJECTIVES + ALL_GROUPS)

# The terms the per-identity bias measures report on the project's own test splits: frequent
# enough in the data to give a stable AUC, spread over the axes.
REPORTED_TERMS: tuple[str, ...] = (
    "gay",
    "lesbian",
    "queer",
    "homosexual",
    "transgender",
    "trans",
    "muslim",
    "jewish",
    "christian",
    "black",
    "white",
    "asian",
    "mexican",
    "immigrant",
    "women",
    "disabled",
)


def mentions(text: str, term: str) -> bool:
    """Whether `text` names `term` (also in its plural form: "muslims", "women")."""
    forms = {term, term + "s", term + "es"}
    if term == "women":
        forms |= {"woman"}
    if term == "immigrant":
        forms |= {"immigrants", "migrant", "migrants"}
    return _pattern(forms).search(text) is not None


def find_identity(text: str) -> list[str]:
    """Every identity term named in `text`, lower-cased, in order."""
    return [m.group(1).lower() for m in ANY_PATTERN.finditer(text)]
