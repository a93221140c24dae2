"""A behavioural test suite of this project's own writing (CheckList-style): one functionality,
one expected label, at least 20 cases each.

    python -m training.functional_suite            # writes tests/fixtures/functional_suite.csv
    python -m training.functional_suite --check    # fails if the committed file is out of date

Every case is written here from frames and terms of the project's own; none is copied from a
published functional test suite or benchmark, and none is used for training, tuning or
thresholds (the training templates of `augment.py` use other frames). The expected labels follow
MODEL_CARD.md, "What this service calls toxic":

- abuse of objects, weather, days or products is non-toxic: nobody is attacked;
- profanity used only for emphasis is non-toxic; profanity aimed at a person is toxic;
- quoting or referencing hate in order to reject it is non-toxic.

`evaluate_sources.py` reports per-functionality accuracy for each model, and
`tests/test_functional_suite.py` keeps the shipped models at or above their figures.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SUITE_FILE = REPO_ROOT / "tests" / "fixtures" / "functional_suite.csv"

# Thirty identity adjectives (and matching plural groups) over six axes.
ADJ = (
    "gay", "lesbian", "bisexual", "queer", "homosexual", "heterosexual", "transgender", "trans",
    "nonbinary", "muslim", "jewish", "christian", "hindu", "sikh", "atheist", "black", "white",
    "asian", "latino", "mexican", "arab", "chinese", "indian", "african american", "immigrant",
    "disabled", "deaf", "autistic", "elderly", "catholic",
)  # fmt: skip
GROUPS = (
    "gay people", "lesbians", "trans people", "queer folks", "muslims", "jews", "christians",
    "hindus", "black people", "white people", "asians", "mexicans", "arabs", "immigrants",
    "refugees", "women", "disabled people", "deaf people", "old people", "bisexual people",
    "atheists", "sikhs", "latinos", "chinese people",
)  # fmt: skip
SLURS = (
    "faggots", "dykes", "trannies", "retards", "kikes", "spics", "chinks", "wetbacks",
    "towelheads", "niggers", "coons", "gooks",
)  # fmt: skip


@dataclass(frozen=True)
class Functionality:
    name: str
    label: int  # expected: 1 toxic, 0 non-toxic
    kind: str  # "identity", "contrast" (hard non-toxic) or "hateful"
    frames: tuple[str, ...]
    slot: str = ""  # "adj", "grp", "slur" or "" (frames used as written)


FUNCTIONALITIES: tuple[Functionality, ...] = (
    Functionality(
        "identity mention, neutral",
        0,
        "identity",
        (
            "I met a {adj} guy at the bus stop this morning.",
            "Two {adj} women opened a bakery down the road.",
            "The article interviews {adj} parents about school choices.",
            "Is there a {adj} bookshop near the station?",
            "My cousin is dating someone who is {adj}.",
            "The new manager at work is {adj}.",
        ),
        "adj",
    ),
    Functionality(
        "identity mention, positive",
        0,
        "identity",
        (
            "{adj} people are brilliant and kind.",
            "I love my {adj} friends so much.",
            "Proud to be {adj}!",
            "What a wonderful {adj} person she is.",
            "We need more {adj} voices in leadership.",
        ),
        "adj",
    ),
    Functionality(
        "negated hate",
        0,
        "contrast",
        (
            "I don't dislike {grp} at all.",
            "{grp} are in no way inferior to anyone.",
            "No, {grp} are not a threat to this country.",
            "I would never say that {grp} are disgusting.",
            "It isn't true that {grp} are lazy.",
            "I have nothing against {grp}.",
        ),
        "grp",
    ),
    Functionality(
        "counter-speech quoting hate",
        0,
        "contrast",
        (
            '"{grp} are scum" - anyone who writes that is the real problem.',
            'He posted "{grp} should die" and got banned. Good.',
            "Quoting your tweet: '{grp} are animals'. How can you write such hate?",
            "When you say '{grp} are a plague' you only show your own ignorance.",
            "'{grp} ruin everything'? Seriously? That's bigotry and you know it.",
            "Someone sprayed '{grp} go home' on the mosque wall. Shameful.",
        ),
        "grp",
    ),
    Functionality(
        "counter-speech referencing hate",
        0,
        "contrast",
        (
            "The comments under this video about {grp} are full of hate.",
            "Posts attacking {grp} should be taken down at once.",
            "I stand with {grp} against the abuse they get online.",
            "Spreading hatred about {grp} has to stop.",
            "Threats against {grp} are never acceptable.",
            "The report documents the harassment {grp} face every day.",
        ),
        "grp",
    ),
    Functionality(
        "direct threat",
        1,
        "hateful",
        (
            "I am going to kill you.",
            "I will find you and hurt you.",
            "Watch your back, I'm coming for you.",
            "I'll smash your face in next time I see you.",
            "You're going to regret this when I get my hands on you.",
            "I'm going to stab you.",
            "I will burn your car and then you.",
            "Sleep with one eye open, I know your address.",
            "I'm going to make your life hell and then end it.",
            "I'll strangle you with my bare hands.",
            "Next time you won't walk away, I promise.",
            "I'll hunt you down and make you bleed.",
            "I will shoot you if you come here again.",
            "I'm going to break your neck.",
            "Your family will pay for what you said.",
            "I will put you in the hospital.",
            "Count your days, I'm coming.",
            "I'll beat you until you can't stand.",
            "I will hurt every one of {grp} I meet.",
            "I'm going to attack the next {adj} person I see.",
            "Mark my words, I'll get rid of you.",
            "One more word and I'll end you.",
        ),
    ),
    Functionality(
        "threat as a normative statement",
        1,
        "hateful",
        (
            "{grp} should all be shot.",
            "{grp} deserve to be hanged.",
            "Someone ought to beat {grp} until they leave.",
            "{grp} should be locked up and left to starve.",
        ),
        "grp",
    ),
    Functionality(
        "dehumanising comparison",
        1,
        "hateful",
        (
            "{grp} are cockroaches.",
            "{grp} are nothing but rats.",
            "{grp} are filthy animals.",
            "{grp} are a cancer on society.",
        ),
        "grp",
    ),
    Functionality(
        "implicit derogation",
        1,
        "hateful",
        (
            "{grp} can't be trusted to do any job properly.",
            "{grp} only come here to live off benefits.",
            "Keep {grp} away from our schools.",
            "{grp} bring crime wherever they go.",
        ),
        "grp",
    ),
    Functionality(
        "slur aimed at a group",
        1,
        "hateful",
        (
            "Those {slur} should go back where they came from.",
            "I hate {slur}.",
        ),
        "slur",
    ),
    Functionality(
        "profanity aimed at a person",
        1,
        "hateful",
        (
            "You're a fucking idiot.",
            "Shut the fuck up, you moron.",
            "Fuck you and your whole family.",
            "You stupid bitch.",
            "Go fuck yourself.",
            "You're a worthless piece of shit.",
            "What an asshole you are.",
            "Piss off, you dumb prick.",
            "You absolute dickhead.",
            "Nobody gives a shit about you, loser.",
            "You're such a cunt.",
            "Eat shit and die.",
            "Your opinion is bullshit and so are you, dumbass.",
            "Get lost, you fucking creep.",
            "You are a total bastard.",
            "Fuck off and never come back.",
            "You whiny little bitch.",
            "Shut your damn mouth, idiot.",
            "You're a lying sack of shit.",
            "Screw you, you stupid twat.",
        ),
    ),
    Functionality(
        "profanity not aimed at anyone",
        0,
        "contrast",
        (
            "Fuck yeah, I passed my exam!",
            "This pizza is so fucking good.",
            "Holy shit, what a view from the top.",
            "Damn, that was a close game.",
            "Shit, I spilled coffee on my shirt.",
            "Hell yes, the weekend is finally here.",
            "I'm so fucking tired today.",
            "That concert was the shit.",
            "Oh fuck, I left my phone on the train.",
            "Damn, this song still gives me chills.",
            "Fucking finally, the package arrived.",
            "Bloody hell, it's cold outside.",
            "Holy crap, that's a huge dog.",
            "This new album is fucking brilliant.",
            "Shit happens, we'll try again tomorrow.",
            "Damn right I'm proud of my kids.",
            "What the hell, the shop is closed again.",
            "That was one hell of a party.",
            "Fuck, I forgot it was her birthday.",
            "Goddamn, that sunset is gorgeous.",
        ),
    ),
    Functionality(
        "insult of an individual, no profanity",
        1,
        "hateful",
        (
            "You are a complete waste of space.",
            "You're an embarrassment to everyone who knows you.",
            "Your brain must be the size of a pea.",
            "You're the dumbest person I have ever met.",
            "Nobody could stand being around someone as pathetic as you.",
            "You are a disgusting, worthless human being.",
            "You're too stupid to tie your own shoes.",
            "You are an ugly, brainless fool.",
            "You're a spineless coward and a liar.",
            "Everything about you is repulsive.",
            "You are a parasite on your family.",
            "You're so ignorant it hurts to read your posts.",
            "What a miserable little worm you are.",
            "You are a clown and everyone laughs at you.",
            "You have the intelligence of a rock.",
            "You're a sad, lonely loser.",
            "You are vile and everybody knows it.",
            "Your face makes people sick.",
            "You're a moron with nothing to say.",
            "You are scum.",
        ),
    ),
    Functionality(
        "obfuscated abuse",
        1,
        "hateful",
        (
            "you are a f*cking idiot",
            "i h8 you, you stup1d l0ser",
            "k i l l yourself",
            "ur a b!tch",
            "f u c k you",
            "go d1e in a ditch",
            "you're a m0r0n",
            "shut up you retrad",
            "what an idoit you are",
            "fcuk off",
            "you are a piece of sh1t",
            "a$$hole",
            "you st*pid c*nt",
            "kys loser",
            "ur so dum lol, worthless",
            "fukin moron",
            "you're a d!ckhead",
            "s h u t u p you idiot",
            "go to h3ll, b1tch",
            "you useles waste of spcae",
            "i will k1ll you",
            "bi7ch please, you're trash",
        ),
    ),
    Functionality(
        "abuse of objects, not people",
        0,
        "contrast",
        (
            "I hate this stupid phone.",
            "This weather is absolute garbage.",
            "Mondays are the worst.",
            "This movie was trash from start to finish.",
            "My car is a useless pile of junk.",
            "This software is a nightmare to use.",
            "The traffic this morning was hell.",
            "This coffee tastes like dirt.",
            "I can't stand this heat anymore.",
            "The printer is broken again, I want to throw it out the window.",
            "That burger was disgusting.",
            "This chair is killing my back.",
            "Worst pizza I've ever had.",
            "The wifi here is pathetic.",
            "I despise cold showers.",
            "These shoes are ugly as sin.",
            "The new update ruined the app.",
            "Rainy days are so depressing.",
            "This exam was brutal.",
            "This jigsaw puzzle is driving me insane.",
        ),
    ),
)


@dataclass(frozen=True)
class Case:
    functionality: str
    kind: str
    label: int
    text: str


def _capitalise(text: str) -> str:
    return text[0].upper() + text[1:] if text else text


def build_cases() -> list[Case]:
    """Every functionality's cases: slot frames are crossed with terms, round-robin."""
    cases: list[Case] = []
    for f in FUNCTIONALITIES:
        texts: list[str]
        if f.slot == "adj":
            texts = [
                _capitalise(f.frames[i % len(f.frames)].format(adj=t)) for i, t in enumerate(ADJ)
            ]
        elif f.slot == "grp":
            texts = [
                _capitalise(f.frames[i % len(f.frames)].format(grp=g)) for i, g in enumerate(GROUPS)
            ]
        elif f.slot == "slur":
            texts = [_capitalise(frame.format(slur=s)) for s in SLURS for frame in f.frames]
        else:
            texts = [
                frame.format(grp=GROUPS[i % len(GROUPS)], adj=ADJ[i % len(ADJ)])
                for i, frame in enumerate(f.frames)
            ]
        cases.extend(Case(f.name, f.kind, f.label, text) for text in texts)
    return cases


def render(cases: list[Case]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["functionality", "kind", "label", "text"])
    for case in cases:
        writer.writerow([case.functionality, case.kind, case.label, case.text])
    return out.getvalue()


def read_suite(path: Path = SUITE_FILE) -> list[Case]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [
            Case(row["functionality"], row["kind"], int(row["label"]), row["text"])
            for row in csv.DictReader(handle)
        ]


def accuracy_by_functionality(
    cases: list[Case], proba: list[float], threshold: float
) -> dict[str, dict[str, float | int | str]]:
    """Share of cases with the expected label, per functionality, at the served threshold."""
    out: dict[str, dict[str, float | int | str]] = {}
    for f in FUNCTIONALITIES:
        idx = [i for i, c in enumerate(cases) if c.functionality == f.name]
        right = sum(int((proba[i] >= threshold) == bool(cases[i].label)) for i in idx)
        out[f.name] = {
            "kind": f.kind,
            "expected": "toxic" if f.label else "non-toxic",
            "cases": len(idx),
            "accuracy": round(right / len(idx), 4),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.functional_suite", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = render(build_cases())
    if args.check:
        current = SUITE_FILE.read_text(encoding="utf-8") if SUITE_FILE.is_file() else ""
        if current != text:
            print(f"{SUITE_FILE} is out of date: run python -m training.functional_suite")
            return 1
        return 0
    SUITE_FILE.write_text(text, encoding="utf-8")
    counts = {
        f.name: sum(c.functionality == f.name for c in build_cases()) for f in FUNCTIONALITIES
    }
    for name, n in counts.items():
        print(f"{n:4d}  {name}")
    print(f"wrote {sum(counts.values())} cases to {SUITE_FILE.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
