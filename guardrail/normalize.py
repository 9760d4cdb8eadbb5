"""Normalisation against cheap evasion: the other readings of a text that the classifier also scores.

Measured on the landed guard, cheap transforms of plainly harmful prompts cut recall from 96% to
16% (letters spaced apart), 41% (rot13), 47% (leetspeak), 49% (base64) and 70% (a code fence),
while base64 of *benign* text was flagged 27 times in 30: the model reads an encoded blob as noise
and noise as suspicious. So :func:`forms` returns the readings worth scoring, and the engine scores
them in the same call and keeps the highest score per category:

- characters nobody sees are dropped, tag characters decoded and full-width letters folded first
  (:mod:`guardrail.unseen`), so what a reader sees is what is scanned;
- payloads encoded in base64, hex (``48656c6c6f``, ``\\x48\\x65``) or URL-encoding are decoded *in
  place*; the decoded text replaces the raw one as the primary form (the raw blob carries no meaning
  the model can use, only its noise);
- letters spaced or dotted apart (``h o w  t o``, ``b.o.m.b``) are re-joined, whatever parts them
  (:mod:`guardrail.apart`: no-break spaces, tabs, NUL, one letter per line ...);
- common leetspeak (``k1ll``, ``h0w t0``) is folded to letters;
- rot13 and reversed text are tried when the result reads as English and the text did not;
- the inside of code fences is scored on its own as well;
- a transform that explains most of the text (spaced, leet, rot13, reversed) replaces the primary
  form, so a benign text written that way is judged as its plain form, not as noise.

Every form keeps, per character, the span of the original text it came from (``Form.to_original``),
so personal data found in a decoded or re-joined form is redacted where it sits in the original.
Each detector is a linear scan gated by a cheap test; ordinary text yields only its plain form.

Every text the policy checks (up to ``max_chars``) gets its readings. Texts over 50,000 characters once got none, so
a request spaced or rot13'd after a long document passed (session 25 review); a reading that changes only part of a
text over ``_WHOLE`` characters now goes to the classifier as an excerpt of its changes (``offsets.excerpt``), so the
classifier reads at most ``MAX_FORMS`` times the text, and usually the text plus its changes.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import codecs
import json
import re
import unicodedata
from collections.abc import Callable

from guardrail.apart import despace
from guardrail.offsets import Form, OffsetMap, Rewrite, Seg, excerpt, rebased, substitute
from guardrail.readability import Readings, looks_english
from guardrail.unseen import BLANK_IN_WORD, cleaned, has_blank

__all__ = ["MAX_FORMS", "Form", "forms", "looks_english"]

MAX_FORMS = 6  # bound on the cost: at most this many texts go to the classifier per input text
# A reading that changes only part of a text longer than this goes to the classifier as an excerpt: the parts it
# changed, with this margin around each (the model reads 128-token windows; a margin holds about two). Up to about a
# 4,000-token prompt a reading is the whole text, as it always was.
_WHOLE = 16_000
_MARGIN = 1_000


# -- decoders -----------------------------------------------------------------------------------

_B64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{16,}|(?:[0-9A-Fa-f]{2}[ :]){7,}[0-9A-Fa-f]{2})(?![0-9A-Fa-f])")
_XESC = re.compile(r"(?:\\x[0-9A-Fa-f]{2}){4,}")
# JSON and JavaScript string escapes ("leak\u0040corp.example" in a structured answer or a tool call's arguments,
# "sk-abc\/def" from a serializer that escapes "/"), decoded in place: the application reads the value decoded
_UESC = re.compile(r"(?:\\u[0-9A-Fa-f]{4}|\\/)+")
_UNREADABLE = frozenset({"Cc", "Cs", "Cn", "Co"})
# a URL-encoded token: a run between spaces, quotes, brackets and commas (a URL inside a JSON string or a call's
# arguments is decoded on its own, so what it reveals is masked inside that string)
# A token's closing punctuation (". ! ? ; :") stays outside it, so "write to bob%40x.com." keeps its full stop (the
# lookahead-and-backreference takes a run of such marks whole, as an atomic group would: linear on long runs)
_TOKEN = re.compile(
    r"""[^\s"'<>()\[\]{},.!?;:](?:[^\s"'<>()\[\]{},.!?;:]|(?=([.!?;:]+))\1(?=[^\s"'<>()\[\]{},.!?;:]))*"""
)
_PCT_ESC = re.compile(r"%[0-9A-Fa-f]{2}")
_PCT_RUNS = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
# an address's "@" written as its one escape ("to=bob%40example.com", the usual form in a query string)
_PCT_AT = re.compile(r"(?<=[\w.+-])%(?:25)?40(?=[A-Za-z0-9][\w-]*(?:\.[\w-]+)*\.[A-Za-z]{2,})")  # or "%2540"
_RUN = re.compile(r"\S+")


def _readable(raw: bytes) -> str | None:
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not s or sum(c.isprintable() or c in "\n\t" for c in s) < 0.95 * len(s):
        return None
    letters = sum(c.isalpha() for c in s)
    return s if letters >= 0.5 * len(s.replace(" ", "")) and letters >= 3 else None


def _b64(m: re.Match[str]) -> str | None:
    s = m.group(0)
    if s.isalpha() or s.isdigit() or not any(c.isdigit() or c in "+/=" or c.isupper() for c in s[1:]):
        return None  # a long word, a number: not base64
    for alt in (b"+/", b"-_"):
        try:
            raw = base64.b64decode(s.encode() + b"=" * (-len(s) % 4), altchars=alt, validate=True)
        except (binascii.Error, ValueError):
            continue
        out = _readable(raw)
        if out is not None:
            return f" {out} "
    return None


def _hex(m: re.Match[str]) -> str | None:
    digits = re.sub(r"[^0-9A-Fa-f]", "", m.group(0).replace("\\x", ""))
    if len(digits) % 2:
        return None
    try:
        out = _readable(bytes.fromhex(digits))
    except ValueError:
        return None
    return None if out is None else f" {out} "


def _json_escapes(m: re.Match[str]) -> str:
    """A run of JSON escapes decoded (a surrogate pair read as one character); a control character, a lone
    surrogate or an unassigned one becomes U+FFFD. Format characters (a zero-width space, tags) stay: the reading
    drops them as it drops them in plain text (``unseen.cleaned``), so "bob@exa\\u200bmple.com" reads as the
    address the application shows."""
    out = json.loads(f'"{m.group(0)}"')
    return "".join(c if c in "\n\t" or unicodedata.category(c) not in _UNREADABLE else "\ufffd" for c in out)


def _pct_tokens(text: str) -> list[tuple[int, int]]:
    """The URL-encoded tokens of ``text`` worth decoding: a token is decoded when the run between spaces it sits in
    has two escapes or more (one alone reads too often as a plain "%20"), or one that is an address's "@"
    ("?to=bob%40example.com"), so each piece of a run parted by commas or brackets ("bob%40x.com,carol%40y.com") is
    decoded on its own; and when it decodes to text (an address beside bad escapes still counts)."""
    runs = [
        (r.start(), r.end())
        for r in _RUN.finditer(text)
        if len(_PCT_ESC.findall(r.group())) >= 2 or _PCT_AT.search(r.group())
    ]
    starts = [a for a, _ in runs]
    tokens = []
    for m in _TOKEN.finditer(text):
        k = bisect.bisect_right(starts, m.start()) - 1
        if k >= 0 and m.end() <= runs[k][1] and _pct_readable(m.group(0)):
            tokens.append((m.start(), m.end()))
    return tokens


def _pct_readable(tok: str) -> bool:
    from urllib.parse import unquote

    if not _PCT_ESC.search(tok):
        return False
    try:
        out = unquote(tok, errors="strict")
    except UnicodeDecodeError:
        return "@" in unquote(tok, errors="replace")
    return out.replace("\n", " ").isprintable() or "@" in out


def _unescape(run: str) -> str:
    """A run of escapes decoded; a bad escape or a control character but a line break becomes U+FFFD (so an address
    beside one is still read, and nothing unprintable reaches the classifier)."""
    from urllib.parse import unquote

    return "".join(c if c.isprintable() or c == "\n" else "\ufffd" for c in unquote(run, errors="replace"))


def _url_decode(text: str, spans: OffsetMap | None) -> tuple[str, OffsetMap | None, int]:
    """URL-encoded tokens decoded in place, escape by escape: the letters between escapes keep their own offsets, so
    an address found in a decoded link is masked where it sits, not as the whole link. Each decoded token is set
    apart by a space on each side (mapped to nothing), as a whole decoded payload is: an address right after a mark
    ("...bob%40x.com") is read as one, where an address detector would not start after the mark."""
    tokens = _pct_tokens(text)
    if not tokens:
        return text, spans, 0
    rewrite = Rewrite(text)
    pos = 0
    for a, b in tokens:
        rewrite.keep(pos, a)
        rewrite.put(" ", a, a)
        for m in _PCT_RUNS.finditer(text, a, b):
            rewrite.keep(a, m.start())
            rewrite.put(_unescape(m.group(0)), m.start(), m.end())
            a = m.end()
        rewrite.keep(a, b)
        rewrite.put(" ", b, b)
        pos = b
    rewrite.keep(pos, len(text))
    return (*rewrite.result(spans), len(tokens))


def _decode(text: str, spans: OffsetMap | None) -> tuple[str, OffsetMap | None, bool]:
    """Encoded payloads decoded in place (up to two rounds: base64 of hex, URL-encoded base64)."""
    changed = False
    for _ in range(2):
        n = 0
        if "%" in text:
            text, spans, k = _url_decode(text, spans)
            n += k
        if "\\x" in text:
            text, spans, k = substitute(text, spans, _XESC, _hex)
            n += k
        if "\\u" in text or "\\/" in text:
            text, spans, k = substitute(text, spans, _UESC, _json_escapes)
            n += k
        text, spans, k = substitute(text, spans, _HEX, _hex)
        n += k
        text, spans, k = substitute(text, spans, _B64, _b64)
        n += k
        if not n:
            break
        changed = True
    return text, spans, changed


# -- leetspeak ------------------------------------------------------------------------------------

_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                       "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e"})  # fmt: skip
_LEETY = re.compile(r"(?<!\S)\S*[A-Za-z]\S*")
_LEET_CHAR = re.compile(r"[01345789@$!|+€]")
_LEET_GATE = re.compile(r"[A-Za-z][0134578@$|!+€][A-Za-z0-9]|[0134578@$|+€][A-Za-z]")
_DIGITS = re.compile(r"(?<!\S)[0-9@$]{1,3}(?=[\s.,;:?!]|$)")  # "4", "47", "70": words, once a text is leet
_HARM = frozenset(
    """kill bomb bombs drug drugs meth gun guns hack hacking porn sex nude nudes suicide weapon weapons poison
    murder rape terror explosive explosives cocaine heroin steal fraud malware virus ransomware password
    ignore instructions jailbreak shoot stab knife attack nazi hate die self harm cut overdose""".split()  # noqa: SIM905
)


_DENSE = 4  # leet words this close together (within _NEAR words) are a leet passage, however long the text
_NEAR = 12


def _leet(text: str, spans: OffsetMap | None) -> tuple[str, OffsetMap | None, int, int]:
    """Tokens mixing letters with leet digits/symbols folded; also returns how many words there are. The reading is
    made when a tenth of the words are leet, a folded word is a harmful one, or a passage is dense with leet words:
    a tenth of the words alone missed a leet request after a long document (5 in 20 of them after 49,000
    characters, session 25 review)."""
    words = 0
    harm = False
    at: list[int] = []  # the word number of each folded word

    def fold(m: re.Match[str]) -> str | None:
        nonlocal words, harm
        words += 1
        tok = m.group(0)
        if "://" in tok or ("@" in tok[1:-1] and "." in tok):
            return None  # a URL or an e-mail address
        core = tok.rstrip(".,;:?!)")
        if not _LEET_CHAR.search(core):
            return None
        new = core.translate(_LEET)
        harm = harm or new.lower().strip("'\"(") in _HARM
        at.append(words)
        return new + tok[len(core) :]

    out, sp, n = substitute(text, spans, _LEETY, fold)
    if n >= 0.4 * max(1, words):  # mostly leet: short numbers are words too
        out, sp, _ = substitute(out, sp, _DIGITS, lambda m: m.group(0).translate(_LEET))
    dense = any(at[k + _DENSE - 1] - at[k] < _NEAR for k in range(len(at) - _DENSE + 1))
    return (out, sp, n, words) if (n >= max(2, 0.1 * words) or harm or dense) else (text, spans, 0, words)


# -- forms ----------------------------------------------------------------------------------------

_FENCE = re.compile(r"```[^\n`]*\n?(.*?)```", re.S)
# Code, not prose hidden in a fence: out of its fence a code comment reads like a message and was scored as one
# (jailbreak 0.99 on an ESLint comment, 0.15 in its fence); the model reads fenced code itself. Most lines must
# look like code, so one code-like line cannot hide prose. Matched per line ("[ \t]*", never "\s*": that ran
# quadratic over blank lines).
_CODE_LINE = re.compile(
    r"[ \t]*(?:(?:def|import|function|const|var|public|private|package|fn|func|SELECT|INSERT|UPDATE|DELETE|"
    r"CREATE)\b|#|//|/\*|--|<\w+[ >/]|\$ |[}\])])"
)
_CODE_CHARS = frozenset("{}[]();=<>_\\|&$")


def _looks_like_code(text: str) -> bool:
    lines = [ln for ln in text.splitlines() if ln.strip()][:200]
    code = sum(bool(_CODE_LINE.match(ln)) or sum(c in _CODE_CHARS for c in ln) >= 0.08 * len(ln) for ln in lines)
    return bool(lines) and code > len(lines) / 2


_SEGMENT = re.compile(r"[^\n:]+")


def _rot13(text: str) -> str:
    return codecs.encode(text, "rot13")


def _reverse(text: str) -> str:
    return text[::-1]


def _better_segment(seg: str, fn: Callable[[str], str], read: Readings) -> str | None:
    cand = fn(seg)
    return cand if read.better(cand, seg) else None


def _partial(text: str, spans: OffsetMap | None, source: str, base: OffsetMap | None, kind: str) -> Form:
    """A reading that changed part of ``source`` (``spans``: its map to ``source``; ``base``: the map of ``source`` to
    the original): the whole reading for a text up to ``_WHOLE`` characters, else the excerpt of what it changed, so
    a long text costs the classifier its own length plus its changes, not a second copy per reading."""
    if len(text) > _WHOLE and spans is not None:
        cut = excerpt(text, spans, source, _MARGIN)
        if cut is not None:
            return Form(cut[0], kind, rebased(cut[1], base))
    return Form(text, kind, rebased(spans, base))


def forms(text: str) -> list[Form]:
    """The readings of ``text`` to score: the primary form first (the text itself, or its decoded /
    re-joined / folded reading when that explains it), then up to ``MAX_FORMS - 1`` extra readings."""
    # what a reader sees first (guardrail.unseen): an address with a zero-width space inside, or in full-width
    # letters, is found in this reading and masked where it sits in the text
    visible, smap, _ = cleaned(text)
    primary, pmap, decoded = _decode(visible, smap)
    if decoded:  # what decoding wrote is read as the text is: "bob@exa\u200bmple.com" hides a zero-width space
        primary, pmap, _ = cleaned(primary, pmap)
    kind = "decoded" if decoded else "plain" if smap is None else "cleaned"
    extras: list[Form] = []
    # each reading is made relative to the primary form (no parent), so that a long text's can be cut to its changes
    d_text, d_map, covered = despace(primary, None)
    if covered:
        if covered >= 0.5 * len(primary.strip()):
            primary, pmap, kind = d_text, rebased(d_map, pmap), "despaced"
        else:
            extras.append(_partial(d_text, d_map, primary, pmap, "despaced"))
    l_text, l_map, changed, words = _leet(primary, None) if _LEET_GATE.search(primary) else (primary, None, 0, 0)
    if changed:
        if changed >= 0.4 * max(1, words):
            primary, pmap, kind = l_text, rebased(l_map, pmap), "leet"
        else:
            extras.append(_partial(l_text, l_map, primary, pmap, "leet"))
    before, bmap, bkind = primary, pmap, kind
    read = Readings()
    readable = read.english(primary[:1000]) >= 0.25  # already reads as English: no decoding tried
    readings: list[tuple[float, float, str, str]] = []
    if not readable:  # the whole text may be rot13 or reversed: take the reading that is most English
        for name, cand in (("rot13", _rot13(primary)), ("reversed", primary[::-1])):
            if read.better(cand, primary):
                readings.append((read.english(cand), read.pairs(cand), name, cand))
    if readings:
        _, _, name, cand = max(readings)
        rmap = pmap if name == "rot13" else OffsetMap((), pmap, reverse_of=len(primary))
        primary, pmap, kind = cand, rmap, name
        # the text as it was is always scored too: a word in it (a harmful one among noise) must not be
        # hidden by the decision that the whole reads better reversed or rot13
        extras.insert(0, Form(before, bkind, bmap))
    else:  # a payload behind a readable request ("answer this rot13: ..."): decode it where it sits
        for name, fn in (("rot13", _rot13), ("reversed", _reverse)):

            def better(m: re.Match[str], fn: Callable[[str], str] = fn) -> str | None:
                return _better_segment(m.group(0), fn, read)

            # rot13 keeps each character's place: an address read in it maps exactly
            cand, cmap, n = substitute(primary, pmap, _SEGMENT, better, aligned=fn is _rot13)
            if n:  # the encoded segment read as noise: the decoded one replaces it
                primary, pmap, kind = cand, cmap, name
                if bkind in ("decoded", "despaced", "leet"):  # what an earlier reading revealed is kept too: a
                    # spaced address whose five short words read as English reversed was masked nowhere
                    extras.insert(0, _partial(before, OffsetMap(()), cand, bmap, bkind))  # aligned: same length
                break
    out = [Form(primary, kind, pmap)]
    if "```" in primary:
        fenced = [m for m in _FENCE.finditer(primary) if m.group(1).strip()]
        if sum(len(m.group(0)) for m in fenced) >= 0.5 * len(primary):  # mostly fenced: look inside
            for m in fenced[:2]:
                inner = m.group(1)
                if _looks_like_code(inner):
                    continue
                segs = (Seg(0, len(inner), m.start(1), m.end(1), True),)
                extras.append(Form(inner, "fenced", OffsetMap(segs, pmap)))
    if has_blank(text) and BLANK_IN_WORD.search(text):  # a blank inside a word ("G\u3164lobex"): also read as nothing
        joined, jmap, _ = cleaned(text, None, blank="")
        extras.append(_partial(joined, jmap, text, None, "cleaned"))
    seen = {primary}
    for f in extras:
        if f.text not in seen and len(out) < MAX_FORMS:
            seen.add(f.text)
            out.append(f)
    return out
