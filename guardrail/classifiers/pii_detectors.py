"""The PII and secret detectors behind ``patterns.find_entities``: one regex, one check and one gate each.

Split from patterns.py, which resolves overlaps and redacts: this module is the catalogue (what counts as an
e-mail, a phone number, a card, an IBAN, an IP address, an SSN, a key) and its checksum and structure checks;
the why of the design (permissive formats, strict checks, linear patterns) is in patterns.py's docstring.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["DETECTORS", "Detector"]


# A check receives the whole text and the regex hit and returns the accepted (start, end), possibly
# trimmed, or None to reject the hit. The text is needed to look past the match (e.g. IBAN length).
_Check = Callable[[str, re.Match[str]], tuple[int, int] | None]


# A gate is a much cheaper necessary condition for the pattern to match ('@' for an e-mail). Gates are
# what make a typical prompt cheap: most have no '@', key prefix or PEM header, and a substring test is
# a memchr where a regex scan is a match attempt per character.
_Gate = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Detector:
    entity: str
    regex: re.Pattern[str]
    check: _Check
    gate: _Gate


def _whole(_text: str, m: re.Match[str]) -> tuple[int, int]:
    return m.span()


# Most patterns start with a character class and check the character *before* the match in a lookbehind
# placed after that first character ("\d(?<![\w-]\d)" rather than "(?<![\w-])\d"): the regex engine can
# then skip to candidate characters in C instead of attempting a match at every position.
def _compile(pattern: str, flags: int = 0) -> re.Pattern[str]:
    # ASCII: Unicode digits and letters would pass \d and \w but no checksum or provider format uses them.
    return re.compile(pattern, re.ASCII | re.VERBOSE | flags)


_DIGIT = re.compile(r"\d", re.ASCII)


def _has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


def _contains(*needles: str) -> _Gate:
    return lambda text: any(needle in text for needle in needles)


# ---------------------------------------------------------------------------------------------- email
_EMAIL = _compile(
    r"""
    (?<![\w.%+-])                    # start of the local part, not inside another token
    [A-Za-z0-9_+][A-Za-z0-9._%+-]*   # '+' first: SMS gateways (+15551234567@...); no length bound: past
                                     # one, the address was not masked at all (the look-behind forbids a
                                     # tail), and the look-behind lets a run start one match only, so the
                                     # scan stays linear
    @
    (?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}
    (?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})
    (?![\w-]|\.[A-Za-z0-9])
    """
)

# ---------------------------------------------------------------------------------------------- phone
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
_PHONE_CUE = re.compile(
    r"(?:phone|tel\b|mobile|cell|whats\s?app|sms|fax|call|text|ring|reach\s(?:me|us)|my\snumber|contact|"
    r"tel[eé]f|t[eé]l[eé]ph|telepon|handy|portable|cellulare|celular|τηλ[εέ]φων|телефон|мобильн|טלפון|هاتف|"
    r"جوال|تلفن|फ़?ोन|फोन|ফোন|simu|โทร|điện\s?thoại|电话|電話|手机|携帯|전화|핸드폰)[^.!?\n]{0,24}$",
    re.IGNORECASE,
)


def _bare_phone(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    if _PHONE_CUE.search(text, max(0, m.start() - 40), m.start()) is None or _toll_free(m.group()):
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


# ---------------------------------------------------------------------------------------- credit_card
# Grouped as printed on cards (4-4-4-1..4, 4-4-4-4-3, Amex 4-6-5, Diners 4-6-4) or not grouped at all; free-form
# grouping would turn any long list of numbers into a candidate.
_CARD = _compile(
    r"""
    \d(?<![\w.,-]\d)
    (?:
        \d{12,18}(?![\w-]|[.,]\d)
      | \d{3}([ -])\d{4}\1\d{4}\1\d{1,4}(?:\1\d{3})?(?![\w-]|\1\d|[.,]\d)
      | \d{3}([ -])\d{6}\2\d{4,5}(?![\w-]|\2\d|[.,]\d)
    )
    """
)
_LUHN_DOUBLE: Final[tuple[int, ...]] = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        total += _LUHN_DOUBLE[d] if i % 2 else d
    return total % 10 == 0


def _issued_length(digits: str) -> bool:
    """Whether a card scheme issues numbers with this prefix at this length.

    Luhn alone passes one random number in ten; ids, order numbers and ISBNs are random numbers. The
    issuer ranges (Visa, Mastercard, Amex, Diners, JCB, Discover, UnionPay, Maestro) and their lengths
    cut that by another order of magnitude, mostly for 13-15 digit numbers where few schemes exist.
    """
    n, p2, p3, p4 = len(digits), int(digits[:2]), int(digits[:3]), int(digits[:4])
    if digits[0] == "4":
        return n in (13, 16, 19)
    if p2 in (34, 37):
        return n == 15
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return n == 16
    if p2 in (36, 38, 39) or 300 <= p3 <= 305:
        return 14 <= n <= 19
    if 3528 <= p4 <= 3589 or p2 in (50, 62, 64, 65) or 56 <= p2 <= 69:
        return 16 <= n <= 19
    return False


# Pasted logs and JSON are full of long numeric ids ("sample_id": 38538741581669), one in ~30 of which
# would otherwise pass as a card.
_ID_BEFORE = re.compile(r"(?:\bid|_id|#)[\"']?[ \t]*[:=]?[ \t]*$", re.IGNORECASE)


def _card(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    digits = m.group().replace(" ", "").replace("-", "")
    if not (_issued_length(digits) and _luhn_ok(digits)) or _ID_BEFORE.search(text, max(0, m.start() - 12), m.start()):
        return None
    return m.span()


# ----------------------------------------------------------------------------------------------- iban
# The regex only finds where an IBAN might start; the registered length of the country decides where it
# ends, so a following upper-case word or a second IBAN is not swallowed.
_IBAN = _compile(r"[A-Z](?<![A-Za-z0-9].)[A-Z]\d{2}(?:[ ]?[A-Z0-9]){11,30}")
# Registered IBAN length per country (SWIFT IBAN registry).
_IBAN_REGISTRY = (
    "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BI27 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DJ27 DK18 DO28 "
    "EE20 EG29 ES24 FI18 FK18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IQ23 IS26 IT27 "
    "JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 LY25 MC27 MD24 ME22 MK19 MN20 MR27 MT31 MU30 NI28 NL18 "
    "NO15 OM23 PK24 PL28 PS29 PT25 QA29 RO24 RS22 RU33 SA24 SC31 SD18 SE24 SI19 SK24 SM27 SO23 ST25 SV28 "
    "TL23 TN24 TR26 UA29 VA22 VG24 XK20 YE30 "
)
_IBAN_LENGTHS: Final[dict[str, int]] = {entry[:2]: int(entry[2:]) for entry in _IBAN_REGISTRY.split()}


def _iban(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    start = m.start()
    length = _IBAN_LENGTHS.get(text[start : start + 2])
    if length is None:
        return None
    # Printed IBANs are either unbroken or in groups of four; anything else is not one IBAN. Both forms
    # are tested by position first, which keeps a text of many near-IBANs cheap.
    gaps = (length - 1) // 4
    for end, spaces in ((start + length, 0), (start + length + gaps, gaps)):
        if end > m.end() or text[end : end + 1].isalnum():
            continue
        candidate = text[start:end]
        if candidate.count(" ") != spaces or candidate[4::5][:spaces] != " " * spaces:
            continue
        rotated = candidate[4:].replace(" ", "") + candidate[:4]
        if int("".join(str(int(c, 36)) for c in rotated)) % 97 == 1:
            return start, end
    return None


# ----------------------------------------------------------------------------------------- ip_address
_IPV4 = _compile(r"\d(?<![\w.-]\d)\d{0,2}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w-]|\.\d)")
_VERSION_BEFORE = re.compile(r"\b(?:v|version|ver\.?|build|release|rev\.?)[ ]?$", re.IGNORECASE)


def _ipv4(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    # Octet range and "no leading zero" (01.02.03.04 reads as a date, not an address) are checked here
    # because the equivalent regex alternation defeats the engine's fast skip to digits.
    for octet in m.group().split("."):
        if int(octet) > 255 or (len(octet) > 1 and octet[0] == "0"):
            return None
    if _VERSION_BEFORE.search(text, max(0, m.start() - 9), m.start()):  # "version 9.0.1.0"
        return None
    return m.span()


# A permissive candidate (hex and colons with at least two colons, optional dotted IPv4 tail); the stdlib
# parser then decides, which is simpler and more exact than the usual ten-way alternation.
_IPV6 = _compile(
    r"""
    [0-9A-Fa-f:](?<![\w:.#&].)
    (?:(?<=:)(?=[0-9A-Fa-f]{0,4}:)|(?<!:)(?=[0-9A-Fa-f]{0,3}:[0-9A-Fa-f]{0,4}:))
    [0-9A-Fa-f:]{1,38}(?:\.\d{1,3}){0,3}
    (?![\w:]|\.\w)
    """
)


def _ipv6(_text: str, m: re.Match[str]) -> tuple[int, int] | None:
    s = m.group()
    if s.endswith(":") and not s.endswith("::"):
        s = s[:-1]  # "on fe80::1: ..." - the colon belongs to the sentence
    # Requiring a digit keeps words such as "face::bad" or a bare "::" out; a lone group before "::"
    # ("10::") is valid but far more often a label or a typo than an address.
    if not any(c.isdigit() for c in s) or (s.endswith("::") and s.count(":") == 2):
        return None
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return None
    return m.start(), m.start() + len(s)


# --------------------------------------------------------------------------------------------- us_ssn
_SSN = _compile(
    r"""
    [0-8](?<![\w-].)(?<!\d[ ].)
    (?!(?<=0)00|(?<=6)66)\d{2}([- ])(?!00)\d{2}\1(?!0000)\d{4}
    (?![\w-]|\1\d)
    """
)

# -------------------------------------------------------------------------------------------- api_key
# Provider tokens are recognised by their documented prefixes; lengths are lower bounds so longer future
# formats still match.
_API_PROVIDER = _compile(
    r"""
    (?<![\w-])
    (?:
        sk-(?:ant-|proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}      # OpenAI, Anthropic
      | (?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])                  # AWS access key id
      | gh[pousr]_[A-Za-z0-9]{30,}                                # GitHub
      | github_pat_[A-Za-z0-9_]{30,}
      | xox[baprs]-[A-Za-z0-9-]{10,}                              # Slack
      | AIza[0-9A-Za-z_-]{35}(?![\w-])                            # Google
      | (?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}                  # Stripe
      | hf_[A-Za-z0-9]{30,}                                       # Hugging Face
      | eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{10,}  # JWT
    )
    """
)
_BEARER = _compile(r"[Bb](?<![A-Za-z0-9].)(?:earer|EARER)[ ]+([A-Za-z0-9._~+/-]{16,}={0,2})")
_KEY_NAMES = (
    r"api[_-]?(?:key|secret|token)|apikey|access[_-]?(?:token|key)|auth[_-]?token|refresh[_-]?token"
    r"|client[_-]?secret|private[_-]?token|secret(?:[_-]?key)?|token|password|passwd|pwd"
)
_ASSIGNMENT = _compile(
    rf"""
    (?<![A-Za-z0-9])(?:{_KEY_NAMES})(?:[_-][A-Za-z0-9]+){{0,3}}
    ["']?[ \t]{{0,4}}(?::=|=>|[:=])[ \t]{{0,4}}["']?
    ([A-Za-z0-9_+/.~-]{{16,}}={{0,2}})   # '=' only as padding: a value must not run into the next "k=v"
    """,
    re.IGNORECASE,
)
# Every key name above ends in one of these words, so this is a necessary condition, run on lower-cased
# text without IGNORECASE so that the engine can skip straight to k, s, t and p.
_ASSIGNMENT_GATE = re.compile(r"(?:key|secret|token|passw(?:or)?d|pwd)(?:[_-][a-z0-9]+){0,3}[\"']?[ \t]{0,4}[:=]")
_PLACEHOLDER_WORDS = re.compile(r"your|example|placeholder|changeme|dummy|redacted|xxxx", re.IGNORECASE)


def _random_looking(s: str) -> bool:
    return any(c.isdigit() for c in s) and any(c.isalpha() for c in s)


def _api_provider(_text: str, m: re.Match[str]) -> tuple[int, int] | None:
    s = m.group()
    # AWS ids are fixed-format upper-case base32 and may lack a digit; every other format is random enough
    # to contain both digits and letters, which rules out slugs like "sk-some-long-hyphenated-name".
    if s.startswith(("AKIA", "ASIA")) or _random_looking(s):
        return m.span()
    return None


def _secret_value(_text: str, m: re.Match[str]) -> tuple[int, int] | None:
    start = m.start(1)
    value = m.group(1).rstrip(".")  # a sentence full stop is not part of the token
    if len(value) < 16 or not _random_looking(value) or _PLACEHOLDER_WORDS.search(value):
        return None
    counts = Counter(value).values()
    entropy = -sum(c / len(value) * math.log2(c / len(value)) for c in counts)
    return (start, start + len(value)) if entropy >= 3.0 else None


# ---------------------------------------------------------------------------------------- private_key
# The body is "anything up to the next five dashes", written as an unrolled loop so it cannot backtrack
# quadratically; a block cut off before its END line is still redacted up to where its base64 lines stop.
_PEM_KIND = r"(?:[A-Z0-9]+[ ]){0,3}PRIVATE[ ]KEY(?:[ ]BLOCK)?"  # RSA, EC, OPENSSH, PGP ... BLOCK, plain
_PRIVATE_KEY = _compile(
    rf"""
    -----BEGIN[ ]{_PEM_KIND}-----
    (?:
        [^-]*(?:-(?!----)[^-]*)*-----END[ ]{_PEM_KIND}-----
      | (?:(?:\s|\\[rn])+[A-Za-z0-9+/=]{{16,}})*     # cut off: the base64 lines that made it (also "\n"-escaped)
    )
    """
)


_PROVIDER_PREFIXES: Final[tuple[str, ...]] = (
    "sk-", "AKIA", "ASIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xox", "AIza", "_live_", "_test_",
    "hf_", "eyJ",
)  # fmt: skip
DETECTORS: Final[tuple[Detector, ...]] = (
    Detector("private_key", _PRIVATE_KEY, _whole, _contains("-----BEGIN")),
    Detector("api_key", _API_PROVIDER, _api_provider, _contains(*_PROVIDER_PREFIXES)),
    Detector("api_key", _BEARER, _secret_value, _contains("earer", "EARER")),
    Detector("api_key", _ASSIGNMENT, _secret_value, lambda text: _ASSIGNMENT_GATE.search(text.lower()) is not None),
    Detector("credit_card", _CARD, _card, _has_digit),
    Detector("iban", _IBAN, _iban, _has_digit),
    Detector("us_ssn", _SSN, _whole, _has_digit),
    Detector("email", _EMAIL, _whole, _contains("@")),
    Detector("ip_address", _IPV4, _ipv4, _contains(".")),
    Detector("ip_address", _IPV6, _ipv6, lambda text: "::" in text or text.count(":") >= 6),
    Detector("phone", _PHONE_INTL, _intl_phone, _contains("+")),
    Detector("phone", _PHONE_US, _us_phone, _has_digit),
    Detector("phone", _PHONE_NATIONAL, _national_phone, _contains("0")),
    Detector("phone", _PHONE_FR_DOTS, _whole, _contains("0")),
    Detector("phone", _PHONE_BARE, _bare_phone, _has_digit),
)
