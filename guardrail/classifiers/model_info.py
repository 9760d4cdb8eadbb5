"""What a model folder's ``labels.json`` says: its heads (stages, calibration, default thresholds), how texts are cut
into windows, the scripts it was measured on, its weight width, and how to read a text with its system prompt.
The runtime's one reader of that file (the training pipeline writes it)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guardrail.classifiers.encoding import EncodingConfig
from guardrail.errors import ClassifierError
from guardrail.taxonomy import Stage

__all__ = ["LabelInfo", "ModelInfo"]


@dataclass(frozen=True, slots=True)
class LabelInfo:
    id: str
    index: int
    stages: tuple[Stage, ...]
    kind: str  # "sigmoid" or "softmax" (the Do-Not-Answer response-class group)
    threshold: float
    thresholds: dict[str, float]
    a: float
    b: float


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    labels: tuple[LabelInfo, ...]
    encoding: EncodingConfig
    scripts: frozenset[str] | None = None  # writing systems the model was measured on (None: not stated)
    weight_bits: int = 8  # 7 since weights were narrowed so that no CPU saturates (guardrail/classifiers/cpu.py)
    # (gate, threshold) of the jailbreak-only reading of a text with its system prompt (guardrail._context)
    context_reading: tuple[float, float] | None = None

    @classmethod
    def load(cls, folder: Path) -> ModelInfo:
        try:
            raw = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
            labels = tuple(
                LabelInfo(
                    id=str(lab["id"]),
                    index=int(lab["index"]),
                    stages=tuple(lab["stages"]),
                    kind=str(lab.get("kind", "sigmoid")),
                    threshold=float(lab.get("threshold", 0.5)),
                    thresholds={str(k): float(v) for k, v in lab.get("thresholds", {}).items()},
                    a=float(lab.get("calibration", {}).get("a", 1.0)),
                    b=float(lab.get("calibration", {}).get("b", 0.0)),
                )
                for lab in raw["labels"]
            )
            enc = EncodingConfig(**raw.get("encoding", {}))
        except FileNotFoundError as exc:
            raise ClassifierError(f"no labels.json in model folder {folder}", classifier="onnx") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise ClassifierError(f"malformed labels.json in {folder}: {exc}", classifier="onnx") from exc
        scripts = raw.get("scripts")
        try:
            bits = int(raw.get("weight_bits", 8))
        except (TypeError, ValueError) as exc:
            raise ClassifierError(f"malformed labels.json in {folder}: weight_bits: {exc}", classifier="onnx") from exc
        return cls(
            str(raw.get("name", folder.name)), labels, enc, frozenset(map(str, scripts)) if scripts else None, bits,
            _context_reading(raw.get("context_reading"), folder),
        )  # fmt: skip

    def for_stage(self, stage: Stage) -> tuple[LabelInfo, ...]:
        return tuple(lab for lab in self.labels if stage in lab.stages)


def _context_reading(raw: Any, folder: Path) -> tuple[float, float] | None:
    """labels.json's ``context_reading``: ``{gate, threshold}``, both probabilities, or ``{"enabled": false}`` when
    no pair kept ordinary prompts within the limit (then no text reaches the gate: the system prompt is never read);
    None when absent."""
    if raw is None:
        return None
    if isinstance(raw, dict) and raw.get("enabled") is False:
        return math.inf, math.inf
    try:
        gate, threshold = float(raw["gate"]), float(raw["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ClassifierError(
            f"malformed labels.json in {folder}: context_reading needs numbers 'gate' and 'threshold' ({exc!r})",
            classifier="onnx",
        ) from exc
    if not (0.0 <= gate <= 1.0 and 0.0 <= threshold <= 1.0):
        raise ClassifierError(
            f"malformed labels.json in {folder}: context_reading gate and threshold must lie in [0, 1]",
            classifier="onnx",
        )
    return gate, threshold
