"""Training-only augmentation: sentences of this project's own writing, and identity swaps.

Why: in the labelled sources identity words co-occur with abuse (tweets collected by hostile
keywords, forum hate), so a model learns "names a group" -> toxic. Two remedies, both measured in
MODEL_CARD.md:

- **Templates** (own writing, never copied from an evaluation set): benign and positive sentences
  that name an identity, negated hate and counter-speech (non-toxic), and hate, threats and
  insults that use no profanity (toxic). Each identity-bearing template is filled with many
  terms, so every term appears on both sides of the label. Optionally, frames of insults aimed
  at one person, the same frames with praise, and insulting words about things.
- **Counterfactual swaps**: a copy of a training row with every identity term replaced by another
  term of the same kind, keeping the label, so no single term carries the label by itself.

The behavioural suite used for evaluation (`training/functional_suite.py`) is written separately,
with other sentence frames, so its figures are not a replay of these templates.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ml_prod_api.providers.lexicon import ABUSIVE_WORDS
from training.identity import (
    ADJECTIVE_PATTERN,
    ALL_ADJECTIVES,
    ALL_GROUPS,
    GROUP_PATTERN,
    IDENTITY_ADJECTIVES,
    IDENTITY_GROUPS,
    IDENTITY_NOUNS,
)
from training.perturb import METHODS

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

# One person named by an identity noun ("a lesbian", "a jew"), in benign and in hateful sentences,
# so the noun form alone says nothing about the label.
BENIGN_NOUN = (
    "my landlady is a {noun} and the kindest person on our street",
    "as a {noun} i was asked to speak at the school assembly",
    "the new head chef is a {noun} from up north",
    "i sat next to a {noun} on the train and we talked about football",
    "she's a proud {noun} and a brilliant lawyer",
    "he became the first {noun} to chair the science committee",
    "a {noun} like me just wants a quiet life and a good book",
    "our club's best goalkeeper is a {noun}",
)
TOXIC_NOUN = (
    "never let a {noun} near your kids",
    "a {noun} has no business living on our street",
    "i would never hire a {noun}, they are all lazy frauds",
    "the only good {noun} is one who keeps quiet",
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

# Threats aimed at the reader, said without profanity: frames x violent verbs. The frames are not
# the behavioural suite's (a test in tests/ checks no filled template is one of its cases).
THREAT_FRAMES = (
    "i swear i will {verb} you",
    "don't make me {verb} you",
    "try that one more time and i will {verb} you",
    "i can't wait to {verb} you",
    "we know where you work and we will {verb} you",
    "if i ever see you again i'll {verb} you",
    "i'm gonna {verb} you when you least expect it",
    "tomorrow i'll come round to your place and {verb} you",
    "i would happily {verb} you and your whole family",
    "keep it up and i'll {verb} you for real",
    "before the week is out i will {verb} you",
    "people will read about how i {verb} you",
)
THREAT_VERBS = (
    "kill",
    "hurt",
    "stab",
    "shoot",
    "strangle",
    "choke",
    "beat up",
    "punch",
    "murder",
    "drown",
    "hang",
    "kick the life out of",
    "slit the throat of",
    "bury",
    "torture",
    "run over",
)
THREATS_WITHOUT_VERB = (
    "your days are numbered",
    "you won't live to see next summer",
    "i'll make you disappear and nobody will find you",
    "you're dead meat",
    "enjoy your last week on earth",
    "i've got a bullet with your name on it",
    "they'll need dental records to identify you",
    "you'll be sleeping with the fishes",
    "your kids won't be safe either",
    "we're coming for you and your family",
)
# Insults of one person without profanity: frames x insulting nouns and adjectives (toxic), the
# same frames with praise (non-toxic), so "you are a ..." does not decide the label by itself,
# and the insulting adjectives aimed at things and ideas (non-toxic: this service flags abuse of
# people). The frames are not the behavioural suite's (a test in tests/ checks no filled
# template is one of its cases).
INSULT_FRAMES = (
    "you are {noun}",
    "honestly, you're {noun}",
    "everyone in the office thinks you're {noun}",
    "only {noun} like you would post something like this",
    "you have always been {noun} and you always will be",
    "every word you type shows you're {noun}",
    "your brother told me you're {noun}, and he was right",
    "that guy in the video is {noun}",
)
INSULT_ADJ_FRAMES = (
    "i've never met anyone as {adj} as you",
    "you're the most {adj} person in this thread",
    "how can one person be this {adj}",
    "you are {adj} and your posts prove it",
    "my teacher is so {adj}, everyone says so",
)
INSULT_NOUNS = (
    "an idiot",
    "a moron",
    "a fool",
    "an imbecile",
    "a halfwit",
    "a buffoon",
    "a nitwit",
    "a dimwit",
    "a simpleton",
    "a cretin",
    "a dunce",
    "a numbskull",
    "a coward",
    "a liar",
    "a creep",
    "a leech",
    "a lowlife",
    "a failure",
    "a joke",
    "a hypocrite",
    "a snake",
    "a nobody",
)
INSULT_ADJECTIVES = (
    "stupid",
    "dumb",
    "clueless",
    "useless",
    "worthless",
    "ugly",
    "hideous",
    "gutless",
    "idiotic",
    "insufferable",
    "contemptible",
    "braindead",
    "dense",
    "thick",
    "spineless",
    "revolting",
)
PRAISE_NOUNS = (
    "a genius",
    "a hero",
    "a legend",
    "a star",
    "a sweetheart",
    "a gem",
    "a champion",
    "a delight",
    "a treasure",
    "an expert",
    "a natural",
    "a good friend",
)
PRAISE_ADJECTIVES = (
    "brilliant",
    "kind",
    "clever",
    "generous",
    "funny",
    "talented",
    "thoughtful",
    "lovely",
    "wise",
    "brave",
    "honest",
    "patient",
)
# Non-toxic: the insulting adjectives about a thing or an idea, not a person.
THING_FRAMES = (
    "this {thing} is so {adj}",
    "the {thing} is {adj}, if you ask me",
    "honestly, the {thing} was {adj}",
    "i think that {thing} is {adj}",
)
THINGS = (
    "plan",
    "rule",
    "movie",
    "app",
    "idea",
    "law",
    "design",
    "game",
    "policy",
    "menu",
)

# Non-toxic: the same violent verbs in idioms, sport, cooking and reports of a threat.
VIOLENT_WORDS_BENIGN = (
    "this heat is killing me",
    "i could kill for a coffee right now",
    "you killed it on stage tonight",
    "i'm going to beat you at chess this time",
    "we will crush them in the final on sunday",
    "the comedian absolutely murdered that set",
    "my legs hurt after the hike",
    "i'll shoot you an email tomorrow morning",
    "beat the eggs and sugar for two minutes",
    "stab the potatoes with a fork to see if they're done",
    "i'm dying to see the new film",
    "that joke killed me",
    "the villain threatens to kill the hero in the second act",
    "police arrested a man who threatened to shoot his neighbour",
    "she got a message saying she would be hurt and reported it",
    "the photographer shot the bridge at sunset",
    "we're going to smash our sales target this quarter",
    "he choked in the last minute of the match",
    "the article describes threats sent to local journalists",
    "i'll drown my sorrows in ice cream tonight",
    "let's kill some time before the train",
    "that workout destroyed me, in a good way",
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


# The templates' kinds. A threat or an insult aimed at one person, named by no identity, is toxic
# but no identity attack; the group templates' hate is one.
THREAT_OR_INSULT = "threat or insult"
INSULT_OF_A_PERSON = "insult of a person"
PERSONAL_ABUSE = (THREAT_OR_INSULT, INSULT_OF_A_PERSON)


@dataclass(frozen=True)
class TemplateRow:
    text: str
    label: int
    kind: str


def template_rows(
    seed: int, terms_per_template: int = 24, insults: bool = False
) -> list[TemplateRow]:
    """Every template filled with a sample of identity terms (all terms for the short lists).

    The insult frames (`INSULT_FRAMES`, `INSULT_ADJ_FRAMES`, `THING_FRAMES`) come only with
    `insults`: in the shipped MiniLM's recipe (`scripts/train_minilm.sh`), not the tfidf's.
    """
    rng = random.Random(seed)
    rows: list[TemplateRow] = []

    def fill(
        templates: Sequence[str], slot: str, terms: Sequence[str], label: int, kind: str
    ) -> None:
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
    fill(BENIGN_NOUN, "noun", IDENTITY_NOUNS, 0, "benign identity mention")
    fill(TOXIC_NOUN, "noun", IDENTITY_NOUNS, 1, "hate without profanity")
    for text in THREATS_AND_INSULTS + THREATS_WITHOUT_VERB:
        rows.append(TemplateRow(text, 1, THREAT_OR_INSULT))
    for frame in THREAT_FRAMES:
        for verb in rng.sample(THREAT_VERBS, 6):
            rows.append(TemplateRow(frame.replace("{verb}", verb), 1, THREAT_OR_INSULT))
    if insults:
        for frame in INSULT_FRAMES:
            for noun in rng.sample(INSULT_NOUNS, 6):
                rows.append(TemplateRow(frame.replace("{noun}", noun), 1, INSULT_OF_A_PERSON))
            for noun in rng.sample(PRAISE_NOUNS, 4):
                rows.append(TemplateRow(frame.replace("{noun}", noun), 0, "praise of a person"))
        for frame in INSULT_ADJ_FRAMES:
            for adj in rng.sample(INSULT_ADJECTIVES, 6):
                rows.append(TemplateRow(frame.replace("{adj}", adj), 1, INSULT_OF_A_PERSON))
            for adj in rng.sample(PRAISE_ADJECTIVES, 4):
                rows.append(TemplateRow(frame.replace("{adj}", adj), 0, "praise of a person"))
        for frame in THING_FRAMES:
            for adj in rng.sample(INSULT_ADJECTIVES, 6):
                thing = rng.choice(THINGS)
                text = frame.replace("{adj}", adj).replace("{thing}", thing)
                rows.append(TemplateRow(text, 0, "abuse of things and ideas"))
    for text in VIOLENT_WORDS_BENIGN:
        rows.append(TemplateRow(text, 0, "violent words, no threat"))
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

    def replace(
        match: re.Match[str], families: dict[str, tuple[str, ...]], everything: tuple[str, ...]
    ) -> str:
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


def obfuscated_copy(text: str, rng: random.Random) -> str | None:
    """`text` with up to two words respelt as an evader or a hurried typist would; None if no word
    is long enough.

    Abusive words are the ones chosen when the text has any (that is where evaders hide), other
    words otherwise; rows of both labels are copied, so a spelling trick alone says nothing.
    """
    words = list(_RESPELLABLE.finditer(text))
    if not words:
        return None
    abusive = [m for m in words if m.group(0).lower() in _ABUSIVE]
    pool = abusive or words
    how_many = min(len(pool), rng.choice((1, 1, 2)))
    chosen = sorted(rng.sample(pool, how_many), key=lambda m: m.start())
    out, last = [], 0
    for match in chosen:
        method = rng.choice(_RESPELL_METHODS)
        out.append(text[last : match.start()])
        out.append(method(match.group(0), rng))
        last = match.end()
    out.append(text[last:])
    respelt = "".join(out)
    return respelt if respelt != text else None


def has_abuse(text: str) -> bool:
    """Whether `text` holds profanity, a slur or a personal insult (the strong words only)."""
    return _STRONG_ABUSE.search(text) is not None


_RESPELLABLE = re.compile(r"[A-Za-z]{4,}")
_ABUSIVE = frozenset(ABUSIVE_WORDS)
_RESPELL_METHODS = tuple(METHODS.values())
# Words that are abusive wherever they occur (unlike "kill" or "hate", which the broad lexicon
# holds for the tfidf feature): what a post labelled "not sexist" or "no hate" may still carry.
_STRONG_ABUSE = re.compile(
    r"\b(?:(?:mother)?f+u+c*k+\w*|sh[i1]t\w*|bullshit|bitch\w*|cunts?|twats?|dick(?:head)?s?|"
    r"cocksucker\w*|pricks?|puss(?:y|ies)|(?:dumb|jack|smart)?ass(?:hole)?s?|arseholes?|"
    r"bastards?|slut\w*|whor\w*|skanks?|fag\w*|dykes?|trann(?:y|ies)|nigg\w*|coons?|spics?|"
    r"wetbacks?|chinks?|gooks?|kikes?|ragheads?|towelheads?|beaners?|retard\w*|idiot\w*|"
    r"moron\w*|imbeciles?|cretins?|dimwit\w*|stupid\w*|dumb\w*|losers?|scum\w*|douche\w*|"
    r"wankers?|tossers?|stfu|gtfo)\b",
    re.IGNORECASE,
)
