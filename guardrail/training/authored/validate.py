"""Check authored JSONL files against the schema in README.md: python -m guardrail.training.authored.validate FILE..."""

from __future__ import annotations

import json
import sys

from guardrail.taxonomy import stage_ids


def validate(path: str) -> list[str]:
    problems: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path}:{n}: not JSON: {exc}")
                continue
            stage = row.get("stage", "input")
            if stage not in ("input", "output"):
                problems.append(f"{path}:{n}: stage must be input or output")
                continue
            allowed = set(stage_ids(stage)) - {c for c in stage_ids("output") if c.startswith("dna_")}
            if not isinstance(row.get("text"), str) or not row["text"].strip():
                problems.append(f"{path}:{n}: text missing")
            labels = row.get("labels")
            if not isinstance(labels, list) or any(lab not in allowed for lab in labels):
                problems.append(f"{path}:{n}: labels must be a list of {sorted(allowed)}; got {labels!r}")
                continue
            harm = set(labels) - {"unsafe", "jailbreak", "profanity", "harmful_response", "refusal"}
            if stage == "input" and harm - {"self_harm"} and "unsafe" not in labels:
                problems.append(f"{path}:{n}: harmful category {sorted(harm)} without 'unsafe'")
            if stage == "input" and "prompt" in row:  # read only on output rows: it would be dropped silently
                problems.append(f"{path}:{n}: an input row's system prompt goes in 'context', not 'prompt'")
            if stage == "output":
                if not isinstance(row.get("prompt"), str):
                    problems.append(f"{path}:{n}: output rows need a prompt")
                rc = row.get("response_class")
                if rc is not None and rc not in range(6):
                    problems.append(f"{path}:{n}: response_class must be 0-5")
                if "harmful_response" in labels and "unsafe" not in labels:
                    problems.append(f"{path}:{n}: harmful_response without unsafe")
    return problems


if __name__ == "__main__":
    all_problems = [p for f in sys.argv[1:] for p in validate(f)]
    print("\n".join(all_problems) or "ok")
    sys.exit(1 if all_problems else 0)
