"""The process's inference owners: one classifier per model folder, one scheduler per classifier.

Loading an ONNX session costs seconds and hundreds of megabytes, and the scheduler is what batches
concurrent checks for one inference worker: both must exist once per process, however many Guards
and policy reloads there are. Kept apart from :mod:`guardrail.engine` so the decision core reads as
decisions, and so this sharing has one place to change (the ensemble's experts reuse it too).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from guardrail.classifiers.base import Classifier
from guardrail.errors import ClassifierError
from guardrail.scheduler import Scheduler
from guardrail.taxonomy import Stage

if TYPE_CHECKING:
    from guardrail.classifiers.onnx import OnnxClassifier

__all__ = ["model_classifier", "shared_scheduler", "stage_labels"]

_shared_classifiers: dict[str, OnnxClassifier] = {}
_shared_schedulers: dict[int, Scheduler] = {}
_by_model_name: dict[str, OnnxClassifier] = {}
_shared_lock = threading.Lock()


def model_classifier(model: str) -> Classifier:
    """One OnnxClassifier per model folder per process: reloading a policy never reloads the model."""
    clf = _by_model_name.get(model)  # the hot path: no filesystem call per check
    if clf is not None:
        return clf
    from guardrail.classifiers.onnx import OnnxClassifier, resolve_model_dir

    folder = resolve_model_dir(model)
    key = str(folder.resolve())
    with _shared_lock:
        clf = _shared_classifiers.get(key)
        if clf is None:
            if not (folder / "model.onnx").exists():
                raise ClassifierError(
                    f"no model installed at {folder} (policy model {model!r}); pass classifiers=... or "
                    "point the policy's `model:` at a model folder",
                    classifier="onnx",
                )
            clf = _shared_classifiers[key] = OnnxClassifier(folder)
        _by_model_name[model] = clf
        return clf


def shared_scheduler(clf: Classifier) -> Scheduler:
    """The one inference owner of a process-wide model classifier (every Guard on it shares it)."""
    sched = _shared_schedulers.get(id(clf))
    if sched is None:
        with _shared_lock:
            sched = _shared_schedulers.get(id(clf))
            if sched is None:
                sched = _shared_schedulers[id(clf)] = Scheduler(clf)
    return sched


def stage_labels(clf: Classifier, stage: Stage) -> frozenset[str]:
    """The labels ``clf`` scores on ``stage`` (a classifier may say, as the ONNX model does)."""
    per_stage = getattr(clf, "stage_labels", None)
    return frozenset(per_stage(stage)) if callable(per_stage) else clf.labels
