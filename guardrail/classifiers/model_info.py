"""What a model folder's ``labels.json`` says: its heads (stages, calibration, default thresholds), how texts are cut
into windows, the scripts it was measured on, its weight width, and how to read a text with its system prompt.
The one reader of that file (the training pipeline writes it): the runtime asks :meth:`ModelInfo.load`, and a
policy, resolving thresholds a file leaves out, asks :func:`parse_heads` for the heads alone, so both read the same
heads with the same checks."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from guardrail._policy_merge import dotted
from guardrail.classifiers.encoding import EncodingConfig
from guardrail.errors import ClassifierError
from guardrail.taxonomy import Stage

__all__ = ["DEFAULT_THRESHOLD", "LabelInfo", "LabelsFileError", "ModelInfo", "ModelLabel", "parse_heads"]

DEFAULT_THRESHOLD = 0.5  # used when the model ships no calibrated threshold for a head
Probability = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]


class LabelsFileError(ValueError):
    """labels.json cannot be read as a model's heads: ``line`` for broken JSON, ``field`` (``labels[2].threshold``)
    for a head that says something impossible. Callers add the file and raise their own kind of error."""

    def __init__(self, message: str, *, line: int | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.line, self.field = message, line, field


class ModelLabel(BaseModel):
    """One head of a model, as its ``labels.json`` describes it (other keys there are ignored).

    Calibration may differ by stage (a prompt and a response score differently), so a per-stage
    ``thresholds`` entry wins over the single ``threshold``.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str
    stages: tuple[Stage, ...] = ("input", "output")
    threshold: Probability = DEFAULT_THRESHOLD
    thresholds: dict[Stage, Probability] = {}

    def threshold_for(self, stage: Stage) -> float:
        return self.thresholds.get(stage, self.threshold)


def parse_heads(text: str) -> tuple[dict[str, Any], dict[str, ModelLabel]]:
    """labels.json's text as (the whole object, its heads by id), every head checked; :class:`LabelsFileError` else."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelsFileError(f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except RecursionError:
        raise LabelsFileError("JSON nested too deeply") from None
    items = raw.get("labels") if isinstance(raw, dict) else None
    if not isinstance(items, list):
        raise LabelsFileError('expected {"labels": [{"id": ..., "stages": [...], "threshold": ...}]}')
    heads: dict[str, ModelLabel] = {}
    for i, item in enumerate(items):
        try:
            label = ModelLabel.model_validate(item)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            raise LabelsFileError(err["msg"], field=dotted(("labels", i, *err["loc"]))) from None
        if label.id in heads:
            raise LabelsFileError(f"head {label.id!r} is listed twice", field=dotted(("labels", i, "id")))
        heads[label.id] = label
    return raw, heads


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
            raw, heads = parse_heads((folder / "labels.json").read_text(encoding="utf-8"))
            labels = tuple(
                LabelInfo(
                    id=head.id,
                    index=int(lab["index"]),
                    stages=head.stages,
                    kind=str(lab.get("kind", "sigmoid")),
                    threshold=head.threshold,
                    thresholds={str(k): v for k, v in head.thresholds.items()},
                    a=float(lab.get("calibration", {}).get("a", 1.0)),
                    b=float(lab.get("calibration", {}).get("b", 0.0)),
                )
                for lab, head in zip(raw["labels"], heads.values(), strict=True)
            )
            enc = EncodingConfig(**raw.get("encoding", {}))
        except FileNotFoundError as exc:
            raise ClassifierError(f"no labels.json in model folder {folder}", classifier="onnx") from exc
        except LabelsFileError as exc:
            where = exc.field or (f"line {exc.line}" if exc.line else "")
            raise ClassifierError(
                f"malformed labels.json in {folder}: {where + ': ' if where else ''}{exc.message}", classifier="onnx"
            ) from exc
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
