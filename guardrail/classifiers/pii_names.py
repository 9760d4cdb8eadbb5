"""Person names for ``pii_detectors``: found only where the words just before them say a name stands there.

No pattern tells a name from any other capitalised word, so the detector is a list of cues ("my name is", "Name:",
"Dear ...,", an honorific, a sign-off, "contact ... at <e-mail or phone>") and a strict reading of what follows: one
to four capitalised words (accented letters, "Anne-Marie", "O'Brien", an initial, "van"/"de" between two words),
cut at the first word that is not one. Precision is the goal, as for the other cue-word detectors (``pii_phone``): a
missed name leaks one name, while a detector that masked "Dear Sir or Madam", "Dr. Pepper" or "Name: string" would
make answers worse on every such prompt. So a salutation or sign-off counts only when the name ends its line (or
phrase), a field label only at the start of a line with a capital ("name: build" is YAML), and "contact ... at" only
when an e-mail address or phone number follows. Not found: a name without a cue ("Jane said"), "I'm Jane", "the name
is Bond", names in all capitals (except after a field label) and names in non-Latin scripts.

The regex only finds a cue and the up to six words after it, ending with the words (nothing after them can fail
and make it backtrack); which of the words are a name is decided in Python on the rare hit.
"""

from __future__ import annotations

import re
from typing import Final

from guardrail.classifiers.pii_base import Detector

__all__ = ["NAME_DETECTORS"]

_L = r"[^\W\d_]"  # a letter of any script
# a word of a name as the regex sees it: an initial ("F."), or letters joined by an apostrophe or a hyphen
_WORD = rf"(?:{_L}\.(?!{_L})|{_L}+(?:['’-]{_L}+)*)"
# Honorifics are case-sensitive ("MS" is a disease or Microsoft, "dr" a unit); "Sr." is left out (Senior: "Sr.
# Engineer"), "Doctor" too ("Doctor Appointments").
_HONORIFIC = r"(?:Mrs|Mr|Ms|Miss|Mx|Dr|Prof|Professor|Mme|Mlle|Herr|Frau|Sra|Srta|Sig)"
_SPACE = r"[ \t]"
# a sign-off before a salutation: "Liebe Grüße," is one, "Liebe Anna," the other, and only the first alternative that
# matches at a position is ever tried there
_CUES = rf"""
    (?P<intro>(?<!{_L})(?i:
        (?:my|his|her|their)[ ]+(?:(?:full|first|last|real|legal|maiden|given|family|middle)[ ]+)?
            (?:name(?:[ ]+(?:is|was)|['’]s)|surname[ ]+(?:is|was))
      | i(?:['’]m|[ ]am)[ ]+(?:called|named)
      | me[ ]+llamo | mi[ ]+nombre[ ]+es | je[ ]+m['’][ ]?appelle | mon[ ]+nom[ ]+est | ich[ ]+hei(?:ß|ss)e
      | mein[ ]+name[ ]+ist | mi[ ]+chiamo | il[ ]+mio[ ]+nome[ ]+è | (?:o[ ]+)?meu[ ]+nome[ ]+é | me[ ]+chamo
    )(?![\w'’]){_SPACE}{{0,4}}[:,]?{_SPACE}{{0,4}})
  | (?P<label>(?m:^)[ \t>]{{0,8}}(?:[-*•][ \t]{{1,3}})?(?:
        (?:Full|First|Last|Given|Family|Middle|Maiden|Legal|Patient|Customer|Client|Contact|Employee|Student
          |Applicant|Guest|Passenger|Cardholder|Account[ ]holder|Card[ ]holder)[ ](?:[Nn]ame)
      | Name|NAME|FULL[ ]NAME|Surname|SURNAME|Attn\.?|Attention|Nombre|Apellidos?|Nom|Prénom|Vorname|Nachname|Nome
      | Cognome|Sobrenome
    ){_SPACE}{{0,4}}:{_SPACE}{{0,4}})
  | (?P<field>(?<![\w-])["']?(?i:
        (?:full|first|last|given|family|middle|customer|patient|contact|holder)[_-]?name|surname
    )["']?{_SPACE}{{0,4}}[:=]{_SPACE}{{0,4}}["']?)
  | (?P<signoff>(?<!{_L})(?i:
        signed|sincerely|regards|best[ ]regards|kind[ ]regards|warm[ ]regards|best[ ]wishes|yours[ ]sincerely
      | yours[ ]truly|yours[ ]faithfully|respectfully|cordially|many[ ]thanks|thanks|thank[ ]you|cordialement
      | atentamente|saludos|un[ ]saludo|cordiali[ ]saluti|distinti[ ]saluti|atenciosamente|mit[ ]freundlichen[ ]grüßen
      | viele[ ]grüße|liebe[ ]grüße|beste[ ]grüße
    ){_SPACE}{{0,4}}(?:[,:!.-]{_SPACE}{{0,4}}(?:\r?\n{_SPACE}{{0,8}})?|\r?\n{_SPACE}{{0,8}}))
  | (?P<dear>(?<!{_L})(?:Dear|Dearest|DEAR|Estimad[oa]|Querid[oa]|Cher|Chère|Lieber?|Sehr[ ]geehrter?|Car[oa]|Gentile
        |Prezad[oa]){_SPACE}{{1,4}})
  | (?P<beside>(?<!{_L})(?i:
        contact|e-?mail|mail|call|phone|ring|text|write[ ]to|reach|message|ping|ask[ ]for|cc|bcc|from|to|reply-to
      | contacta|contactez|kontaktieren|chiama|ligue[ ]para|llama[ ]a
    ){_SPACE}{{0,4}}:?{_SPACE}{{1,4}})
  | (?P<honorific>(?<![\w.]){_HONORIFIC}\.?{_SPACE}{{1,4}})
"""
_PERSON = re.compile(
    rf"(?:{_CUES})(?:{_HONORIFIC}\.?{_SPACE}{{1,4}}){{0,2}}(?P<name>{_WORD}(?:[ ]{_WORD}){{0,5}})", re.VERBOSE
)

# Capitalised words that follow the cues but name no one: salutations to a group or a role, words a form or a code
# sample puts after "Name:", fictional and brand "doctors", and words a German sentence capitalises ("ich heiße Sie
# willkommen", "Liebe Grüße,").
_NOT_NAMES: Final[frozenset[str]] = frozenset(
    """
    sir sirs madam madame mesdames messieurs ma'am all everyone everybody anyone someone nobody team teams customer
    customers client clients friend friends colleague colleagues hiring manager managers recruiter valued user users
    member members reader readers diary applicant applicants candidate candidates recipient recipients support sales
    service services admin administrator staff parent parents student students guest guests visitor visitors partner
    partners god lord santa folks fellow fellows board committee editor editors reviewer reviewers owner owners
    string str text integer int number float double boolean bool object array list dict optional required null nil
    none undefined true false unknown anonymous n/a na tbd todo your yours our my the a an this that it is not no yes
    here there what who why how i me you we they he she his her test example sample placeholder foo bar baz name
    first last full enter please value type field id sie ihnen du dich euch damen herren kollegen kolleginnen freunde
    eltern grüße gruesse gruß pepper martens oetker scholl seuss strange dre evil doom octopus universe america world
    right clean robot president speaker chairman chair mayor secretary ambassador justice emeritus mud legion
    irrelevant mrs mr ms miss mx dr prof professor mme mlle herr frau sra srta sig
    """.casefold().split()
)
# lower-case words that may stand between two words of a name ("Ludwig van Beethoven", "Charles de Gaulle")
_PARTICLES: Final[frozenset[str]] = frozenset((
    "van", "von", "der", "den", "de", "del", "della", "di", "da", "du", "dos", "das", "do", "la", "le", "ter", "ten",
    "bin", "ibn", "al",
))  # fmt: skip
_MAX_WORDS = 4  # capitalised words: Spanish and Portuguese names often have two surnames
_POSSESSIVE = re.compile(r"['’]s$")
_GLUED = re.compile(r"[\w@/\\<>&=+#%]")
# after a salutation or a sign-off the name ends its line or phrase: "Dear John," (not "a Dear John letter")
_ENDS_PHRASE = re.compile(r"[ \t]*(?:[,:;!]|\.?[ \t]*(?:\r?\n|$))")
_ENDS_LINE = re.compile(r"[ \t]*(?:[,;!(]|\.?[ \t]*(?:\r?\n|$))")
# "contact Jane Doe at jane@example.com", "call Bob on +44 20 7946 0958", "From: Jane Doe <jane@example.com>"
_BESIDE_TAIL = re.compile(
    r"[ \t]{0,4},?[ \t]{0,4}(?:(?i:at|on|via|by|:|-)[ \t]{0,4})?[<(\[]?"
    r"(?:[\w.%+-]{1,64}@[A-Za-z0-9-]{1,63}\.[A-Za-z0-9.-]{2,63}|\+?\(?\d(?:[ ().-]{0,2}\d){6,14})"
)
# "Mulholland Dr. Los Angeles": a house number and a street name before "Dr" make it the street, not a doctor
_STREET_BEFORE = re.compile(r"\d[\w-]*[ ]+(?:[A-Z][\w'’.-]*[ ]+){1,3}$")


def _is_name_word(word: str, capitals: bool) -> bool:
    if not word[0].isupper() or word.casefold() in _NOT_NAMES:
        return False
    if len(word) == 2 and word[1] == ".":  # an initial
        return True
    if len(word) < 2:
        return False
    return any(c.islower() for c in word) or capitals  # all capitals only after a field label ("NAME: JANE DOE")


def _name_end(text: str, m: re.Match[str], capitals: bool, labelled: bool) -> int | None:
    """Where the name after the cue ends (None: no name there): the leading words that read as a name."""
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
        if raw in _PARTICLES and end is not None:
            pass  # kept only if a name word follows: the end moves only on one
        elif word and _is_name_word(word, capitals):
            end = pos + len(word)
            words += 1 if len(word) > 2 or word[-1] != "." else 0
            if possessive or words == _MAX_WORDS:
                break  # "Dr. Smith's office"
        else:
            break
        pos = word_end + 1
    return end if words else None


def _person(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    labelled = m.start("label") >= 0 or m.start("field") >= 0
    end = _name_end(text, m, capitals=labelled, labelled=labelled)
    if end is None:
        return None
    start = m.start("name")
    if m.start("dear") >= 0 and _ENDS_PHRASE.match(text, end) is None:
        return None
    if m.start("signoff") >= 0 and _ENDS_LINE.match(text, end) is None:
        return None
    if m.start("beside") >= 0 and _BESIDE_TAIL.match(text, end) is None:
        return None
    if m.start("field") >= 0 and m.group("field")[-1] in "\"'" and not text.startswith(m.group("field")[-1], end):
        return None  # "first_name": "Jane Doe" is the whole value, not its start
    street = m.start("honorific") >= 0 and text.startswith("Dr", m.start("honorific"))
    if street and _STREET_BEFORE.search(text, max(0, m.start() - 60), m.start()) is not None:
        return None
    return start, end


# Every cue contains one of these, lower-cased: most texts have none, and a substring test is far cheaper than the
# scan.
_STEMS: Final[tuple[str, ...]] = (
    "name", "nom", "call", "llamo", "appelle", "heiß", "heiss", "chiamo", "chamo", "dear", "estimad", "querid", "cher",
    "lieb", "geehrt", "car", "gentile", "prezad", "mr", "ms", "mx", "miss", "dr", "prof", "mme", "mlle", "herr", "frau",
    "sra", "sig", "attn", "attention", "apellido", "regard", "sincer", "wish", "yours", "respectful", "cordial",
    "thank", "atenta", "salud", "salut", "grüß", "grüße", "@", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9",
)  # fmt: skip


def _gate(text: str) -> bool:
    low = text.lower()
    return any(stem in low for stem in _STEMS)


NAME_DETECTORS: tuple[Detector, ...] = (Detector("person", _PERSON, _person, _gate),)
