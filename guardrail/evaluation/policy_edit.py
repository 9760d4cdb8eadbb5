"""Set rule thresholds in a policy file's YAML *text*, keeping every comment and all formatting.

A policy file is documentation as much as configuration (the bundled ones are mostly comments), so
re-dumping it after a change is not acceptable. Instead the document is composed with PyYAML (nodes
keep their character offsets) and only the characters that must change are replaced:

- a rule with a ``threshold`` gets its value replaced, nothing else;
- a rule without one gets ``threshold: X`` added after its ``category`` (same indentation, or
  ``, threshold: X`` inside a flow mapping);
- a category with no rule in this file (inherited through ``extends``, or new) gets a one-line flow
  rule appended to the stage's ``rules`` (a block or flow sequence), or a new ``rules:`` list, or a
  new stage section at the end of the file.

The caller validates the result by loading it (see :func:`guardrail.evaluation.calibrate_cmd`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from guardrail.errors import PolicyError

__all__ = ["RuleEdit", "apply_edits", "flow_rule", "format_threshold"]


@dataclass(frozen=True, slots=True)
class RuleEdit:
    stage: str
    category: str
    threshold: float
    rule: Mapping[str, Any]  # the whole rule, used when the file has no rule for the category
    comment: str = ""


def format_threshold(t: float) -> str:
    if not 0.0 <= t <= 1.0 or math.isnan(t):
        raise ValueError(f"threshold {t!r} is not within [0, 1]")
    text = f"{t:.6f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def flow_rule(rule: Mapping[str, Any]) -> str:
    """A rule as one YAML flow mapping, e.g. ``{category: weapons, threshold: 0.42, action: block}``."""
    parts = []
    order = ["category", "threshold"]
    rule = {k: rule[k] for k in [*order, *(k for k in rule if k not in order)] if k in rule}
    for key, value in rule.items():
        if key == "threshold" and isinstance(value, float):
            parts.append(f"threshold: {format_threshold(value)}")
            continue
        dumped = yaml.safe_dump(value, default_flow_style=True, width=1 << 30, allow_unicode=True)
        parts.append(f"{key}: {dumped.strip().removesuffix('...').strip()}")
    return "{" + ", ".join(parts) + "}"


def _get(node: MappingNode, key: str) -> tuple[ScalarNode, Node] | None:
    for k, v in node.value:
        if isinstance(k, ScalarNode) and k.value == key:
            return k, v
    return None


def _last_end(node: Node) -> int:
    """Offset just past the node's last character (block collections end at their last leaf)."""
    if isinstance(node, ScalarNode) or getattr(node, "flow_style", False):
        return int(node.end_mark.index)
    children: list[Node] = []
    if isinstance(node, MappingNode):
        children = [n for kv in node.value for n in kv]
    elif isinstance(node, SequenceNode):
        children = list(node.value)
    return max((_last_end(c) for c in children), default=int(node.end_mark.index))


def _after_line_of(text: str, end: int) -> int:
    """Where a new line goes after the line holding offset ``end`` (trailing blank lines skipped)."""
    while end > 0 and text[end - 1] in " \t\r\n":
        end -= 1
    pos = text.find("\n", end)
    return len(text) if pos < 0 else pos


def apply_edits(text: str, edits: list[RuleEdit], origin: str = "<policy>") -> str:
    """The policy text with every edit applied (see the module docstring)."""
    # (start, end, order, replacement), applied back to front: at one offset a higher order is applied
    # first and so ends up later in the text (a threshold line, order 0, stays under its category)
    inserts: list[tuple[int, int, int, str]] = []
    appended: dict[str, list[RuleEdit]] = {}
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, MappingNode):
        raise PolicyError("the top level must be a mapping", file=origin)
    for edit in edits:
        t = format_threshold(edit.threshold)
        stage = _get(root, edit.stage)
        rules = _get(stage[1], "rules") if stage and isinstance(stage[1], MappingNode) else None
        item = None
        if rules is not None and isinstance(rules[1], SequenceNode):
            for node in rules[1].value:
                cat = _get(node, "category") if isinstance(node, MappingNode) else None
                if cat is not None and isinstance(cat[1], ScalarNode) and cat[1].value == edit.category:
                    item = node
        if item is None:
            appended.setdefault(edit.stage, []).append(edit)
            continue
        assert isinstance(item, MappingNode)
        found = _get(item, "threshold")
        if found is not None:
            v = found[1]
            inserts.append((v.start_mark.index, v.end_mark.index, 0, t))
            continue
        key, val = _get(item, "category")  # type: ignore[misc]
        if item.flow_style:
            inserts.append((val.end_mark.index, val.end_mark.index, 0, f", threshold: {t}"))
        else:
            pos = _after_line_of(text, val.end_mark.index)
            inserts.append((pos, pos, 0, "\n" + " " * key.start_mark.column + f"threshold: {t}"))
    # input before output: both may land at the end of the file, where document order decides
    for n, stage_name in enumerate(sorted(appended, key=lambda st: (st != "input", st))):
        start, end, new = _append_rules(text, root, stage_name, appended[stage_name], origin)
        inserts.append((start, end, 1 + n, new))
    for start, end, _, new in sorted(inserts, key=lambda x: x[:3], reverse=True):
        text = text[:start] + new + text[end:]
    return text


def _append_rules(
    text: str, root: MappingNode, stage_name: str, group: list[RuleEdit], origin: str
) -> tuple[int, int, str]:
    rules_src = [flow_rule({**e.rule, "threshold": e.threshold}) for e in group]
    notes = [f"# {e.comment}" if e.comment else "" for e in group]
    stage = _get(root, stage_name)
    if stage is None:  # a whole new section at the end of the file
        lines = [f"{stage_name}:", "  rules:"]
        for rule, note in zip(rules_src, notes, strict=True):
            lines += [f"    {note}"] if note else []
            lines.append(f"    - {rule}")
        pos = _after_line_of(text, len(text))
        return pos, pos, ("\n" if pos else "") + "\n".join(lines) + ("\n" if pos == len(text) else "")
    node = stage[1]
    if not isinstance(node, MappingNode) or node.flow_style:
        raise PolicyError(f"cannot add rules to `{stage_name}` here: write it as a block mapping", file=origin)
    rules = _get(node, "rules")
    if rules is None:
        indent = " " * (node.value[0][0].start_mark.column if node.value else 2)
        lines = [f"{indent}rules:"]
        for rule, note in zip(rules_src, notes, strict=True):
            lines += [f"{indent}  {note}"] if note else []
            lines.append(f"{indent}  - {rule}")
        pos = _after_line_of(text, _last_end(node))
        return pos, pos, "\n" + "\n".join(lines)
    seq = rules[1]
    if not isinstance(seq, SequenceNode):
        raise PolicyError(f"`{stage_name}.rules` is not a list", file=origin)
    if seq.flow_style:
        close = seq.end_mark.index - 1  # the "]"
        sep = ", " if seq.value else ""
        return close, close, sep + ", ".join(rules_src)
    if not seq.value:
        raise PolicyError(f"`{stage_name}.rules` is empty; add a rule by hand", file=origin)
    dash = " " * seq.start_mark.column
    lines = []
    for rule, note in zip(rules_src, notes, strict=True):
        lines += [f"{dash}{note}"] if note else []
        lines.append(f"{dash}- {rule}")
    pos = _after_line_of(text, _last_end(seq))
    return pos, pos, "\n" + "\n".join(lines)
