"""Putting the user's values back into a stream's released text (``restore=True``), a placeholder at a time."""

from __future__ import annotations

import re
from collections.abc import Mapping

from guardrail.classifiers.patterns import restore

__all__ = ["Restorer"]

_PARTIAL_PLACEHOLDER = re.compile(r"<[A-Z0-9_]{0,40}\Z")


class Restorer:
    """Maps input placeholders in released text back to the originals (``restore=True``).

    A placeholder can be cut between two releases (``<EMA`` | ``IL_1>``), so an unfinished one at
    the end of a release is held until the next. Placeholders that output redaction created
    (``exclude``) are never mapped back: they hide data the model produced, not the user's own (unless the
    model wrote the user's own value, which keeps the user's placeholder).
    """

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = dict(mapping)
        self.pending = ""

    def feed(self, text: str, exclude: Mapping[str, str] | None = None) -> str:
        if not self.mapping:
            return text
        s = self.pending + text
        m = _PARTIAL_PLACEHOLDER.search(s)
        cut = m.start() if m else len(s)
        self.pending = s[cut:]
        return self._restore(s[:cut], exclude)

    def flush(self, exclude: Mapping[str, str] | None = None) -> str:
        s, self.pending = self.pending, ""
        return self._restore(s, exclude)

    def _restore(self, text: str, exclude: Mapping[str, str] | None) -> str:
        if not text:
            return text
        mapping = {k: v for k, v in self.mapping.items() if not exclude or exclude.get(k, v) == v}
        return restore(text, mapping)
