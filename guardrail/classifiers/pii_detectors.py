"""The PII and secret detectors behind ``patterns.find_entities``: one regex, one check and one gate each.

Split from patterns.py, which resolves overlaps and redacts: this module is the catalogue (what counts as an
e-mail, a phone number (``pii_phone``), a card, an IBAN, an IP address, an SSN, a key, and, found through cue words, a
person's name (``pii_names``) and a street address (``pii_address``)) and its checksum and structure checks; the why
of the design (permissive formats, strict checks, linear patterns) is in patterns.py's docstring.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from typing import Final

from guardrail.classifiers.pii_address import ADDRESS_DETECTORS
from guardrail.classifiers.pii_base import Detector
from guardrail.classifiers.pii_base import compile_ascii as _compile
from guardrail.classifiers.pii_base import contains as _contains
from guardrail.classifiers.pii_base import has_digit as _has_digit
from guardrail.classifiers.pii_base import whole as _whole
from guardrail.classifiers.pii_names import NAME_DETECTORS
from guardrail.classifiers.pii_phone import PHONE_DETECTORS

__all__ = ["DETECTORS", "Detector"]


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


# "Hi,\\nbob@example.com" in a JSON string (a structured answer, a tool call's arguments) is "Hi," and a new line
# before the address: read with its escape ("nbob@..."), the address was masked as "Hi,\\<EMAIL_1>", which no JSON
# parser reads any more (and which lost the line break). The letter or \\uXXXX an odd run of backslashes escapes is
# not part of the address.
_ESCAPED_HEAD = re.compile(r"u[0-9A-Fa-f]{4}|[nrt]")
_LOCAL_HEAD = re.compile(r"[A-Za-z0-9_+]")  # what is left still starts a local part (the address is not "\\n@x.io")


def _email(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    start, end = m.span()
    slashes = 0
    while start - slashes > 0 and text[start - slashes - 1] == "\\":
        slashes += 1
    head = _ESCAPED_HEAD.match(text, start) if slashes % 2 else None
    if head is not None and _LOCAL_HEAD.match(text, head.end()) is not None:
        return head.end(), end
    return start, end


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


# An AWS secret access key is 40 characters of base64 with no prefix of its own: one written as "key = value" is found
# above, but not one after "SecretAccessKey" (JSON), "secret access key:" (the console's CSV) or beside its key id.
# Found only beside such a cue or an access key id (AKIA.../ASIA...), and only where it holds a "/" or "+" or mixes
# capitals, small letters and digits (a git hash is lower-case hex).
_AWS_SECRET = _compile(r"[A-Za-z0-9/+](?<![A-Za-z0-9/+=].)[A-Za-z0-9/+]{39}(?![A-Za-z0-9/+=])")
_AWS_SECRET_CUE = re.compile(
    r"(?:aws[ _-]?secret|secret[ _-]?access[ _-]?key|(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9]))",
    re.IGNORECASE,
)
_AWS_KEY_ID = re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")


def _aws_secret(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    start, end = m.span()
    s = m.group()
    mixed = any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s)
    if not ("/" in s or "+" in s or mixed) or _PLACEHOLDER_WORDS.search(s) or len(set(s)) < 12:
        return None
    if _AWS_SECRET_CUE.search(text, max(0, start - 100), start) or _AWS_KEY_ID.search(text, end, end + 100):
        return start, end
    return None


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
    Detector("api_key", _AWS_SECRET, _aws_secret, _contains("AKIA", "ASIA", "ecret", "ECRET")),
    Detector("credit_card", _CARD, _card, _has_digit),
    Detector("iban", _IBAN, _iban, _has_digit),
    Detector("us_ssn", _SSN, _whole, _has_digit),
    Detector("email", _EMAIL, _email, _contains("@")),
    Detector("ip_address", _IPV4, _ipv4, _contains(".")),
    Detector("ip_address", _IPV6, _ipv6, lambda text: "::" in text or text.count(":") >= 6),
    *PHONE_DETECTORS,
    *NAME_DETECTORS,
    *ADDRESS_DETECTORS,
)
