"""Reading JSON Lines files: the one loop behind replay traffic, evaluation data and ``guardrail check --file``.

Lines are split as JSONL defines them (at line ends), never with ``str.splitlines()``: that also splits at U+2028,
U+2029, U+0085 and other separators that JSON allows raw inside a string, so a valid row would be cut in two and
rejected. A UTF-8 byte-order mark at the start (Windows editors write one) is not part of the first row. Undecodable
bytes become U+FFFD (one corrupt byte does not lose the file); a line that is not JSON is a
``ValueError`` naming ``file:line``. What a row must look like is the caller's business.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["read_jsonl"]


def read_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line of ``path``."""
    p = Path(path)
    with open(p, encoding="utf-8-sig", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{p}:{n}: not valid JSON ({exc.msg})") from None
            yield n, value
