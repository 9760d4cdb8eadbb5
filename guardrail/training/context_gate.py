"""Choose a model's ``context_reading`` (gate, threshold): how the runtime reads a user text with its system prompt.

With ``input.system_context: true`` the engine reads a text again with the system prompt only when its
``jailbreak`` score alone reaches the gate, and counts that reading only for ``jailbreak``, only at or above the
threshold (``guardrail._context``). Why a gate: read ungated, the bundled model flagged 3.3% of ordinary dev prompts
behind an unseen system prompt as jailbreaks (0.3% alone), because every system prompt it saw in training came with
an injection or its clean twin. The choice, on dev rows (session 20's rule, /work/runs/s20/ctxgate_rule.md): 600
ordinary dev prompts (benign, not hard negatives), each behind one of the held-out system prompts, and the dev
injections that carry their own system prompt; the pair on the grid that catches the most injections while
flagging at most 0.5 points more ordinary prompts than the text alone; ties go to the higher threshold, then gate.

    python -m guardrail.training.context_gate MODEL_DIR EVAL_ROWS   # prints the choice and what it measured
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guardrail.classifiers.onnx import OnnxClassifier
from guardrail.scoring_form import scoring_form
from guardrail.training.examples import Example
from guardrail.training.measure import is_hard_negative

__all__ = ["GATES", "THRESHOLDS", "choose"]

GATES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
THRESHOLDS = (0.84, 0.86, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98, 0.99)
ADDED_FPR = 0.005  # ordinary prompts flagged behind a system prompt, at most this much above alone


def _jailbreak(clf: OnnxClassifier, texts: Sequence[str], prompts: Sequence[str] | None) -> np.ndarray:
    out: list[float] = []
    for s in range(0, len(texts), 32):
        part = [scoring_form(t) for t in texts[s : s + 32]]
        ctx = None if prompts is None else [scoring_form(p) for p in prompts[s : s + 32]]
        out += [p["jailbreak"] for p in clf.predict(part, stage="input", prompts=ctx)]
    return np.array(out, dtype=np.float64)


OFF: dict[str, Any] = {"enabled": False}  # the runtime then never reads the system prompt


def choose(
    clf: OnnxClassifier, examples: Sequence[Example], system_prompts: Sequence[str], n: int = 600
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(``{"gate", "threshold"}``, what it measured); ``{"enabled": False}`` when it cannot be measured (no ordinary
    dev prompts, no system prompts) or no pair keeps ordinary prompts within the limit: a reading that was not
    shown to be safe is not made. None only for a model without a jailbreak head."""
    heads = {lab.id: lab for lab in clf.info.labels}
    if "jailbreak" not in heads:
        return None
    if not system_prompts:
        return OFF, {"why_off": "no held-out system prompts"}
    t = heads["jailbreak"].thresholds.get("input", heads["jailbreak"].threshold)
    dev = [e for e in examples if e.split == "dev" and e.stage == "input"]
    ordinary = [e for e in dev if e.prompt is None and not any(v == 1.0 for v in e.labels.values())]
    ordinary = [e for e in ordinary if not is_hard_negative(e)]
    injections = [e for e in dev if e.prompt and e.labels.get("jailbreak") == 1.0]
    if not ordinary:
        return OFF, {"why_off": "no ordinary dev prompts"}
    sample = random.Random(0).sample(ordinary, min(n, len(ordinary)))
    behind = [random.Random(10 + i).choice(list(system_prompts)) for i in range(len(sample))]
    o_alone = _jailbreak(clf, [e.text for e in sample], None)
    o_ctx = _jailbreak(clf, [e.text for e in sample], behind)
    i_alone = _jailbreak(clf, [e.text for e in injections], None)
    i_ctx = _jailbreak(clf, [e.text for e in injections], [str(e.prompt) for e in injections])

    def flagged(alone: np.ndarray, ctx: np.ndarray, gate: float, threshold: float) -> np.ndarray:
        out: np.ndarray = (alone >= t) | ((alone >= gate) & (ctx >= threshold))
        return out

    base = float(np.mean(o_alone >= t))
    best: tuple[tuple[float, float, float], float, float] | None = None
    for gate in GATES:
        for threshold in sorted({max(t, x) for x in THRESHOLDS}):
            if float(np.mean(flagged(o_alone, o_ctx, gate, threshold))) > base + ADDED_FPR + 1e-12:
                continue
            caught = float(np.mean(flagged(i_alone, i_ctx, gate, threshold))) if len(injections) else 0.0
            if best is None or (caught, threshold, gate) > best[0]:
                best = ((caught, threshold, gate), gate, threshold)
    if best is None:
        return OFF, {
            "why_off": "no gate keeps ordinary prompts within the limit",
            "ordinary_flagged_alone": base,
            "ordinary_flagged_ungated": float(np.mean(flagged(o_alone, o_ctx, 0.0, t))),
        }
    _, gate, threshold = best
    none = None  # no injections on dev: unmeasured (JSON null, not NaN)
    measured: dict[str, Any] = {
        "ordinary_flagged_alone": base,
        "ordinary_flagged_behind_a_system_prompt": float(np.mean(flagged(o_alone, o_ctx, gate, threshold))),
        "ordinary_flagged_ungated": float(np.mean(flagged(o_alone, o_ctx, 0.0, t))),
        "n_ordinary": float(len(sample)),
        "n_injections": float(len(injections)),
        "injections_caught_alone": float(np.mean(i_alone >= t)) if len(injections) else none,
        "injections_caught": float(np.mean(flagged(i_alone, i_ctx, gate, threshold))) if len(injections) else none,
    }  # fmt: skip
    return {"gate": gate, "threshold": threshold}, measured


def main(argv: Sequence[str] | None = None) -> int:
    from guardrail.training import eval_rows
    from guardrail.training.system_prompts import read_prompts

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    chosen = choose(OnnxClassifier(args[0], cache_size=0), eval_rows.read(Path(args[1])), read_prompts("heldout"))
    print(json.dumps(None if chosen is None else {"context_reading": chosen[0], "measured": chosen[1]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
