"""Phone numbers for ``pii_detectors``: international, North American and European national formats, and a number
written as one run of digits where the words just before it say it is one.

The formats are permissive about spacing and strict about digit counts; toll-free numbers (help lines) are kept,
since they belong to organisations. A run of digits has no format that says "phone", so only a cue word before it
(and no count noun after it) makes it one.
"""

from __future__ import annotations

import re

from guardrail.classifiers.pii_base import Detector, contains, has_digit, whole
from guardrail.classifiers.pii_base import compile_ascii as _compile

__all__ = ["PHONE_DETECTORS"]

# Shared edges: not glued to a word, '+', '.', '/' or '-' on the left (dates, versions, paths, ids), and
# not the tail of a space-separated list of numbers ("12 030 1234 5678").
_PHONE_LEFT = r"(?<![\w+./-].)(?<!\d[ ].)"  # placed after the first character
_PHONE_RIGHT = r"(?![\w/]|[-.:]\d)"
_PHONE_INTL = _compile(
    r"\+"
    + _PHONE_LEFT
    + r"""
    (?=[1-9](?:[ .()-]{0,3}\d){7})           # at least 8 digits follow, checked before any work
    [1-9]
    (?:
        \d{7,14}                              # E.164 without spaces: complete, never followed by groups
      | \d{0,6}                               # country code (and possibly more digits)
        (?:[ .-]?\(\d{1,4}\)[ .-]?\d{1,8})?    # "(0)" trunk or "(555)" area code
        (?:[ .-]\d{1,8}){0,6}
    )
    """
    + _PHONE_RIGHT
)
_PHONE_US = _compile(
    r"[(1-9]"
    + _PHONE_LEFT
    + r"""
    (?:
        (?<=1)[ .-](?:\([2-9]\d{2}\)[ ]?|[2-9]\d{2}([ .-]))    # trunk "1-", then the area code
      | (?<=\()[2-9]\d{2}\)[ ]?                                # "(555) "
      | (?<=[2-9])\d{2}([ .-])                                  # "555-"
    )
    \d{3}(?(1)\1|(?(2)\2|[ .-]))\d{4}
    """
    + _PHONE_RIGHT
)
# UK, DE, FR and most European national formats: trunk 0, area code, subscriber groups.
_PHONE_NATIONAL = _compile(
    r"[(0]"
    + _PHONE_LEFT
    + r"""
    (?:
        (?<=\()0(?=[1-9](?:[ /()-]{0,3}\d){8})[1-9]\d{0,4}\)[ ]?
      | (?<=0)(?=[1-9](?:[ /()-]{0,3}\d){8})[1-9]\d{0,4}(?:[ ]?/[ ]?|[ -])
    )
    \d{2,8}(?:[ -]\d{2,8}){0,3}
    """
    + _PHONE_RIGHT
)
_PHONE_FR_DOTS = _compile(r"0" + _PHONE_LEFT + r"[1-9](?:\.\d{2}){4}" + _PHONE_RIGHT)


# A number written as one run of digits ("call me at 4155552671") has no format that says "phone": it is one only
# where the words just before it say so. Without the cue a run of digits is an order, an account or a year.
_PHONE_BARE = _compile(r"\d(?<![\w+./-]\d)\d{7,14}(?![\w/]|[-.:,]\d)")
# The cue is a whole word in Latin script ("recall", "syscall", "callback", "textbook", "hotel" are no cue), and
# between it and the number stand only words that link the two ("call me at", "phone number is", "tel.:",
# "mobile no."), punctuation, or what is written in another script ("我的电话是", "फ़ोन नंबर"): "text length: 12345678",
# "the contact form received 12345678" and "ring size 12345678" are not phone numbers.
_CUE_LATIN = (
    r"phones?|telephone|tel|ph|mob|mobile|cell(?:phone)?|cellular|whats\s?app|sms|fax|call(?:ing)?|ring|"
    r"text(?:ing)?|contact|hotline|helpline|reach|telepon|handy|portable|cellulare|celular|simu|appel\w*|ruf|"
    # the phone word and its number word, not every compound ("Telefonrechnung", "Anrufbeantworter", "Telefonica")
    r"tel[eé]f(?:on[eos]?|ono)?(?:-?(?:nummer|nr|n[uú]mero|number))?|t[eé]l[eé]ph(?:one|oner|onez)?|anruf(?:en|e)?|"
    r"ll[aá]m(?:a(?:me|nos)|ar)|"
    r"điện\s?thoại|"
    # a person's number: "my number", "her number is", "Jane's number", "mi número es", "meine Nummer"
    r"(?:my|his|her|their|our|your|[a-z]+'s|mi|su|tu|mon|ma|son|sa|mein|meine|seine|ihre)\s+"
    r"(?:(?:phone|mobile|cell|private|home|work)\s+)?(?:number|n[uú]m[eé]ro|nummer)"
)
_CUE_OTHER = r"τηλ[εέ]φων|телефон|мобильн|טלפון|هاتف|جوال|تلفن|फ़?ोन|फोन|ফোন|โทร|电话|電話|手机|携帯|전화|핸드폰"
_CUE_LINK = (
    r"me|us|him|her|them|you|at|on|to|via|by|is|are|my|our|your|his|their|the|a|an|or|no|nr|nbr|num|number|"
    r"phone|mobile|cell|line|direct|office|home|work|private|personal|main|whatsapp|sms|text|anytime|directly|"
    r"please|now|here|back|al|au|am|an|unter|sur|de|del|da|do|na|es|est|ist|mi|mon|ma|mein|meine|numéro|número|"
    r"numero|nummer|số|moi|nous|mich|uns|lui|ihn|ihm|s|tomorrow|today|tonight|later|soon|again|also|instead|"
    r"any\s?time|after|before|then|maybe|just|still|best|usual|this|morning|afternoon|evening|night|weekend|"
    # the person whose number it is: "call my wife at", "text your boss on"
    r"wife|husband|partner|mom|mum|mother|dad|father|brother|sister|son|daughter|friend|boss|manager|assistant|"
    r"doctor|dr|mr|mrs|ms"
)
# the words after a name that say a number follows ("call Jane at", "contact John Smith on", "text Bob:"): without
# one a capitalised word is as likely a title ("Call Of Duty 12345678", "Ring Doorbell 12345678", "Phone: Samsung
# Galaxy 12345678", "Handy Vertrag 12345678") as a person
_CUE_NAME_THEN = r"at|on|via|to|is|al|au|am|unter|sur|de|en|an"
# a name may stand between the cue and the number too ("call Jane at", "text Bob on"): a capitalised word
_NAME_WORD = r"(?-i:(?:Mc|O')?[A-Z][a-z]+(?:-[A-Z][a-z]+)?)\.?"
# A name then a colon is a person ("call Jane: 4155552671", "text Bob:"), unless a word of it names a field: "SMS
# Code: 12345678", "Phone Case Model: 12345678" are labels (left out altogether, the people went out unmasked)
_LABEL_WORD = (
    r"(?:codes?|models?|cases?|sizes?|ids?|pins?|serials?|lengths?|counts?|durations?|versions?|types?|refs?|"
    r"references?|forms?|tickets?|batch|plans?|bills?|accounts?|orders?|invoices?|numbers?|nos?|nr|otps?|keys?|"
    r"totals?|amounts?|prices?|limits?|logs?|history|records?|credits?|minutes?|tokens?|passwords?|verification|"
    r"confirmation|security|tracking)"
)
_CUE_NAME_COLON = rf"(?:(?!(?i:{_LABEL_WORD})\b){_NAME_WORD}\s+){{0,2}}(?!(?i:{_LABEL_WORD})\b){_NAME_WORD}(?=\s*:)"
_CUE_NAME = rf"{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,2}}(?=\s*,?\s*(?:{_CUE_NAME_THEN})(?![^\W\d_]))|{_CUE_NAME_COLON}"
_PHONE_CUE = re.compile(
    rf"(?:(?<![^\W\d_])(?:{_CUE_LATIN})(?![^\W\d_])|{_CUE_OTHER})"
    rf"(?:[\s:#()=*,'\"\-]|\.(?=[\s:#]|$)|(?<![^\W\d_])(?:{_CUE_LINK}|{_CUE_NAME})(?![^\W\d_])\.?|[^\x00-\x7f])*$",
    re.IGNORECASE,
)
# "text 12345678 characters": a count, not a number to text; on the same line, and no heading ("Phone: 0612345678"
# then "Orders: ..." on the next line is a number and a heading: the number went out unmasked)
_PHONE_UNIT = re.compile(
    r"[^\S\n\r]*(?:characters?|chars?|bytes?|bits?|words?|lines?|rows?|records?|times?|tokens?|items?|pages?|entries|"
    r"users?|people|views?|results?|[kmgt]?b|ms|ns|us|s|seconds?|minutes?|hours?|days?|customers?|clients?|"
    r"subscribers?|followers?|members?|visitors?|downloads?|copies|units?|sales|orders?|euros?|dollars?|usd|eur|"
    r"gbp|pounds?|yen|points?|votes?|steps?|km|miles?|meters?|kg)\b(?![^\S\n\r]*:)",
    re.IGNORECASE,
)


def _bare_phone(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    if _PHONE_CUE.search(text, max(0, m.start() - 40), m.start()) is None or _toll_free(m.group()):
        return None
    if _PHONE_UNIT.match(text, m.end()) is not None:
        return None
    return m.span()


def _digit_count(s: str) -> int:
    return sum(c.isdigit() for c in s)


# Toll-free numbers belong to organisations (help lines, customer service), not people: an answer that points to
# a crisis line must keep the number. Only where the format says so: North American 800/833/.../888 numbers and
# +44 800/808; a national "0800"/"0808" is not exempt (Japanese and Nigerian mobiles share that layout).
_TOLL_FREE = re.compile(r"1?8(?:00|33|44|55|66|77|88)\d{7}|4480[08]\d{6,7}")


def _toll_free(s: str) -> bool:
    return _TOLL_FREE.fullmatch("".join(c for c in s.replace("(0)", "") if c.isdigit())) is not None


def _us_phone(_text: str, m: re.Match[str]) -> tuple[int, int] | None:
    return None if _toll_free(m.group()) else m.span()


def _intl_phone(_text: str, m: re.Match[str]) -> tuple[int, int] | None:
    s = m.group()
    n = _digit_count(s) - ("(0)" in s)  # the trunk zero is not part of the E.164 number
    return m.span() if 8 <= n <= 15 and not _toll_free(s) else None


def _national_phone(_text: str, m: re.Match[str]) -> tuple[int, int] | None:
    return m.span() if 10 <= _digit_count(m.group()) <= 12 else None


PHONE_DETECTORS: tuple[Detector, ...] = (
    Detector("phone", _PHONE_INTL, _intl_phone, contains("+")),
    Detector("phone", _PHONE_US, _us_phone, has_digit),
    Detector("phone", _PHONE_NATIONAL, _national_phone, contains("0")),
    Detector("phone", _PHONE_FR_DOTS, whole, contains("0")),
    Detector("phone", _PHONE_BARE, _bare_phone, has_digit),
)
