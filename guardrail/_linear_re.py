"""A small linear-time regex matcher: the fallback when ``google-re2`` is not installed.

Why not Python's ``re``: it backtracks, so an ops-written pattern such as ``(a+)+$`` takes time
exponential in the input on ``"aaaa…!"`` and would hang the guard on hostile text (ReDoS). This
module answers only "does the pattern occur in the text?" (what a rule needs) by simulating the
pattern's NFA over the text once (Thompson's construction, as RE2 does), with the sets of states
cached as a lazy DFA: the work per character is one dictionary lookup when the transition is
cached and at most one pass over the program when it is not, so a search costs
O(len(text) * len(program)) however the pattern is written. ``steps`` counts that work, so tests
can bound it without a clock.

Syntax is Python's (parsed by ``re._parser``) with RE2's semantics and limits, so a policy behaves
the same whether or not google-re2 is installed: matching is case-insensitive, ``\\w \\d \\s \\b``
are ASCII, ``^``/``$`` are the start/end of the text, and what needs backtracking (back-references,
look-around, atomic groups, conditionals) is refused with the reason.
"""

from __future__ import annotations

import importlib
import re
import string
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


def _sre(name: str) -> Any:
    """The stdlib's own regex parser (``re._parser`` since 3.11, ``sre_parse`` before)."""
    try:
        return importlib.import_module(f"re._{name}")
    except ImportError:  # pragma: no cover - Python 3.10
        return importlib.import_module(f"sre_{name}")


_c = _sre("constants")
_p = _sre("parse" if sys.version_info < (3, 11) else "parser")

__all__ = ["LinearRegex", "UnsupportedPattern"]

_WORD = frozenset(string.ascii_letters + string.digits + "_")
_DIGIT = frozenset(string.digits)
_SPACE = frozenset(" \t\n\r\f\v")
_MAX_PROGRAM = 20_000  # a {1000}{1000} repeat would otherwise unroll without limit
_MAX_CACHE = 50_000  # cached transitions; cleared when full (the work bound holds either way)
_CATEGORY: dict[Any, Callable[[str], bool]] = {
    _c.CATEGORY_DIGIT: lambda ch: ch in _DIGIT,
    _c.CATEGORY_NOT_DIGIT: lambda ch: ch not in _DIGIT,
    _c.CATEGORY_SPACE: lambda ch: ch in _SPACE,
    _c.CATEGORY_NOT_SPACE: lambda ch: ch not in _SPACE,
    _c.CATEGORY_WORD: lambda ch: ch in _WORD,
    _c.CATEGORY_NOT_WORD: lambda ch: ch not in _WORD,
}
# previous-character classes: what ^ and \b need to know about the left side of a position
_START, _NONWORD, _WORDCH = 0, 1, 2


class UnsupportedPattern(ValueError):
    """The pattern is valid Python but needs backtracking (or is too large) to match."""


@dataclass(slots=True)
class _Prog:
    # each instruction: ("char", pred) | ("split", a, b) | ("jmp", a) | ("assert", kind) | ("match",)
    code: list[tuple[Any, ...]] = field(default_factory=list)

    def emit(self, *ins: Any) -> int:
        self.code.append(ins)
        if len(self.code) > _MAX_PROGRAM:
            raise UnsupportedPattern(f"pattern too large (more than {_MAX_PROGRAM} states once repeats are unrolled)")
        return len(self.code) - 1


def _fold(ch: str) -> tuple[str, ...]:
    return tuple({ch, ch.lower(), ch.upper()})


def _char_pred(op: Any, av: Any) -> Callable[[str], bool]:
    if op is _c.LITERAL:
        chars = frozenset(_fold(chr(av)))
        return chars.__contains__
    if op is _c.NOT_LITERAL:
        chars = frozenset(_fold(chr(av)))
        return lambda ch: ch not in chars
    if op is _c.ANY:
        return lambda ch: ch != "\n"
    if op is _c.IN:
        return _set_pred(av)
    raise UnsupportedPattern(f"unsupported construct {op}")


def _set_pred(items: list[tuple[Any, Any]]) -> Callable[[str], bool]:
    negate = False
    lits: set[str] = set()
    ranges: list[tuple[int, int]] = []
    cats: list[Callable[[str], bool]] = []
    for op, av in items:
        if op is _c.NEGATE:
            negate = True
        elif op is _c.LITERAL:
            lits.add(chr(av))
        elif op is _c.RANGE:
            ranges.append(av)
        elif op is _c.CATEGORY:
            cats.append(_CATEGORY[av])
        else:
            raise UnsupportedPattern(f"unsupported construct in a character set: {op}")
    lits_f = frozenset(lits)

    def one(ch: str) -> bool:
        if ch in lits_f:
            return True
        o = ord(ch)
        return any(lo <= o <= hi for lo, hi in ranges) or any(c(ch) for c in cats)

    def pred(ch: str) -> bool:
        hit = any(one(x) for x in _fold(ch))
        return hit != negate

    return pred


class _Compiler:
    def __init__(self) -> None:
        self.prog = _Prog()

    def seq(self, items: Any) -> None:
        for op, av in items:
            self.node(op, av)

    def node(self, op: Any, av: Any) -> None:
        p = self.prog
        if op in (_c.LITERAL, _c.NOT_LITERAL, _c.ANY, _c.IN):
            p.emit("char", _char_pred(op, av))
        elif op is _c.SUBPATTERN:
            _group, add_flags, del_flags, sub = av
            if (add_flags | del_flags) & ~(re.IGNORECASE | re.ASCII | re.UNICODE):
                raise UnsupportedPattern("inline flags other than (?i) are not supported")
            self.seq(sub)
        elif op is _c.BRANCH:
            alts = av[1]
            jumps = []
            for k, alt in enumerate(alts):
                if k < len(alts) - 1:
                    split = p.emit("split", None, None)
                    self.seq(alt)
                    jumps.append(p.emit("jmp", None))
                    p.code[split] = ("split", split + 1, len(p.code))
                else:
                    self.seq(alt)
            for j in jumps:
                p.code[j] = ("jmp", len(p.code))
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            self.repeat(*av)
        elif op is _c.AT:
            kinds = {_c.AT_BEGINNING: "bol", _c.AT_BEGINNING_STRING: "bol", _c.AT_END: "eol",
                     _c.AT_END_STRING: "eol", _c.AT_BOUNDARY: "b", _c.AT_NON_BOUNDARY: "B"}  # fmt: skip
            if av not in kinds:
                raise UnsupportedPattern(f"unsupported anchor {av}")
            p.emit("assert", kinds[av])
        else:
            what = {_c.GROUPREF: "back-references", _c.ASSERT: "look-ahead/behind", _c.ASSERT_NOT: "look-ahead/behind"}
            name = what.get(op) or str(op).lower().replace("_", " ")
            raise UnsupportedPattern(f"{name} need backtracking; a linear-time engine (as RE2) does not support them")

    def repeat(self, lo: int, hi: int, sub: Any) -> None:
        p = self.prog
        for _ in range(lo):
            self.seq(sub)
        if hi is _c.MAXREPEAT:
            split = p.emit("split", None, None)
            self.seq(sub)
            p.emit("jmp", split)
            p.code[split] = ("split", split + 1, len(p.code))
            return
        ends = []
        for _ in range(hi - lo):
            ends.append(p.emit("split", None, None))
            self.seq(sub)
        for s in ends:
            p.code[s] = ("split", s + 1, len(p.code))


class LinearRegex:
    """``search(text) -> bool`` in time linear in ``len(text)``; ``steps`` accumulates the work done."""

    def __init__(self, pattern: str) -> None:
        try:
            parsed = _p.parse(pattern, re.IGNORECASE | re.ASCII)
        except re.error as exc:
            raise UnsupportedPattern(f"invalid regular expression: {exc}") from None
        except (OverflowError, RecursionError) as exc:
            raise UnsupportedPattern(f"pattern too large: {exc}") from None
        comp = _Compiler()
        comp.seq(parsed)
        comp.prog.emit("match")
        self.pattern = pattern
        self.code = comp.prog.code
        self.steps = 0
        self._states: dict[frozenset[int], int] = {}
        self._sets: list[frozenset[int]] = []
        self._cache: dict[tuple[int, int, str | None], tuple[int, bool]] = {}
        self._start = self._intern(frozenset({0}))
        self._lock = threading.Lock()

    def _intern(self, s: frozenset[int]) -> int:
        sid = self._states.get(s)
        if sid is None:
            sid = self._states[s] = len(self._sets)
            self._sets.append(s)
        return sid

    def _step(self, sid: int, prev: int, ch: str | None) -> tuple[int, bool]:
        """Follow epsilon edges from state set ``sid`` at a position between ``prev`` and ``ch`` (None: end),
        then consume ``ch``. Returns the next state set (with a fresh start thread: unanchored search)
        and whether a match was reached at this position."""
        code = self.code
        cur_word = ch is not None and ch in _WORD
        seen: set[int] = set()
        stack = sorted(self._sets[sid], reverse=True)
        nxt: set[int] = {0}
        matched = False
        while stack:
            pc = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            self.steps += 1
            ins = code[pc]
            kind = ins[0]
            if kind == "char":
                if ch is not None and ins[1](ch):
                    nxt.add(pc + 1)
            elif kind == "split":
                stack += (ins[2], ins[1])
            elif kind == "jmp":
                stack.append(ins[1])
            elif kind == "assert":
                a = ins[1]
                at_b = (prev == _WORDCH) != cur_word
                ok = (a == "bol" and prev == _START) or (a == "eol" and ch is None) or (a == "b" and at_b)
                if ok or (a == "B" and not at_b):
                    stack.append(pc + 1)
            else:
                matched = True
                break
        return self._intern(frozenset(nxt)), matched

    def search(self, text: str) -> bool:
        with self._lock:  # the caches are shared by the guard's worker threads
            return self._search(text)

    def _search(self, text: str) -> bool:
        sid, prev = self._start, _START
        cache = self._cache
        for ch in text:
            key = (sid, prev, ch)
            hit = cache.get(key)
            if hit is None:
                if len(cache) >= _MAX_CACHE or len(self._sets) >= _MAX_CACHE:
                    current = self._sets[sid]
                    cache.clear()
                    self._states.clear()
                    self._sets.clear()
                    self._start = self._intern(frozenset({0}))
                    sid = self._intern(current)
                    key = (sid, prev, ch)
                hit = cache[key] = self._step(sid, prev, ch)
            else:
                self.steps += 1
            if hit[1]:
                return True
            sid, prev = hit[0], (_WORDCH if ch in _WORD else _NONWORD)
        return self._step(sid, prev, None)[1]
