"""Reading JSON Lines: the one loop behind replay traffic, evaluation data, ``guardrail check --file`` and JSONL
policy-test suites.

Lines are split as JSONL defines them (at line ends), never with ``str.splitlines()``: that also splits at U+2028,
U+2029, U+0085 and other separators that JSON allows raw inside a string, so a valid row would be cut in two and
rejected. A UTF-8 byte-order mark at the start (Windows editors write one) is not part of the first row. Undecodable
bytes become U+FFFD in :func:`read_jsonl` (one corrupt byte does not lose a traffic file); a reader that must refuse
them (a policy-test suite, whose case text would silently change) decodes the file itself and calls
:func:`parse_jsonl`. A line that is not JSON is a :class:`JsonlError` (a ``ValueError``) naming ``file:line``.

An object with the same key twice is refused too, naming the key: ``json.loads`` keeps the last value, so in
``{"text": "hi", "text": "<the harmful one>"}`` the first text would never be checked or counted, while the
policy and suite YAML loaders and the HTTP service refuse the same thing. What a row must look like is the
caller's business.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["DuplicateKey", "JsonlError", "parse_jsonl", "read_jsonl", "split_lines", "unique_object"]


class JsonlError(ValueError):
    """A line that cannot be read as one JSON value; ``file``, ``line`` and ``problem`` kept for callers that
    report errors their own way (a suite's PolicyError)."""

    def __init__(self, problem: str, file: str, line: int) -> None:
        self.problem, self.file, self.line = problem, file, line
        super().__init__(f"{file}:{line}: {problem}")


class DuplicateKey(ValueError):
    """One JSON object holding a key twice, raised from inside ``json.loads`` (:func:`unique_object`). JSON's own
    reading keeps the last silently, so the first (perhaps the text to check) would never be read; every reader of
    JSON the project takes from outside (JSONL files here, ``guardrail serve``'s bodies) refuses it."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s ``object_pairs_hook``: the object, or :class:`DuplicateKey`."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise DuplicateKey(key)
        obj[key] = value
    return obj


def parse_jsonl(lines: Iterable[str], origin: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line of ``lines`` (already split at line ends)."""
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line, object_pairs_hook=unique_object)
        except json.JSONDecodeError as exc:
            raise JsonlError(f"not valid JSON ({exc.msg})", origin, n) from None
        except DuplicateKey as exc:
            raise JsonlError(f"duplicate key {exc.key!r} (JSON would silently keep the last one)", origin, n) from None
        yield n, value


def split_lines(text: str) -> Iterator[str]:
    """``text`` split at ``\\n``, ``\\r\\n`` and ``\\r`` only, as a file opened in text mode is (JSON allows none of
    them raw inside a string, unlike the separators ``str.splitlines()`` also splits at)."""
    return iter(io.StringIO(text, newline=None))


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line of ``path``."""
    p = Path(path)
    with open(p, encoding="utf-8-sig", errors="replace") as fh:
        yield from parse_jsonl(fh, str(p))
