"""Street addresses for ``pii_detectors``: a house number next to a street-type word, in the orders countries write
them, with what follows of the same address (flat, city, state, postcode) masked along.

"221B Baker Street", "1600 Pennsylvania Avenue NW, Washington, DC 20500", "42 Elm St., Apt 4B, Springfield, IL 62704",
"10 Downing St, London SW1A 2AA" (number, name, type); "12 rue de la Paix, 75002 Paris" (number, type, name);
"Calle Mayor 3, 28013 Madrid", "Via Roma 10" (type, name, number); "Hauptstraße 5, 10115 Berlin", "Kalverstraat 1"
(a name ending in its type, number); "PO Box 1234", "Postfach 10 11 12" (a box number, which is where a person's
mail goes). A postcode, a city or a street name alone is no address, and neither is a street without a number.

A count reads like an address ("3 Main Street businesses", "Via Twitter 5 people", "Platz 3 belegt"): what follows
decides. The end of the text or line, punctuation, a joining word ("and", "in") or the rest of an address keep it;
any other word keeps it only where a cue before it says an address is meant ("I live at", "Adresse:", "at"), or where
a city or postcode follows the street. A year after "in", "since", "by" ... ("In 1969 Abbey Road was released") and a
time ("at 5 PM Drive home") are no house numbers, and "St." inside a sentence ("100 Elm St. houses") does not end it.
Not found: addresses without a street-type word ("Unter den Linden 5", "One World Trade Center"; "1 Infinite Loop"
is found, "2 Broadway" is not), a flat written before its street ("Flat 2, 12 Oak Road": the street is found), an
all lower-case English address, and scripts other than Latin.
"""

from __future__ import annotations

import re
from typing import Final

from guardrail.classifiers.pii_base import Detector, contains_lower, has_digit

__all__ = ["ADDRESS_DETECTORS"]

_CAP = r"[A-ZÀ-ÖØ-Þ]"  # a capital letter (Latin-1: names of streets in the languages below)
_NUMBER = r"\d(?<![\w.,/:#$€£-]\d)\d{0,4}(?:[A-Za-z](?!\w))?(?:[-–/]\d{1,5}[A-Za-z]?)?"
_TYPE_EN = (
    r"(?i:street|st|avenue|ave|av|road|rd|lane|ln|drive|dr|boulevard|blvd|way|court|ct|place|pl|terrace|terr|close"
    r"|crescent|cres|square|sq|parkway|pkwy|highway|hwy|circle|cir|trail|trl|row|mews|gardens|grove|walk|alley"
    r"|plaza|loop|pike)"
)
# number first: "221B Baker Street" (a name of one to four words, then the type), "12 rue de la Paix" (the type,
# then the name)
_NUMBER_FIRST = re.compile(
    rf"""
    {_NUMBER},?[ ]{{1,3}}
    (?:
        (?:(?:{_CAP}[\w'’.-]*|\d{{1,3}}(?:st|nd|rd|th))[ ]{{1,2}}){{1,4}}?{_TYPE_EN}(?![\w'’-])\.?
        (?:[ ](?:N|S|E|W|NE|NW|SE|SW)(?![\w'’-]))?
      | (?:rue|Rue|avenue|Avenue|av\.|boulevard|Boulevard|bd|Bd|place|chemin|Chemin|allée|Allée|impasse|Impasse|quai
          |Quai|cours|route|passage|square)[ ]
        (?:(?:de|du|des|la|le|les|Saint|Sainte)[ ]|[dl]['’]){{0,3}}{_CAP}[\w'’-]*(?:[ ]{_CAP}[\w'’-]*){{0,2}}
    )
    """,
    re.VERBOSE,
)
_PARTICLE = r"(?:de|del|de[ ]la|dels|la|las|los|el|di|dei|della|delle|degli|do|da|dos|das)"
# type first, number last: "Calle Mayor 3", "Via Roma 10", "Rua Augusta, 100"; lower case where the type is no
# English word ("vivo en la calle Mayor 3")
_TYPE_FIRST = re.compile(
    rf"""
    (?<![\w/])
    (?:[Cc]alle|C/|[Aa]venida|Avda\.?|[Pp]aseo|Plaza|[Cc]arrer|[Rr]onda|[Tt]ravesía|Via|[Vv]iale|[Pp]iazza|[Pp]iazzale
      |[Cc]orso|Largo|[Vv]icolo|[Rr]ua|[Tt]ravessa|[Pp]raça|[Aa]lameda|[Ee]strada)
    [ ]{{1,2}}(?:{_PARTICLE}[ ]){{0,2}}{_CAP}[^\W\d_]*(?:['’-][^\W\d_]+)*
    (?:[ ](?:{_PARTICLE}[ ]){{0,2}}{_CAP}[^\W\d_]*(?:['’-][^\W\d_]+)*){{0,3}}
    ,?[ ]{{1,2}}(?:n\.?[º°o][ ]?)?\d{{1,4}}[A-Za-z]?(?![\w,.]\d)
    """,
    re.VERBOSE,
)
# a name that ends in its type, then the number: "Hauptstraße 5", "Karl-Marx-Allee 12", "Hauptstr. 5",
# "Kalverstraat 1", "Drottninggatan 5"
_SUFFIXES = (
    "straße", "strasse", "str.", "weg", "allee", "gasse", "platz", "ring", "damm", "ufer", "chaussee", "steig", "pfad",
    "markt", "straat", "gracht", "laan", "plein", "kade", "singel", "dijk", "vej", "gade", "gatan", "vägen", "veien",
)  # fmt: skip
_COMPOUND = re.compile(
    rf"""
    [A-ZÄÖÜ](?<![\w-].)[^\W\d_]*(?:-[^\W\d_]+)*\.?
    (?i:{"|".join(f"(?<={re.escape(s)})" for s in _SUFFIXES)})
    ,?[ ]{{1,2}}\d{{1,4}}[a-zA-Z]?(?:[ ]?[-–/][ ]?\d{{1,4}}[a-z]?)?(?![\w,.]\d)
    """,
    re.VERBOSE,
)
# type words that are everyday words alone ("Platz 3" is third place, "Ring 5" a boxing round): a street only after
# a name ("Kölner Ring 5", "Alter Markt 3")
_BARE_TYPES: Final[frozenset[str]] = frozenset(("weg", "ring", "platz", "markt", "ufer", "damm", "steig", "pfad"))
_WORD_BEFORE = re.compile(r"[A-ZÄÖÜ][^\W\d_]+[ ]$")
# English words ending in a street suffix: "-ring" after a vowel ("Offering", "Roaring", "Monitoring"; "Kaiserring",
# "Sachsenring" and "Kurt-Schumacher-Ring" keep theirs), "spring", "string", "bring", and a few "-gade"/"-kade"
_ENGLISH_WORD = re.compile(r"(?:[aeiouy]ring|spring|^string|^bring|brigade|renegade|blockade)$")

_CITY = rf"{_CAP}[^\W\d_]+(?:[ -]{_CAP}[^\W\d_]+){{0,2}}"
# what may follow an address and belongs to it, each tried where the last one ended
_MORE = re.compile(
    rf"""
    \.?,?[ ]{{1,2}}
    (?:
        (?i:apt|apartment|suite|ste|unit|flat|floor|fl|room|rm|bldg|building)\.?[ ]?\#?[ ]?[A-Za-z0-9-]{{1,6}}(?!\w)
      | \#[ ]?[A-Za-z0-9-]{{1,6}}(?!\w)
      | (?:{_CITY},?[ ]{{1,2}})?[A-Z]{{2}}[ ]{{1,2}}\d{{5}}(?:-\d{{4}})?(?!\w)           # Springfield, IL 62704
      | (?:{_CITY},?[ ]{{1,2}})?(?:[A-Z]{{2}}[ ]{{1,2}})?[A-Z]\d[A-Z][ ]?\d[A-Z]\d(?!\w) # Toronto, ON M5V 3L9
      | (?:{_CITY},?[ ]{{1,2}})?[A-Z]{{1,2}}\d[A-Z\d]?[ ]?\d[A-Z]{{2}}(?!\w)          # London SW1A 2AA
      | {_CITY},?[ ]{{1,2}}(?:NSW|VIC|QLD|WA|SA|TAS|ACT|NT)[ ]{{1,2}}\d{{4}}(?!\w)       # Sydney NSW 2000
      | {_CITY},[ ]{{1,2}}[A-Z]{{2}}(?![\w'’-])                                        # Springfield, IL
      | (?:[A-Z]{{1,2}}-)?\d{{4,5}}(?:[ ]?[A-Z]{{2}})?[ ]{{1,2}}{_CITY}                 # 10115 Berlin, 1012 AB Adam
    )
    """,
    re.VERBOSE,
)
# words that may follow an address in a sentence ("I live at 42 Elm Street and ..."); any other word reads as a count
# ("3 Main Street businesses") unless a cue before says an address is meant
_AFTER = re.compile(
    r"[ \t]*(?:$|[\r\n.,;:!?)\]}\"'’”/|-]|(?:and|or|in|near|at|on|is|was|where|which|that|with|for|to|from|but|so|since"
    r"|until|then|und|oder|in|bei|ist|y|o|en|et|ou|à|e|ed|di|de|em|por|para|für|nach|zu|seit|apt|suite|unit|floor"
    r")(?![^\W\d_]))",
    re.IGNORECASE,
)
_CUE_BEFORE = re.compile(
    r"(?:address|addr|live[sd]?|living|located|location|ship(?:ping|ped)?|deliver(?:y|ed)?|send|mail(?:ing)?|moved"
    r"|residence|resides|reside|home|office|visit|adresse|anschrift|wohne|wohnt|dirección|direccion|domicilio|vivo"
    r"|vive|habite|habitons|indirizzo|abito|abita|endereço|moro|mora)\b[^\n]{0,30}$|\bat[ ]$",
    re.IGNORECASE,
)


# "In 1969 Abbey Road was released", "by 2030 Main Street will ...": a year, not a house number
_YEAR_BEFORE = re.compile(
    r"(?i:\b(?:in|since|by|until|till|before|after|during|from|of|circa|around|en|im|seit|dans|depuis|nel|desde|em))"
    r"[ ]+$"
)
_YEAR = re.compile(r"(?:1[0-9]|20)\d\d")
# "at 5 PM Drive home": a time, not a house number
_TIME = re.compile(r"[ ]{1,3}(?:[AaPp]\.?[Mm]\.?)(?![\w'’-])")


def _address(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    start, end = m.span()
    number_first = m.re is _NUMBER_FIRST
    if number_first:
        digits = re.match(r"\d+", m.group())
        if digits is not None and _TIME.match(text, start + len(digits.group())):
            return None
    if m.re is _COMPOUND:
        word = m.group().split(" ")[0].rstrip(",").lower()
        alone = word.rstrip(".") in _BARE_TYPES or word in ("straße", "strasse", "str.", "allee", "gasse")
        before = _WORD_BEFORE.search(text, max(0, start - 40), start) if alone else None
        if before is not None:
            start = before.start()  # "Berliner Straße 5"
        elif word.rstrip(".") in _BARE_TYPES:
            return None
        if _ENGLISH_WORD.search(word):
            return None  # "Spring 2024", "Engineering 101", "The Roaring 20s": English words that end like a street
    after = end  # where the words that follow the address begin
    if text[end - 1] == "." and _MORE.match(text, end - 1) is None:
        end -= 1  # "42 Elm St." ends a sentence; the full stop is not the street's
        # ... unless a small word follows ("100 Elm St. houses"): an abbreviation inside a sentence, that word decides
        after = end + 1 if _LOWER_NEXT.match(text, end + 1) else end
    whole = end
    while (more := _MORE.match(text, end)) is not None:
        end = after = more.end()
    if end > whole:
        return start, end  # with its city or postcode it is an address whatever follows
    cue = _CUE_BEFORE.search(text, max(0, start - 60), start) is not None
    if not cue and _AFTER.match(text, after) is None:
        return None
    year = number_first and _YEAR.fullmatch(m.group().split(" ", 1)[0].rstrip(","))
    if year and not cue and _YEAR_BEFORE.search(text, max(0, start - 12), start) is not None:
        return None
    return start, end


_LOWER_NEXT = re.compile(r"[ \t]+[a-zà-ÿ]")


# "PO Box 1234", "P.O. Box 42, Springfield, IL 62704", "Postfach 10 11 12", "Apartado de Correos 45": a box number
# is where a person's mail goes, and no count or model number is written so
_PO_BOX = re.compile(
    r"""
    (?<![\w.])
    (?i:p\.?[ ]?o\.?[ ]?box|post[ ]office[ ]box|postfach|apartado(?:[ ]de[ ]correos)?|casella[ ]postale|caixa[ ]postal
      |bo[iî]te[ ]postale)
    [ ]?\#?[ ]?\d{1,8}(?:[ ]\d{2,3}){0,3}(?![\w.,]\d)
    """,
    re.VERBOSE,
)


def _po_box(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    end = m.end()
    while (more := _MORE.match(text, end)) is not None:
        end = more.end()
    return m.start(), end


def _gate(text: str) -> bool:
    return has_digit(text)


# the type words of the type-first and compound streets, lower-cased: a text with a digit but none of them (most
# texts) skips those two scans
_TYPE_FIRST_STEMS = (
    "calle", "c/", "avenida", "avda", "paseo", "plaza", "carrer", "ronda", "travesía", "via", "viale", "piazza",
    "corso", "largo", "vicolo", "rua", "travessa", "praça", "alameda", "estrada",
)  # fmt: skip


_BOX_STEMS = ("box", "post", "apartado", "caixa", "boîte", "boite")
_type_first, _compound, _box = (contains_lower(*stems) for stems in (_TYPE_FIRST_STEMS, _SUFFIXES, _BOX_STEMS))


ADDRESS_DETECTORS: tuple[Detector, ...] = (
    Detector("address", _NUMBER_FIRST, _address, _gate),
    Detector("address", _TYPE_FIRST, _address, lambda text: has_digit(text) and _type_first(text)),
    Detector("address", _COMPOUND, _address, lambda text: has_digit(text) and _compound(text)),
    Detector("address", _PO_BOX, _po_box, lambda text: has_digit(text) and _box(text)),
)
