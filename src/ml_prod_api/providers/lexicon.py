"""Word lists for text normalisation and the model's lexicon feature.

Written for this project (not copied from a dataset or another lexicon). Two lists:

- `ABUSIVE_WORDS`: profanity, insults, slurs and abuse, with their common inflections and spellings.
  Curated by hand, partly from the words a first model trained on the training split weighed most
  towards toxic (identity words such as "gay" or "muslim" were left out on purpose: naming a group
  is not abuse, and the model already over-weighs them, see MODEL_CARD.md).
- `COMMON_WORDS`: frequent English words. Together with `ABUSIVE_WORDS` it is the vocabulary used to
  recover masked words (`th*t`, `st*pid`) and to split spaced letters that ran into each other
  (`a f u c k` -> `a fuck`).

The order matters where a masked word fits several entries: abusive words come first (an asterisk
in `wh*re` is there to hide `whore`), then common words, each list roughly by frequency.
"""

from __future__ import annotations

__all__ = ["ABUSIVE_WORDS", "COMMON_WORDS", "VOCABULARY"]


def _words(block: str) -> tuple[str, ...]:
    """The whitespace-separated words of `block`, each once, in order."""
    return tuple(dict.fromkeys(block.split()))


ABUSIVE_WORDS: tuple[str, ...] = _words(
    """
    fuck fucking fucked fucker fuckers fucks fuckin fuckn fucken fuckery fuckface fuckhead
    fuckwit motherfucker motherfuckers motherfucking mf mfs stfu gtfo wtf
    shit shits shitty shitting shitted shithead shitheads shithole shitshow bullshit horseshit
    shyt shat dipshit apeshit batshit
    bitch bitches bitchy bitching bitchass biatch
    cunt cunts twat twats
    dick dicks dickhead dickheads dickhole cock cocks cocksucker cocksuckers prick pricks
    pussy pussies puss
    ass asses asshole assholes arse arsehole arseholes dumbass dumbasses jackass jackasses
    smartass badass fatass lardass kissass butt butthole buttholes
    bastard bastards damn damned dammit goddamn goddamned crap crappy craps
    piss pissed pissing pisses
    slut sluts slutty whore whores whorish hoe hoes ho hos skank skanks skanky
    tramp harlot hooker hookers
    fag fags faggot faggots faggy dyke dykes tranny trannies homo homos
    nigger niggers nigga niggas niggah niggaz nig nigs nicca niccas nigguh negro negroes
    coon coons spic spics wetback wetbacks chink chinks gook gooks kike kikes raghead ragheads
    towelhead beaner beaners cracker crackers redneck rednecks hillbilly wigger wigga
    retard retards retarded tard tards libtard libtards spaz mongoloid
    idiot idiots idiotic moron morons moronic imbecile imbeciles cretin dimwit nitwit halfwit
    stupid stupidity stupidest dumb dumber dumbest dummy dunce fool fools foolish ignorant
    ignoramus clueless brainless brainwashed braindead dimwitted dense
    loser losers lame pathetic useless worthless hopeless incompetent incapable inept
    disgusting disgusted disgrace disgraceful gross nasty filthy vile repulsive revolting
    ugly hideous fat fatty fatso obese
    liar liars lier lying lies hypocrite hypocrites hypocritical hypocrisy fraud frauds fake
    phony crook crooks crooked cheat cheater cheaters scam scammer con conman
    coward cowards cowardly spineless gutless weak wimp wimps sissy pansy
    traitor traitors treason treasonous traitorous sellout turncoat
    scum scumbag scumbags lowlife lowlifes trash trashy garbage rubbish sleaze sleazy slimy slime
    creep creeps creepy pervert perverts perv pervy pedo pedos pedophile pedophiles paedo
    predator predators rapist rapists molester
    rape raped raping rapes
    sex sexy porn porno pornhub boobs boob tits titties nude naked penis vagina dildo horny
    jerk jerks jerkoff wanker wankers tosser douche douchebag douchebags douchey tool
    clown clowns buffoon buffoons joke clownish circus
    racist racists racism bigot bigots bigoted bigotry sexist sexists misogynist xenophobe
    nazi nazis fascist fascists fascism commie commies communist communists marxist
    thug thugs gangster criminal criminals crooks hoodlum
    psycho psychos psychopath sociopath sociopaths narcissist narcissistic lunatic lunatics
    maniac maniacs crazy crazies insane nuts nutjob nutcase nutty deranged demented unhinged
    delusional mental mentally sick sicko sickos twisted weirdo weirdos freak freaks
    evil wicked demon demons devil satan satanic monster monsters beast animal animals savage
    savages vermin rat rats cockroach cockroaches pig pigs swine snake snakes parasite
    parasites leech leeches dog dogs
    hate hated hates hateful hating hater haters
    kill killed killing kills killer murder murderer murderers die dies died death dead
    shoot shot hang hanged lynch burn drown choke stab punch slap beat beating smack
    destroy destroyed ruin ruined bomb
    shut shutup stfu suck sucks sucked sucker suckers sucking blow blows
    witch witches hag hags bimbo bimbos cow cows heifer
    brat brats spoiled snowflake snowflakes crybaby crybabies whiny whining whiner whiners
    arrogant selfish shameless shameful ungrateful dishonest corrupt corruption sleazebag
    annoying obnoxious stinks stinking stink smelly
    libturd conservatard trumptard
    hell hellhole bloody bugger bollocks sod wank piss
    """
)

COMMON_WORDS: tuple[str, ...] = _words(
    """
    the be to of and a in that have i it for not on with he as you do at this but his by
    from they we say her she or an will my one all would there their what so up out if about
    who get which go me when make can like time no just him know take people into year your
    good some could them see other than then now look only come its over think also back
    after use two how our work first well way even new want because any these give day most
    us is are was were been has had did does am being said made got going went gone
    very much more many such own same too here where why while still should may might must
    never always again ever every each both few those off down through before between under
    around against without within during since until another something nothing anything
    everything someone anyone everyone nobody man men woman women girl girls boy boys guy
    guys kid kids child children family friend friends life world country house home school
    money job work thing things place part point right left old young long great little big
    high low last next best better bad worse worst real really true sure sorry please thanks
    thank yes yeah ok okay lol lmao omg love loves loved like likes liked need needs needed
    feel feels felt tell told ask asked call called talk talking try trying help keep let
    put mean means seem seems show shows start stop stand turn run play move live believe
    hold bring happen write sit lose pay meet include continue set learn change lead
    understand watch follow create speak read allow add spend grow open walk win offer
    remember consider appear buy wait serve send expect build stay fall cut reach remain
    suggest raise pass sell require report decide pull vote voted voting control gun guns
    police law president government state states party news media today tonight tomorrow
    yesterday week month night morning game team support american america public power
    war free full late hard easy early sure whole human city water head face hand eye
    body word words name question problem fact case story issue side far away once only
    yet already else though although however maybe perhaps probably actually literally
    """
)

# One vocabulary, abusive words first (see the module docstring), each word once.
VOCABULARY: tuple[str, ...] = tuple(dict.fromkeys(ABUSIVE_WORDS + COMMON_WORDS))
