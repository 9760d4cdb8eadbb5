"""Ops-defined personal data: ``pii_entities:`` in a policy names a pattern, and ``redact`` masks it as ``<NAME_1>``.

    pii_entities:
      employee_id: 'EMP-\\d{6}'
    input:
      rules:
        - {category: pii, action: redact, entities: [email, employee_id]}

This module owns what such a definition may be and the detectors made from it; the sample values a replay puts
where a log masked one are in :mod:`guardrail.classifiers.custom_entity_samples`. Why the rules are what they are:

- **One run of printable ASCII, no spaces.** A stream is released only up to the start of a run that may still
  become an entity (``streaming._run_start``); a value with a space in it, or a non-ASCII letter, could be
  released in two parts and never be masked whole. The built-in detectors have the same shape, so custom ones
  ride the same hold-back. Write the characters a value may contain (``[A-Z0-9]``, ``\\d``, ``\\w``); ``.``,
  ``[^x]``, ``\\S``, ``\\W`` and ``\\s`` are refused.
- **RE2 finds them, as Python reads them.** Redaction needs each match's span, and only RE2 (the ``google-re2``
  package, the ``re2`` extra) gives spans in linear time; the built-in linear matcher answers only "is there a
  match". A pattern on Python's backtracking ``re`` could hang the guard on hostile input, so without RE2 a policy
  that defines entities does not load (it says how to install it) rather than run unsafely. RE2 is not given the
  text ops wrote: the checks above read it with Python's parser, and RE2 gets the same tree written out in its
  own syntax (:func:`_re2_syntax`), so what was checked is what runs. The two read some text differently:
  ``[[:^alpha:]]`` is a negated POSIX class to RE2 (spaces, other scripts) and a set of seven characters to
  Python; ``x{,3}`` is a repeat to Python and four literal characters to RE2.
- **Case-insensitive in ASCII.** RE2's own case folding is Unicode's: ``k`` matches the Kelvin sign and ``s`` the
  long s, characters a stream does not hold back as part of a run. Letters are written out as ``[kK]`` instead;
  a value written with such look-alikes is found in the text's readings (NFKC), as a full-width one is.
- **The longest value.** Spans are found leftmost-longest, so neither a lazy repeat (``EMP-\\d+?``) nor the order
  of an alternation (``E\\d{3}|E\\d{6}``) masks a value's head and sends its tail.
- **Anywhere in a text, never empty.** ``^``, ``$``, ``\\A`` and ``\\Z`` are refused: the texts a check reads (a
  stream's window, a reading, a transcript of several messages) begin and end elsewhere than the value, so an
  anchored pattern would mask a value only when it is the whole text. A pattern that can match an empty text
  (``x*\\b``) is refused too.
- **One name, one meaning per file.** Spans, placeholders and logs carry only the entity's name, so the detectors
  are looked up by name (:func:`register` at policy load). The definitions in force are those of the policies
  still in use: each loaded policy holds a :class:`Lease`, and a definition goes when the last policy holding it
  is gone (a test's, a replaced Guard's, a hot reload's old version). A file may change its own definitions (a hot
  reload: the new one is in force at once); two files defining one name differently is a load error while both
  are in use. Policies given as mappings have no file: two of them defining one name differently are both in
  force, for both (a value of either shape is masked; never one Guard's values let through because another Guard
  was made after it).
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from guardrail._linear_re import _c, _p
from guardrail.classifiers.pii_detectors import Detector

__all__ = [
    "DICT", "NAME", "Lease", "detectors", "in_force", "is_custom", "parse", "pattern_problem", "placeholder_problem",
    "register", "release",
]  # fmt: skip

# letters and single underscores: its placeholder <EMPLOYEE_ID_1> must read back as one (patterns._PLACEHOLDER)
NAME: Final = re.compile(r"[a-z]+(?:_[a-z]+)*")
_PRINTABLE: Final = range(0x21, 0x7F)  # printable ASCII without the space
_OK_CATEGORIES: Final = {_c.CATEGORY_DIGIT, _c.CATEGORY_WORD}
_CATEGORY_CHARS: Final = {
    _c.CATEGORY_DIGIT: "0123456789",
    _c.CATEGORY_WORD: "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz",
}
_REPEATS: Final = (_c.MAX_REPEAT, _c.MIN_REPEAT)
_ANCHORS: Final = {_c.AT_BEGINNING, _c.AT_BEGINNING_STRING, _c.AT_END, _c.AT_END_STRING}
_POSIX_CLASS: Final = re.compile(r"\[:\^?[a-z]+:\]")
_JSON_ESCAPED: Final = frozenset(map(ord, '"\\'))
_JSON_WHY: Final = (
    'a value with " or \\ in it is written escaped (\\" and \\\\) in tool-call arguments and structured outputs, '
    "where it would not be found"
)
_LONGEST: Final = 4096  # streaming._LONGEST_RUN: a longer run is released in part
DICT: Final = "<dict>"  # the origin of a definition no file wrote (a policy given as a mapping)


class Lease:
    """Held by a loaded policy (``Policy._entities``): the definitions it registered are in force while it lives.

    Copies of the policy share it (a copy is the same policy), and any two compare equal, so leases never make
    two loads of one file unequal."""

    __slots__ = ("__weakref__",)

    def __copy__(self) -> Lease:
        return self

    def __deepcopy__(self, _memo: Any) -> Lease:
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Lease)

    def __hash__(self) -> int:
        return 0


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    pattern: str  # as ops wrote it (what a clash names, and what a replay's stand-in is built from)
    origin: str  # the file whose line wrote it, or DICT
    held_by: weakref.ref[Lease]
    detector: Detector


_LOCK = threading.RLock()
_ENTRIES: list[_Entry] = []  # oldest first; written under _LOCK
_SNAPSHOT: tuple[Detector, ...] = ()  # replaced whole, so a reload never changes it under a running check
_IN_FORCE: tuple[_Entry, ...] = ()
_EVER: set[str] = set()  # every name registered in this process: a span of one is never "unknown" to redact
_STALE = False  # a lease has gone: the next look-up rebuilds the snapshot (set from the garbage collector)


def _re2() -> Any:
    """The ``re2`` module, or None (custom_rules owns the look-up; imported here lazily, as it imports this module)."""
    from guardrail.custom_rules import _re2 as found

    return found()


def _compile(pattern: str) -> Any:
    """RE2 for ``pattern`` as Python parsed and checked it: case folded in ASCII only, leftmost-longest."""
    re2 = _re2()
    opts = re2.Options()
    opts.case_sensitive = True  # the case-insensitive letters are written out as [aA]
    opts.longest_match = True
    opts.log_errors = False
    return re2.compile(_re2_syntax(parse(pattern), True), opts)


def parse(pattern: str) -> Any:
    """The parse tree of ``pattern`` as every check here reads it (ASCII, case-insensitive)."""
    return _p.parse(pattern, re.IGNORECASE | re.ASCII)


def _whole(_text: str, m: Any) -> tuple[int, int]:
    return (m.start(), m.end())


def _always(_text: str) -> bool:
    return True


def _char_problem(op: Any, av: Any) -> str | None:
    """Why one character construct may match a space, a non-ASCII character or one JSON escapes, or None."""
    if op is _c.LITERAL:
        if av in _JSON_ESCAPED:
            return _JSON_WHY
        return None if av in _PRINTABLE else f"the character {chr(av)!r} is not printable ASCII"
    if op in (_c.ANY, _c.NOT_LITERAL):
        return "'.' and negations match any character (spaces, other scripts); write the characters a value has"
    for sub_op, sub_av in av:  # IN: a character set
        if sub_op is _c.NEGATE:
            return "a negated set [^...] matches spaces and other scripts; list the characters a value has"
        if sub_op is _c.LITERAL and sub_av not in _PRINTABLE:
            return f"the character {chr(sub_av)!r} is not printable ASCII"
        if sub_op is _c.RANGE and not (sub_av[0] in _PRINTABLE and sub_av[1] in _PRINTABLE):
            return f"the range {chr(sub_av[0])!r}-{chr(sub_av[1])!r} goes beyond printable ASCII"
        if sub_op is _c.CATEGORY and sub_av not in _OK_CATEGORIES:
            return "\\s, \\S, \\W and \\D match spaces or other scripts; use \\d, \\w or a set such as [A-Z0-9-]"
        if sub_op in (_c.LITERAL, _c.RANGE) and _JSON_ESCAPED & _set_codes([(sub_op, sub_av)]):
            return _JSON_WHY
    return None


def _tree_problem(items: Any) -> str | None:
    for op, av in items:
        if op in (_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN):
            why = _char_problem(op, av)
        elif op is _c.SUBPATTERN:
            why = _tree_problem(av[3])
        elif op is _c.BRANCH:
            why = next((w for alt in av[1] if (w := _tree_problem(alt)) is not None), None)
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            why = _tree_problem(av[2])
        elif op is _c.AT:
            why = None
        else:  # what the linear-time check refuses (back-references, look-around) it has named already
            why = f"{str(op).lower()} is not supported"
        if why is not None:
            return why
    return None


def _anchor_problem(items: Any) -> str | None:
    for op, av in items:
        if op is _c.AT and av in _ANCHORS:
            return (
                "^, $, \\A and \\Z tie a value to the start or end of the whole text, and a value is looked for "
                "anywhere in it (a sentence, a stream, a conversation); write \\b for the edge of a word"
            )
        subs = av[1] if op is _c.BRANCH else [av[3]] if op is _c.SUBPATTERN else [av[2]] if op in _REPEATS else []
        why = next((w for sub in subs if (w := _anchor_problem(sub)) is not None), None)
        if why is not None:
            return why
    return None


def pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` cannot define an entity (a sentence for the policy error), or None."""
    from guardrail.custom_rules import check_pattern

    if _POSIX_CLASS.search(pattern):  # before Python's parser, which warns about it (FutureWarning)
        return "[:alpha:] and the like are POSIX classes to RE2 and plain characters here; write [a-z] or \\d"
    why = check_pattern(pattern)
    if why is not None:
        return why
    tree = parse(pattern)
    why = _tree_problem(tree)
    if why is not None:
        return why if why is _JSON_WHY else f"a value is one run of printable ASCII without spaces: {why}"
    why = _anchor_problem(tree)
    if why is not None:
        return why
    shortest = tree.getwidth()[0]
    if shortest == 0:
        return "it can match an empty text (nothing is then masked); a value has at least one character"
    if shortest > _LONGEST:
        return f"its values are over {_LONGEST:,} characters long, more than a stream holds back whole"
    if _re2() is None:
        return "finding its spans in linear time needs RE2: pip install 'guardrail-sdk[re2]' (google-re2)"
    try:
        _compile(pattern)
    except Exception as exc:  # re2.error: a construct RE2 refuses, a repeat over 1,000, a program too large
        return f"RE2 cannot compile it: {exc}"
    return None


def placeholder_problem(pattern: str, names: Iterable[str]) -> str | None:
    """Why ``pattern`` (already without a :func:`pattern_problem`) would find a value in the placeholders masking
    writes for ``names`` (``EMAIL_1`` in ``<EMAIL_1>``), or None. Such a pattern masks the placeholders an answer
    carries back ("write to <EMAIL_1>" became "write to <<CODE_2>>", which ``restore=True`` cannot undo)."""
    rx = _compile(pattern)
    for name in names:
        for n in (1, 12, 345):
            held = f"<{name.upper()}_{n}>"
            if rx.search(held) is not None:
                return (
                    f"it finds a value in {held}, the placeholder masking writes, so it would mask what masking "
                    "wrote; make it differ (a letter case kept with (?-i:...), a fixed prefix)"
                )
    return None


def _re2_syntax(items: Any, fold: bool) -> str:
    """The parsed pattern ``items`` in RE2's syntax: every group non-capturing, letters written in both cases where
    ``fold`` (a ``(?-i:...)`` group keeps its case), repeats greedy (the match is the longest either way)."""
    out: list[str] = []
    for op, av in items:
        if op is _c.LITERAL:
            out.append(_char_set({av}, fold) if fold and chr(av).isalpha() else _escape(av))
        elif op is _c.IN:
            out.append(_char_set(_set_codes(av), fold))
        elif op is _c.SUBPATTERN:
            _group, add, drop, sub = av
            inner = (fold or bool(add & re.IGNORECASE)) and not drop & re.IGNORECASE
            out.append(f"(?:{_re2_syntax(sub, inner)})")
        elif op is _c.BRANCH:
            out.append("(?:" + "|".join(_re2_syntax(alt, fold) for alt in av[1]) + ")")
        elif op in _REPEATS:
            lo, hi, sub = av
            out.append(f"(?:{_re2_syntax(sub, fold)}){{{lo},{'' if hi is _c.MAXREPEAT else hi}}}")
        elif op is _c.AT and av is _c.AT_BOUNDARY:
            out.append("\\b")
        elif op is _c.AT and av is _c.AT_NON_BOUNDARY:
            out.append("\\B")
        else:  # pattern_problem refused it before this is reached
            raise ValueError(f"{op} is not supported")
    return "".join(out)


def _escape(code: int) -> str:
    c = chr(code)
    return c if c.isalnum() else "\\" + c  # RE2 reads a backslash and any ASCII punctuation as that character


def _set_codes(items: Any) -> set[int]:
    codes: set[int] = set()
    for op, av in items:
        if op is _c.LITERAL:
            codes.add(av)
        elif op is _c.RANGE:
            codes.update(range(av[0], av[1] + 1))
        elif op is _c.CATEGORY:
            codes.update(map(ord, _CATEGORY_CHARS[av]))
    return codes


def _char_set(codes: set[int], fold: bool) -> str:
    if fold:
        codes = codes | {ord(chr(c).swapcase()) for c in codes if chr(c).isascii() and chr(c).isalpha()}
    return "[" + "".join(_escape(c) for c in sorted(codes)) + "]"


def register(definitions: Mapping[str, tuple[str, str]]) -> Lease:
    """Put ``definitions`` (name -> (pattern, the file that wrote it or DICT), each already checked) in force while
    the returned lease lives; the loaded policy holds it.

    ValueError (naming the entity) when another file's definition of one of the names is in force with another
    pattern: spans and logs carry only the name. A file's new definition of a name (an edit, hot-reloaded) replaces
    its old one at once; definitions from mappings add to each other."""
    lease = Lease()
    held_by = weakref.ref(lease, _lease_gone)
    with _LOCK:
        in_force = _in_force([e for e in _ENTRIES if e.held_by() is not None])
        for name, (pattern, origin) in definitions.items():
            clash = next(
                (e for e in in_force if e.name == name and e.pattern != pattern and DICT != e.origin != origin), None
            )
            if clash is not None and origin != DICT:
                raise ValueError(
                    f"{name}: already defined as {clash.pattern!r} by {clash.origin}; one name has one pattern in a "
                    "process, so give this one another name"
                )
        compiled = {(e.name, e.pattern): e.detector for e in _ENTRIES}
        for name, (pattern, origin) in definitions.items():
            detector = compiled.get((name, pattern)) or Detector(name, _compile(pattern), _whole, _always)
            _ENTRIES.append(_Entry(name, pattern, origin, held_by, detector))
            _EVER.add(name)
        _rebuild()
    return lease


def _lease_gone(_ref: object) -> None:
    global _STALE
    _STALE = True  # only a flag: this runs inside the garbage collector, on any thread, maybe under _LOCK


def _in_force(live: list[_Entry]) -> tuple[_Entry, ...]:
    """Of the live entries, each file's latest definition of each name, and every mapping's."""
    latest: dict[tuple[str, str, str], _Entry] = {}
    for e in live:
        latest[(e.name, e.origin, e.pattern if e.origin == DICT else "")] = e
    return tuple(sorted(latest.values(), key=lambda e: (e.name, e.pattern)))


def _rebuild() -> None:
    global _SNAPSHOT, _IN_FORCE, _STALE
    with _LOCK:
        _STALE = False  # first: a lease that goes while this runs marks it stale again
        _ENTRIES[:] = [e for e in _ENTRIES if e.held_by() is not None]
        _IN_FORCE = _in_force(_ENTRIES)
        _SNAPSHOT = tuple({(e.name, e.pattern): e.detector for e in _IN_FORCE}.values())


def release(lease: Lease | None) -> None:
    """Take the definitions ``lease`` holds out of force now: a policy that loaded but was refused (a hot reload its
    Guard did not accept) must not leave its patterns in force until the garbage collector gets to it."""
    if lease is None:
        return
    with _LOCK:
        _ENTRIES[:] = [e for e in _ENTRIES if e.held_by() is not lease]
        _rebuild()


def detectors() -> tuple[Detector, ...]:
    """The custom detectors in force in this process (looked up per call: a reload may replace one)."""
    if _STALE:
        _rebuild()
    return _SNAPSHOT


def is_custom(entity: str) -> bool:
    """Whether ``entity`` was ever defined in this process (a span of it may still be in flight)."""
    return entity in _EVER


def in_force(entity: str) -> tuple[str, Detector] | None:
    """The pattern ops wrote for ``entity`` and its detector, as in force now (None: not defined by a live policy)."""
    detectors()
    held = next((e for e in _IN_FORCE if e.name == entity), None)
    return None if held is None else (held.pattern, held.detector)
