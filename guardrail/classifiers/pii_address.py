"""Street addresses for ``pii_detectors``: a house number next to a street-type word, in the orders countries write
them, with what follows of the same address (flat, city, state, postcode) masked along.

"221B Baker Street", "1600 Pennsylvania Avenue NW, Washington, DC 20500", "42 Elm St., Apt 4B, Springfield, IL 62704",
"10 Downing St, London SW1A 2AA" (number, name, type); "12 rue de la Paix, 75002 Paris" (number, type, name);
"Calle Mayor 3, 28013 Madrid", "Via Roma 10" (type, name, number); "Hauptstraße 5, 10115 Berlin", "Kalverstraat 1"
(a name ending in its type, number). A postcode, a city or a street name alone is no address, and neither is a street
without a number.

A count reads like an address ("3 Main Street businesses", "Via Twitter 5 people", "Platz 3 belegt"): what follows
decides. The end of the text or line, punctuation, a joining word ("and", "in") or the rest of an address keep it;
any other word keeps it only where a cue before it says an address is meant ("I live at", "Adresse:", "at"), or where
a city or postcode follows the street. Not found:
addresses without a street-type word ("Unter den Linden 5", "1 Infinite Loop" is, "2 Broadway" is not), PO boxes,
an all lower-case English address, and scripts other than Latin.
"""

from __future__ import annotations

import re
from typing import Final

from guardrail.classifiers.pii_base import Detector, has_digit

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


def _address(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    start, end = m.span()
    if m.re is _COMPOUND:
        word = m.group().split(" ")[0].rstrip(",").lower()
        alone = word.rstrip(".") in _BARE_TYPES or word in ("straße", "strasse", "str.", "allee", "gasse")
        before = _WORD_BEFORE.search(text, max(0, start - 40), start) if alone else None
        if before is not None:
            start = before.start()  # "Berliner Straße 5"
        elif word.rstrip(".") in _BARE_TYPES:
            return None
    if text[end - 1] == "." and _MORE.match(text, end - 1) is None:
        end -= 1  # "42 Elm St." ends a sentence; the full stop is not the street's
    whole = end
    while (more := _MORE.match(text, end)) is not None:
        end = more.end()
    if (  # with its city or postcode it is an address whatever follows
        end == whole and _AFTER.match(text, end) is None and _CUE_BEFORE.search(text, max(0, start - 60), start) is None
    ):
        return None
    return start, end


def _gate(text: str) -> bool:
    return has_digit(text)


ADDRESS_DETECTORS: tuple[Detector, ...] = (
    Detector("address", _NUMBER_FIRST, _address, _gate),
    Detector("address", _TYPE_FIRST, _address, _gate),
    Detector("address", _COMPOUND, _address, _gate),
)
