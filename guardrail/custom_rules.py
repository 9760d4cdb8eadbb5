"""Keyword, regex, allowlist and ban-list matching for policy rules written by ops.

A policy rule may match words instead of (or besides) a model score: ``keywords`` (ban lists of
topics or competitors), ``patterns`` (regular expressions), and ``allow``/``allow_patterns``
(exemptions from a category, each one audited). Everything matches the *normalised* text: NFKC,
invisible characters dropped (what classifiers see, so zero-width tricks do not dodge a ban list),
case-folded and with runs of whitespace collapsed to one space.

- keywords match as whole words by default (``word_boundaries: false`` to match inside words); a
  boundary is any character that is not a letter, digit or ``_``, in every script;
- patterns are compiled when the policy loads, so a bad one is a ``PolicyError`` at file:line. With
  the ``google-re2`` package installed they run on RE2 (linear time); otherwise on
  :mod:`guardrail._linear_re`, which gives the same answers in linear time, so an ops-written
  ``(a+)+$`` cannot hang the guard on hostile input in either case. Matching is case-insensitive;
  ``\\w \\d \\s \\b`` are ASCII (as in RE2); back-references and look-around are refused;
- allow entries exempt a text only when the *whole* normalised text is the phrase (trailing
  ``.!?`` ignored) or the pattern matches all of it. Whole-text matching is deliberate: a
  "contains" exemption would let "kill the process, then kill my neighbour" through; write
  ``.*`` into a pattern to opt into that knowingly.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from guardrail._linear_re import LinearRegex, UnsupportedPattern
from guardrail.scoring_form import scan_form

__all__ = ["Allowlist", "KeywordMatcher", "PatternMatcher", "normalise", "regex_engine"]

Engine = Literal["re2", "linear"]


def regex_engine() -> Engine:
    """``re2`` when the google-re2 package is importable, else the built-in linear matcher."""
    return "re2" if _re2() is not None else "linear"


@functools.lru_cache(maxsize=1)
def _re2() -> Any:
    try:
        import re2
    except ImportError:
        return None
    return re2


def normalise(text: str) -> str:
    """The form custom rules match: scan form, case-folded, whitespace runs as one space."""
    return " ".join(scan_form(text).casefold().split())


class _Search(Protocol):
    def search(self, text: str) -> Any: ...


def _compile_one(pattern: str, engine: Engine) -> _Search:
    """Compile ``pattern`` for ``engine``; ValueError with a reason when it cannot be used."""
    linear = LinearRegex(pattern)  # validates the syntax the same way for both engines
    if engine == "linear":
        return linear
    re2 = _re2()
    opts = re2.Options()
    opts.case_sensitive = False
    opts.log_errors = False
    try:
        return re2.compile(pattern, opts)  # type: ignore[no-any-return]
    except Exception as exc:  # re2.error: a construct RE2 refuses that Python's parser accepted
        raise UnsupportedPattern(f"RE2 cannot compile it: {exc}") from None


class PatternMatcher:
    """Which of several patterns occur in a text (one combined search; per-pattern only on a hit)."""

    def __init__(self, patterns: Sequence[str], engine: Engine | None = None) -> None:
        self.engine: Engine = engine or regex_engine()
        self.patterns = tuple(patterns)
        self._each = [_compile_one(p, self.engine) for p in self.patterns]
        self._any = self._each[0] if len(self._each) == 1 else _compile_one(
            "|".join(f"(?:{p})" for p in self.patterns), self.engine
        )  # fmt: skip

    def hits(self, text: str) -> tuple[str, ...]:
        if not self._any.search(text):
            return ()
        if len(self._each) == 1:
            return self.patterns
        return tuple(p for p, rx in zip(self.patterns, self._each, strict=True) if rx.search(text))


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class KeywordMatcher:
    """Literal phrases, found with ``str.find`` (no regex, so nothing to go exponential)."""

    def __init__(self, keywords: Sequence[str], *, word_boundaries: bool = True) -> None:
        self.keywords = tuple(keywords)
        self._needles = [(k, normalise(k)) for k in self.keywords]
        self.word_boundaries = word_boundaries

    def _occurs(self, needle: str, text: str) -> bool:
        if not self.word_boundaries:
            return needle in text
        start = text.find(needle)
        while start != -1:
            end = start + len(needle)
            left_ok = start == 0 or not (_is_word(text[start - 1]) and _is_word(needle[0]))
            right_ok = end == len(text) or not (_is_word(text[end]) and _is_word(needle[-1]))
            if left_ok and right_ok:
                return True
            start = text.find(needle, start + 1)
        return False

    def hits(self, text: str) -> tuple[str, ...]:
        return tuple(k for k, n in self._needles if n and self._occurs(n, text))


def _phrase(text: str) -> str:
    return text.rstrip(" .!?")


class Allowlist:
    """Exact phrases and whole-text patterns that exempt a text from one rule."""

    def __init__(self, phrases: Sequence[str], patterns: Sequence[str], engine: Engine | None = None) -> None:
        self._phrases = {_phrase(normalise(p)): p for p in phrases}
        self._patterns = tuple(patterns)
        self._rx = [_compile_one(f"^(?:{p})$", engine or regex_engine()) for p in patterns]

    def exempts(self, text: str) -> str | None:
        """The entry that exempts the normalised ``text``, or None."""
        hit = self._phrases.get(_phrase(text))
        if hit is not None:
            return hit
        return next((p for p, rx in zip(self._patterns, self._rx, strict=True) if rx.search(text)), None)


@functools.lru_cache(maxsize=1024)
def keyword_matcher(keywords: tuple[str, ...], word_boundaries: bool) -> KeywordMatcher:
    return KeywordMatcher(keywords, word_boundaries=word_boundaries)


@functools.lru_cache(maxsize=1024)
def pattern_matcher(patterns: tuple[str, ...]) -> PatternMatcher:
    return PatternMatcher(patterns)


@functools.lru_cache(maxsize=1024)
def allowlist(phrases: tuple[str, ...], patterns: tuple[str, ...]) -> Allowlist:
    return Allowlist(phrases, patterns)


def check_pattern(pattern: str) -> str | None:
    """Why ``pattern`` cannot be used in a policy (None: it can), for load-time errors."""
    try:
        _compile_one(pattern, regex_engine())
    except UnsupportedPattern as exc:
        return str(exc)
    return None
