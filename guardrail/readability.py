"""How English a text reads: the normaliser (guardrail.normalize) decodes rot13 or reversed text only
when the decoded reading is more English than the text as written.

Two cheap measures: the share of words that are common English words, and the share of letter pairs
that are common English pairs (for texts of rare words). ``Readings`` measures each text of one
normalisation once: a text that reads as no language is compared several times.
"""

from __future__ import annotations

import re

__all__ = ["Readings", "looks_english"]

_COMMON = frozenset(
    """a about after all also an and any are as at be because been before but by can could did do does
    doing down for from get give go going good had has have he her here him his how i if in into is it
    its just know like make me more my need no not now of on one only or other our out over people please
    she should so some take tell than that the their them then there these they this those through time
    to up us use very want was way we well were what when where which who why will with without would
    write you your step steps best easy someone something anyone help guide instructions explain
    kill bomb build steal hack drug gun poison""".split()  # noqa: SIM905
)
_WORD = re.compile(r"[A-Za-z]{2,}")  # "a" and "I" read the same reversed


def looks_english(text: str) -> float:
    """The share of a text's words that are common English words (0 when it has fewer than 5)."""
    words = _WORD.findall(text[:4000])
    if len(words) < 5:
        return 0.0
    return sum(map(_COMMON.__contains__, map(str.lower, words))) / len(words)


_BIGRAM_TEXT = (
    "th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co me de hi ri ro ic "
    "ne ea ra ce li ch ll be ma si om ur"
)
_BIGRAMS = frozenset(_BIGRAM_TEXT.split())


_BIGRAM_LIST = tuple(sorted(_BIGRAMS))
_LL = re.compile(r"(?=ll)")  # the one common pair that can overlap itself ("lll" holds two)


def _bigram_share(text: str) -> float:
    """The share of the letter pairs within words that are common English pairs (0 under 20 pairs);
    counted with ``str.count`` per pair, not pair by pair: it runs several times on a non-English text."""
    words = _WORD.findall(text[:4000].lower())
    pairs = sum(map(len, words)) - len(words)
    if pairs < 20:
        return 0.0
    joined = " ".join(words)
    common = sum(map(joined.count, _BIGRAM_LIST)) - joined.count("ll") + len(_LL.findall(joined))
    return common / pairs


class Readings:
    """How English each text one ``forms`` call compares reads, each text measured once."""

    def __init__(self) -> None:
        self._english: dict[str, float] = {}
        self._pairs: dict[str, float] = {}

    def english(self, text: str) -> float:
        got = self._english.get(text)
        if got is None:
            got = self._english[text] = looks_english(text)
        return got

    def pairs(self, text: str) -> float:
        got = self._pairs.get(text)
        if got is None:
            got = self._pairs[text] = _bigram_share(text)
        return got

    def better(self, candidate: str, text: str) -> bool:
        """``candidate`` reads as English and ``text`` does not (common words, or common letter pairs)."""
        candidate, text = candidate[:1000], text[:1000]
        old = self.english(text)
        if old >= 0.3:  # reads as English already (the common case: one cheap pass, no decoding tried)
            return False
        new = self.english(candidate)
        if new >= 0.2 and new > old + 0.15:
            return True
        new, old = self.pairs(candidate), self.pairs(text)
        return new >= 0.35 and new > old + 0.12
