"""Reading ../shared/data files for the converters (gzip or plain text, CSV, JSON lines) and the project's own
per-row label review; the ``Source`` record the registry (guardrail.training.sources) lists.

Why one module: every converter module reads the same file kinds the same way, and the review table is cached
once per process whichever converter asks for it.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from guardrail.training.examples import Example, full_labels, text_key

HERE = Path(__file__).parent
LABELS_DIR = HERE / "labels"
# the data root of ``guardrail train --no-public-data``: a path that is never a folder, and the sign (recorded in a
# run's config) that no public source was read, not even one shipped in a wheel (dataset.load_sources)
NO_PUBLIC_DATA = Path(os.devnull) / "no-public-data"

Converter = Callable[[Path], Iterator[Example]]


@dataclass(frozen=True)
class Source:
    name: str
    convert: Converter
    licence: str
    cap: int | None = None  # rows kept per source (after a seeded shuffle)
    weight: float = 1.0
    holdout: bool = False
    note: str = ""

    @property
    def restricted(self) -> bool:
        """Non-commercial, share-alike, copyleft or unlicensed data (dropped by --exclude-noncommercial)."""
        lic = self.licence.lower()
        return any(k in lic for k in ("nc", "gpl", "none stated", "no licence", "research"))


def open_data(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def csv_rows(path: Path, **kw: Any) -> Iterator[dict[str, str]]:
    with open_data(path) as fh:
        yield from csv.DictReader(fh, **kw)


def jsonl_rows(path: Path) -> Iterator[dict[str, Any]]:
    with open_data(path) as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


_label_cache: dict[str, dict[str, list[str]]] = {}


def reviewed_labels(name: str) -> dict[str, list[str]]:
    """Per-row categories assigned by the project's own review (labels/<name>.jsonl, keyed by text hash)."""
    if name not in _label_cache:
        path = LABELS_DIR / f"{name}.jsonl"
        table: dict[str, list[str]] = {}
        if path.exists():
            for row in jsonl_rows(path):
                table[row["key"]] = list(row["labels"])
        _label_cache[name] = table
    return _label_cache[name]


def reviewed(name: str, text: str, fallback: dict[str, float]) -> dict[str, float]:
    """Labels from the review file when the row was reviewed, else the source's coarse labels."""
    labels = reviewed_labels(name).get(text_key(text))
    if labels is None:
        return fallback
    return full_labels(labels)


UNSAFE_ONLY = {"unsafe": 1.0, "jailbreak": 0.0}
