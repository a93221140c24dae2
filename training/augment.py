"""Training-only augmentation: sentences of this project's own writing, and identity swaps.

Why: in the labelled sources identity words co-occur with abuse (tweets collected by hostile
keywords, forum hate), so a model learns "names a group" -> toxic. Two remedies, both measured in
MODEL_CARD.md:

- **Templates** (own writing, never copied from an evaluation set): benign and positive sentences
  that name an identity, negated hate and counter-speech (non-toxic), and hate, threats and
  insults that use no profanity (toxic). Each identity-bearing template is filled with many
  terms, so every term appears on both sides of the label.
- **Counterfactual swaps**: a copy of a training row with every identity term replaced by another
  term of the same kind, keeping the label, so no single term carries the label by itself.

The behavioural suite used for evaluation (`training/functional_suite.py`) is written separately,
with other sentence frames, so its figures are not a replay of these templates.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from training.identity import (
    ADJECTIVE_PATTERN,
    ALL_ADJECTIVES,
    ALL_GROUPS,
    GROUP_PATTERN,
    IDENTITY_ADJECTIVES,
    IDENTITY_GROUPS,
)

BENIGN_ADJ = (
    "my neighbour is {adj} and bakes the best bread on our street",
    "as a {adj} person i spend most weekends hiking with my dog",
    "the {adj} community centre is hosting a book fair on saturday",
    "i am {adj} and proud of it",
    "we had a long chat with some {adj} students about their research",
    "my best friend since primary school is {adj}",
    "being {adj} is one part of who i am, not all of it",
    "many {adj} doctors and nurses work at the local hospital",
    "the documentary follows three {adj} families through one year",
    "she wrote an essay about growing up {adj} in a small town",
    "our team has {adj} engineers, designers and testers",
    "the festival welcomed {adj} artists from all over the country",
    "he told his parents he is {adj} and they hugged him",
    "i'm a {adj} woman and i work night shifts as a nurse",
    "what do {adj} families usually cook for the holidays?",
    "it's nice to see more {adj} characters on tv these days",
    "the survey asked {adj} voters what they think about housing",
    "a {adj} man helped me carry my groceries up the stairs today",
    "the library has a new shelf of books by {adj} authors",
    "my {adj} coworker gave a brilliant talk at the meeting",
    "there is a {adj} student group at my university",
    "the {adj} couple next door invited us for dinner",
    "she is {adj}, funny and the smartest person i know",
    "is it ok to ask a {adj} friend about their traditions?",
    "our {adj} teacher made maths fun for the whole class",
    "support for {adj} youth has grown a lot in the last decade",
)

BENIGN_GROUP = (
    "{grp} have lived in this city for generations",
    "{grp} deserve the same rights as everyone else",
    "{grp} are my neighbours, my coworkers and my friends",
    "a lot of {grp} volunteered at the food bank this winter",
    "the museum has an exhibit on the history of {grp} in this region",
    "i admire how {grp} in my town organised the fundraiser",
    "{grp} contribute so much to our culture",
    "the report looks at how {grp} are treated by landlords",
)

# Non-toxic: rejects, reports or denies hate; it may quote a hateful claim in order to refute it.
COUNTER_SPEECH = (
    "it's wrong to say {grp} are animals, and i'll keep saying so",
    "i will never agree that {grp} are inferior",
    "nobody should be told that {grp} are worthless",
    "i don't hate {grp}, i never have",
    "{grp} are not criminals, whatever that post claims",
    "people who say {grp} should leave this country are spreading hate",
    "if you think {grp} are less than human you need to talk to some",
    "i reported the account that said {grp} were vermin",
    "there is no excuse for threatening {grp}",
    "hating {grp} makes no sense to me",
    "the sign said '{grp} out', which is plain bigotry",
    "i'm tired of hearing that {grp} are dirty, it's a lie",
    "stop calling {grp} parasites, it's dehumanising",
    "saying {grp} can't be trusted is a stereotype, not a fact",
    "my uncle claims {grp} ruin everything, and i told him he was wrong",
    "i do not think {grp} are a threat to anyone",
)

TOXIC_GROUP = (
    "{grp} are vermin and should be removed",
    "{grp} are a disease on this country",
    "every single one of those {grp} should be deported",
    "{grp} are subhuman",
    "i can't stand {grp}, they ruin every place they move to",
    "{grp} should never be allowed to vote",
    "never trust {grp}, they are born liars",
    "the world would be better off without {grp}",
    "{grp} belong in cages",
    "{grp} are too stupid to run their own lives",
    "someone should teach those {grp} a lesson they won't forget",
    "{grp} are parasites living off our taxes",
    "get these {grp} out of our neighbourhood before they infect it",
    "i wish all {grp} would just disappear",
)

TOXIC_ADJ = (
    "{adj} people are a plague on society",
    "no {adj} person should be allowed near children",
    "{adj} people are nothing but animals",
    "you can always tell a {adj} person by how much they lie",
)

# Toxic without an identity term and without profanity: threats and insults aimed at a person.
THREATS_AND_INSULTS = (
    "i know where you live and i'm coming for you tonight",
    "you'd better watch your back, i'll make you pay for this",
    "keep talking and i'll break every bone in your body",
    "people like you deserve to be beaten",
    "i'm going to burn your house down with you in it",
    "one day someone will put you in the ground and i hope it's me",
    "say that again and you won't wake up tomorrow",
    "i'll make sure you never walk again",
    "you should be shot for writing this",
    "it would be a good thing if you got hit by a bus",
    "you are a pathetic excuse for a human being",
    "you're too dumb to understand anything, go away",
    "nobody likes you, you worthless little loser",
    "you're a disgusting creep and everyone knows it",
    "what a brainless clown you are",
    "your mother should have raised you better, you rat",
    "you are the ugliest, most useless person on this site",
    "go crawl back under your rock, freak",
)

# Non-toxic: profanity for emphasis, aimed at no one; and abuse of objects or situations.
NON_TOXIC_OTHER = (
    "holy shit, that concert was amazing",
    "this fucking weather is perfect for the beach",
    "damn, i love this song so much",
    "that was a hell of a good game last night",
    "i'm so fucking proud of my little sister",
    "shit, i forgot my keys again",
    "this printer is a useless piece of junk",
    "i hate mondays, they always drag on",
    "my laptop is so slow it's driving me crazy",
    "the traffic today was absolutely horrible",
    "this soup tastes disgusting, never ordering it again",
    "fuck yes, we finally won the league",
    "the new update is garbage, it broke everything",
    "i hate how cold it gets in january",
)


# Words that name an identity far less often than they mean something else ("an old car").
NOT_SWAPPED = frozenset({"old", "young", "straight"})


@dataclass(frozen=True)
class TemplateRow:
    text: str
    label: int
    kind: str


def template_rows(seed: int, terms_per_template: int = 24) -> list[TemplateRow]:
    """Every template filled with a sample of identity terms (all terms for the short lists)."""
    rng = random.Random(seed)
    rows: list[TemplateRow] = []

    def fill(templates: Sequence[str], slot: str, terms: Sequence[str], label: int, kind: str):
        for template in templates:
            chosen = rng.sample(list(terms), min(terms_per_template, len(terms)))
            for term in chosen:
                text = template.replace("{" + slot + "}", term)
                rows.append(TemplateRow(text, label, kind))

    fill(BENIGN_ADJ, "adj", ALL_ADJECTIVES, 0, "benign identity mention")
    fill(BENIGN_GROUP, "grp", ALL_GROUPS, 0, "benign identity mention")
    fill(COUNTER_SPEECH, "grp", ALL_GROUPS, 0, "counter-speech and negation")
    fill(TOXIC_GROUP, "grp", ALL_GROUPS, 1, "hate without profanity")
    fill(TOXIC_ADJ, "adj", ALL_ADJECTIVES, 1, "hate without profanity")
    for text in THREATS_AND_INSULTS:
        rows.append(TemplateRow(text, 1, "threat or insult"))
    for text in NON_TOXIC_OTHER:
        rows.append(TemplateRow(text, 0, "profanity for emphasis, abuse of objects"))
    return rows


def _family(term: str, families: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    lowered = term.lower()
    for terms in families.values():
        if lowered in terms:
            return terms
    return ()


def swap_identities(text: str, rng: random.Random) -> str | None:
    """`text` with each identity term replaced by another of its kind; None if it names none.

    A term is swapped within its own axis most of the time and across axes otherwise, so both
    "gay" <-> "lesbian" and "gay" <-> "muslim" pairs are seen.
    """
    changed = False

    def replace(match, families: dict[str, tuple[str, ...]], everything: tuple[str, ...]) -> str:
        nonlocal changed
        term = match.group(1)
        if term.lower() in NOT_SWAPPED:
            return str(term)
        pool = _family(term, families) if rng.random() < 0.6 else everything
        options = [t for t in pool if t != term.lower()]
        if not options:
            return str(term)
        changed = True
        return rng.choice(options)

    out = GROUP_PATTERN.sub(lambda m: replace(m, IDENTITY_GROUPS, ALL_GROUPS), text)
    out = ADJECTIVE_PATTERN.sub(lambda m: replace(m, IDENTITY_ADJECTIVES, ALL_ADJECTIVES), out)
    return out if changed else None
