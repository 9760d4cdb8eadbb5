"""Person names for ``pii_detectors``: found only where the words just before them say a name stands there.

No pattern tells a name from any other capitalised word, so the detector is a list of cues ("my name is", "Name:",
"Dear ...,", "Hi ...,", an honorific, a sign-off, "contact ... at <e-mail or phone>") and a strict reading of what
follows: one to four capitalised words (accented letters, "Anne-Marie", "O'Brien", an initial with or without its
full stop, "van"/"de" between two words), cut at the first word that is not one. Precision is the goal, as for the
other cue-word detectors (``pii_phone``): a missed name leaks one name, while a detector that masked "Dear Sir or
Madam", "Dr. Pepper" or "Name: string" would make answers worse on every such prompt. So a salutation, greeting or
sign-off counts only when the name ends its line (or phrase), a field label only at the start of a line with a
capital ("name: build" is YAML), "contact ... at" only when an e-mail address or phone number follows, and an
honorific not in a question about history ("Who was Dr. Martin Luther King?"). Not found: a name without a cue
("Jane said"), "I'm Jane", "the name is Bond", a bare "Customer:" or "Patient:" (chat transcripts are written so), a
JSON "name" key (a package's or a step's name as often as a person's), names in all capitals (except after a field
label) and names in non-Latin scripts.

Each cue is a regex of its own, with a gate of its own, that finds the cue and the up to six words after it, ending
with the words (nothing after them can fail and make it backtrack); which of the words are a name is decided in Python
on the rare hit, with checks of what follows that cannot backtrack either.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from guardrail.classifiers.pii_base import Detector, contains, contains_lower, lowered

__all__ = ["NAME_DETECTORS"]

_L = r"[^\W\d_]"  # a letter of any script
# a word of a name as the regex sees it: an initial ("F."), or letters joined by an apostrophe or a hyphen
_WORD = rf"(?:{_L}\.(?!{_L})|{_L}+(?:['’-]{_L}+)*)"
# Honorifics are case-sensitive ("MS" is a disease or Microsoft, "dr" a unit); "Sr." is left out (Senior: "Sr.
# Engineer"), "Doctor" too ("Doctor Appointments").
_HONORIFIC = r"(?:Mrs|Mr|Ms|Miss|Mx|Dr|Prof|Professor|Mme|Mlle|Herr|Frau|Sra|Srta|Sig(?=\.))"  # "Sig Sauer" is a gun
_SPACE = r"[ \t]"
# Each cue is a regex of its own with a gate of its own (below): one alternation of them all was tried at every
# character of every text, and its gate (any digit, "dr", "car", "ms", ...) let nearly every text through.
_CUES: Final[dict[str, str]] = {
    "intro": rf"""(?<!{_L})(?i:
        (?:my|his|her|their)[ ]+(?:(?:full|first|last|real|legal|maiden|given|family|middle)[ ]+)?
            (?:name(?:[ ]+(?:is|was)|['’]s)|surname[ ]+(?:is|was))
      | i(?:['’]m|[ ]am)[ ]+(?:called|named)
      | me[ ]+llamo | mi[ ]+nombre[ ]+es | je[ ]+m['’][ ]?appelle | mon[ ]+nom[ ]+est | ich[ ]+hei(?:ß|ss)e
      | mein[ ]+name[ ]+ist | mi[ ]+chiamo | il[ ]+mio[ ]+nome[ ]+è | (?:o[ ]+)?meu[ ]+nome[ ]+é | me[ ]+chamo
    )(?![\w'’]){_SPACE}{{0,4}}[:,]?{_SPACE}{{0,4}}""",
    "label": rf"""(?m:^)[ \t>]{{0,8}}(?:[-*•][ \t]{{1,3}})?(?:
        (?:Full|First|Last|Given|Family|Middle|Maiden|Legal|Patient|Customer|Client|Contact|Employee|Student
          |Applicant|Guest|Passenger|Cardholder|Account[ ]holder|Card[ ]holder)[ ](?:[Nn]ame)
      | Name|NAME|FULL[ ]NAME|Surname|SURNAME|Attn\.?|Attention|Nombre|Apellidos?|Nom|Prénom|Vorname|Nachname|Nome
      | Cognome|Sobrenome
    ){_SPACE}{{0,4}}:{_SPACE}{{0,4}}""",
    "field": rf"""(?<![\w-])["']?(?i:
        (?:full|first|last|given|family|middle|customer|patient|contact|holder)[_-]?name|surname
    )["']?{_SPACE}{{0,4}}[:=]{_SPACE}{{0,4}}["']?""",
    # a sign-off before a name; the everyday words among them ("best", "cheers", "merci") only with a comma
    "signoff": rf"""(?<!{_L})(?:(?i:
        signed|sincerely|regards|best[ ]regards|kind[ ]regards|warm[ ]regards|best[ ]wishes|yours[ ]sincerely
      | yours[ ]truly|yours[ ]faithfully|respectfully|cordially|many[ ]thanks|thanks|thank[ ]you|cordialement
      | atentamente|saludos|un[ ]saludo|cordiali[ ]saluti|distinti[ ]saluti|atenciosamente|mit[ ]freundlichen[ ]grüßen
      | viele[ ]grüße|liebe[ ]grüße|beste[ ]grüße|herzliche[ ]grüße|freundliche[ ]grüße|all[ ]the[ ]best
      | bien[ ]à[ ]vous|un[ ]abrazo|abraços|cumprimentos
    ){_SPACE}{{0,4}}(?:[,:!.-]{_SPACE}{{0,4}}(?:\r?\n{_SPACE}{{0,8}}){{0,2}}|(?:\r?\n{_SPACE}{{0,8}}){{1,2}})
      | (?i:best|cheers|warmly|take[ ]care|gracias|merci|danke|grazie|obrigad[oa]|bisous|saluti|ciao)
        {_SPACE}{{0,4}},{_SPACE}{{0,4}}(?:\r?\n{_SPACE}{{0,8}}){{0,2}})""",
    # a salutation or a greeting: the name must end its phrase ("Dear John,", "Hi Jane," "Hello Jane!")
    "dear": rf"""(?<!{_L})(?:Dear|Dearest|DEAR|Estimad[oa]|Querid[oa]|Cher|Chère|Lieber?|Sehr[ ]geehrter?|Car[oa]
        |Gentile|Prezad[oa]){_SPACE}{{1,4}}""",
    "greet": rf"(?<!{_L})(?:Hi|Hello|Hey|Hola|Bonjour|Hallo|Ciao|Olá|Oi){_SPACE}{{1,4}}",
    "beside": rf"""(?<!{_L})(?i:
        contact|e-?mail|mail|call|phone|ring|text|write[ ]to|reach|message|ping|ask[ ]for|cc|bcc|from|to|reply-to
      | contacta|contactez|kontaktieren|chiama|ligue[ ]para|llama[ ]a
    ){_SPACE}{{0,4}}:?{_SPACE}{{1,4}}""",
    "honorific": rf"(?<![\w.]){_HONORIFIC}\.?{_SPACE}{{1,4}}",
}
_NAME = rf"(?:{_HONORIFIC}\.?{_SPACE}{{1,4}}){{0,2}}(?P<name>{_WORD}(?:[ ]{_WORD}){{0,5}})"
_KIND: Final[dict[re.Pattern[str], str]] = {
    re.compile(rf"(?P<{kind}>{cue}){_NAME}", re.VERBOSE): kind for kind, cue in _CUES.items()
}

# Capitalised words that follow the cues but name no one, anywhere in the run of words (a word of one of these ends
# the name there): salutations to a group or a role, words a form or a code sample puts after "Name:", and words a
# German sentence capitalises ("ich heiße Sie willkommen", "Liebe Grüße,").
_NOT_NAMES: Final[frozenset[str]] = frozenset(
    """
    sir sirs madam madame mesdames messieurs ma'am all everyone everybody anyone someone nobody team teams customer
    customers client clients friend friends colleague colleagues hiring manager managers recruiter valued user users
    member members reader readers diary applicant applicants candidate candidates recipient recipients support sales
    service services admin administrator staff parent parents student students guest guests visitor visitors partner
    partners folks fellow fellows board committee editor editors reviewer reviewers owner owners accounts payable
    billing finance department dept office reception corp inc ltd llc gmbh company
    string str text integer int number float double boolean bool object array list dict optional required null nil
    none undefined true false unknown anonymous n/a na tbd todo your yours our my the a this that it is not no yes
    here there what who why how i me you we they he she his her test example sample placeholder foo bar baz name
    first last full enter please value type field id firstname lastname fullname username charfield textfield column
    varchar sie ihnen du dich euch damen herren kollegen kolleginnen freunde eltern grüße gruesse gruß señor señora
    signor signora president speaker chairman chair secretary ambassador emeritus irrelevant
    mrs mr ms miss mx dr prof professor mme mlle herr frau sra srta sig dear
    """.casefold().split()
)
# Words that name no one as the first word after a cue ("Dr. Pepper", "Mrs. Doubtfire", "Name: New Project", "Text
# Mom at ...", "Thank you!\nBye") but are surnames, or parts of names, after another word: "Hans Scholl", "Anna
# Martens", "George Best" and "Nguyễn Văn An" are masked whole.
_NOT_FIRST: Final[frozenset[str]] = frozenset(
    """
    pepper martens oetker scholl seuss strange dre evil doom octopus universe america world right clean robot mud
    legion lord god santa justice mayor an bean strangelove doubtfire pac-man freeze jekyll hyde marvel saigon potato
    magoo incredible fantastic peanut frankenstein zhivago house do new important notice urgent warning note deploy
    build status description project bye best mom mum dad mother father grandma grandpa mama papa doctor
    doc nurse teacher coach boss
    """.casefold().split()
)
# a sign-off alone is no name: a list of them ("Sincerely,\nWarmly,\nPeace,") read each as the name after the last
# ("Sincerely,\nPeace Okafor" is a name: more words follow)
_SIGN_OFFS: Final[frozenset[str]] = frozenset(
    """
    sincerely regards warmly peace cordially respectfully thanks cheers love yours hugs xoxo greetings blessings
    cordialement atentamente saludos
    """.casefold().split()
)
# after a greeting ("Hi ...,"), the assistant or the world is greeted more often than a person
_NOT_GREETED: Final[frozenset[str]] = frozenset(
    """
    chatgpt gpt claude gemini bard copilot siri alexa cortana bing google assistant bot there world guys mate buddy
    pal dude bro kitty again mundo welt mondo monde darling honey sweetie babe love
    """.casefold().split()
)
# lower-case words that may stand between two words of a name ("Ludwig van Beethoven", "Charles de Gaulle")
_PARTICLES: Final[frozenset[str]] = frozenset((
    "van", "von", "der", "den", "de", "del", "della", "di", "da", "du", "dos", "das", "do", "la", "le", "ter", "ten",
    "bin", "ibn", "al",
))  # fmt: skip
_MAX_WORDS = 4  # capitalised words: Spanish and Portuguese names often have two surnames
_POSSESSIVE = re.compile(r"['’]s$")
# part of a longer token: an address, a call or an index in code ("Column(String)"), an attribute ("User.name")
_GLUED = re.compile(r"\.?[\w@/\\<>&=+#%(\[]")  # "<": what masking leaves there must glue as the value did
# after a salutation or a sign-off the name ends its line or phrase: "Dear John," (not "a Dear John letter"). Each
# alternative starts with something other than a blank, so giving back blanks never retries them (linear).
_ENDS_PHRASE = re.compile(r"[ \t]*(?:[,:;!]|\.[ \t]*(?:\r?\n|$)|\r?\n|$)")
_ENDS_LINE = re.compile(r"[ \t]*(?:[,;!(]|\.[ \t]*(?:\r?\n|$)|\r?\n|$)")
# "contact Jane Doe at jane@example.com", "call Bob on +44 20 7946 0958", "From: Jane Doe <jane@example.com>"
_BESIDE_TAIL = re.compile(
    r"[ \t]{0,4},?[ \t]{0,4}(?:(?i:at|on|via|by|:|-)[ \t]{0,4})?[<(\[]?"
    r"(?:[\w.%+-]{1,64}@[A-Za-z0-9-]{1,63}\.[A-Za-z0-9.-]{2,63}|\+?\(?\d(?:[ ().-]{0,2}\d){6,14})"
)
# "Mulholland Dr. Los Angeles": a house number and a street name before "Dr" make it the street, not a doctor (a
# number that starts a word: a digit inside a key, "AKIAQ3EG...", is none, and masking the key must not change that)
_STREET_BEFORE = re.compile(r"(?<![\w-])\d[\w-]*[ ]+(?:[A-Z][\w'’.-]*[ ]+){1,3}$")
# "Who was Dr. Martin Luther King?": a question about a figure of history, not a person of the conversation
_HISTORY_BEFORE = re.compile(
    r"(?i:\bwho[ ]+(?:was|were)|quién[ ]+(?:fue|era)|qui[ ]+(?:était|fut)|wer[ ]+war|chi[ ]+(?:era|fu)"
    r"|quem[ ]+(?:foi|era))[ ]+$"
)


def _is_name_word(word: str, capitals: bool, first: bool, greeted: bool) -> bool:
    low = word.casefold()
    if (
        not word[0].isupper()
        or low in _NOT_NAMES
        or (first and (low in _NOT_FIRST or (greeted and low in _NOT_GREETED)))
    ):
        return False
    if len(word) == 2 and word[1] == ".":  # an initial
        return True
    if len(word) < 2:
        return False
    return any(c.islower() for c in word) or capitals  # all capitals only after a field label ("NAME: JANE DOE")


def _name_end(text: str, m: re.Match[str], kind: str) -> int | None:
    """Where the name after the cue ends (None: no name there): the leading words that read as a name."""
    labelled = kind in ("label", "field")
    pos = m.start("name")
    end = None
    words = 0
    for raw in m.group("name").split(" "):
        word_end = pos + len(raw)
        if labelled and text.startswith(":", word_end):
            break  # "Name: John Smith Age: 42": the next label
        if _GLUED.match(text, word_end):
            break  # part of a longer token: "Berlinjane@example.com", "Jane2", "Doe_x"
        possessive = _POSSESSIVE.search(raw)
        word = raw[: possessive.start()] if possessive else raw
        if end is not None and (raw in _PARTICLES or (len(raw) == 1 and raw.isupper())):
            pass  # "van", or an initial without its full stop ("John A Smith", "Seán Ó Súilleabháin"): kept only if a
            # name word follows, as the end moves only on one
        elif word and _is_name_word(word, labelled, end is None, kind == "greet"):
            end = pos + len(word)
            words += 1 if len(word) > 2 or word[-1] != "." else 0
            if possessive or words == _MAX_WORDS:
                break  # "Dr. Smith's office"
        else:
            break
        pos = word_end + 1
    return end if words else None


def _person(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    kind = _KIND[m.re]
    end = _name_end(text, m, kind)
    if end is None:
        return None
    start = m.start("name")
    if text[start:end].casefold() in _SIGN_OFFS:
        return None
    if kind in ("dear", "greet") and _ENDS_PHRASE.match(text, end) is None:
        return None
    if kind == "signoff" and _ENDS_LINE.match(text, end) is None:
        return None
    if kind == "beside" and _BESIDE_TAIL.match(text, end) is None:
        return None
    if kind == "field" and m.group("field")[-1] in "\"'" and not text.startswith(m.group("field")[-1], end):
        return None  # "first_name": "Jane Doe" is the whole value, not its start
    if kind == "honorific":
        cue = m.start()
        if text.startswith("Dr", cue) and _STREET_BEFORE.search(text, max(0, cue - 60), cue) is not None:
            return None
        if _HISTORY_BEFORE.search(text, max(0, cue - 20), cue) is not None:
            return None
    return start, end


# Gates: each cue contains one of its stems (lower-cased, or as written where the cue is case-sensitive); most texts
# hold none of most of them, and a substring test is far cheaper than a scan.
_PHONE_LIKE = re.compile(r"\d(?:[ ().-]{0,2}\d){6}")
_LABEL = contains_lower("name", "nom", "attn", "attention", "apellido")
_GATES: Final[dict[str, Callable[[str], bool]]] = {
    "intro": contains_lower("name", "call", "llamo", "nombre", "appelle", "nom", "heiß", "heiss", "chiamo", "chamo"),
    "label": lambda t: ":" in t and _LABEL(t),
    "field": lambda t: (":" in t or "=" in t) and "name" in lowered(t),
    "signoff": contains_lower(
        "sign",
        "sincer",
        "regard",
        "wish",
        "yours",
        "respectful",
        "cordial",
        "thank",
        "atenta",
        "saludo",
        "saluti",
        "atencios",
        "grüß",
        "best",
        "cheers",
        "warm",
        "care",
        "gracias",
        "merci",
        "danke",
        "grazie",
        "obrigad",
        "bisous",
        "ciao",
        "abraço",
        "abrazo",
        "cumprimento",
        "à vous",
    ),
    "dear": contains(
        "Dear", "DEAR", "Estimad", "Querid", "Cher", "Chère", "Lieb", "geehrt", "Car", "Gentile", "Prezad"
    ),
    "greet": contains("Hi", "Hello", "Hey", "Hola", "Bonjour", "Hallo", "Ciao", "Olá", "Oi"),
    "beside": lambda t: "@" in t or _PHONE_LIKE.search(t) is not None,
    "honorific": contains("Mr", "Ms", "Mx", "Miss", "Dr", "Prof", "Mme", "Mlle", "Herr", "Frau", "Sra", "Srta", "Sig."),
}

NAME_DETECTORS: tuple[Detector, ...] = tuple(
    Detector("person", regex, _person, _GATES[kind]) for regex, kind in _KIND.items()
)
