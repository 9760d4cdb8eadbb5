"""The ``extends`` merge: a child policy over its parent, with every value's location following it.

Split from :mod:`guardrail._yaml` (which reads and parses the files) because the merge has rules of its
own that ops rely on: mappings merge deeply, scalars and lists replace, and a stage's rules merge one
category at a time. The :data:`Locations` map moves with the values, so an error in an inherited
value still points at the file and line that wrote it.
"""

from __future__ import annotations

from typing import Any

from guardrail.errors import PolicyError

PathKey = tuple[str | int, ...]
Locations = dict[PathKey, tuple[str, int | None]]
RULE_LISTS: frozenset[PathKey] = frozenset({("input", "rules"), ("output", "rules")})


def merge_policies(
    parent: dict[str, Any], parent_locs: Locations, child: dict[str, Any], child_locs: Locations
) -> tuple[dict[str, Any], Locations]:
    """Overlay ``child`` on ``parent``: mappings merge deeply, scalars and lists replace.

    ``input.rules`` and ``output.rules`` are the exception, because ops override *one* rule at a
    time: a child rule replaces the parent's rule for the same ``category`` (in the parent's
    position, as a whole: restate every field you want) and any other child rule is appended. A
    category named twice in one file is an error, since which one should win is a guess.
    ``parent`` may be ``{}`` so the duplicate check applies to files that extend nothing.
    """
    merge = _Merge(child_locs)
    data = merge.mapping(parent, child, ())
    locs: Locations = {}
    for source, moves in ((parent_locs, merge.parent_moves), (child_locs, merge.child_moves)):
        for key, where in source.items():
            dst = _relocate(moves, key)
            if dst is not None:
                locs[dst] = where
    locs.update(merge.exact)
    locs[()] = child_locs.get((), parent_locs.get((), ("<dict>", None)))
    return data, locs


class _Merge:
    """One merge, recording where each subtree's locations end up (``None``: dropped).

    Moves are applied once at the end by longest matching prefix, so the cost stays linear in the
    size of the files rather than (keys x locations).
    """

    def __init__(self, child_locs: Locations) -> None:
        self.child_locs = child_locs
        self.parent_moves: dict[PathKey, PathKey | None] = {(): ()}
        self.child_moves: dict[PathKey, PathKey | None] = {}
        self.exact: Locations = {}

    def mapping(self, parent: dict[str, Any], child: dict[str, Any], path: PathKey) -> dict[str, Any]:
        out = dict(parent)
        for key, value in child.items():
            sub = (*path, key)
            if sub in RULE_LISTS and isinstance(value, list):
                base = out.get(key)
                out[key] = self.rules(base if isinstance(base, list) else [], value, sub)
            elif isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = self.mapping(out[key], value, sub)
            else:
                self.parent_moves[sub] = None
                self.child_moves[sub] = sub
                out[key] = value
            if sub in self.child_locs:
                self.exact[sub] = self.child_locs[sub]
        return out

    def rules(self, parent: list[Any], child: list[Any], path: PathKey) -> list[Any]:
        out = list(parent)
        index = {cat: i for i, rule in enumerate(out) if (cat := _category(rule)) is not None}
        seen: set[str] = set()
        for j, rule in enumerate(child):
            cat = _category(rule)
            if cat is not None and cat in seen:
                file, line = self.child_locs.get((*path, j), self.child_locs.get((), ("<dict>", None)))
                raise PolicyError(
                    f"category {cat!r} has two rules on this stage; keep one",
                    file=file,
                    line=line,
                    field=dotted((*path, j, "category")),
                )
            i = index.get(cat, len(out)) if cat is not None else len(out)
            if i == len(out):
                out.append(rule)
            else:
                out[i] = rule
                replaced: PathKey = (*path, i)
                self.parent_moves[replaced] = None
            if cat is not None:
                seen.add(cat)
                index[cat] = i
            moved: PathKey = (*path, j)
            self.child_moves[moved] = (*path, i)
        return out


def _relocate(moves: dict[PathKey, PathKey | None], key: PathKey) -> PathKey | None:
    for k in range(len(key), -1, -1):
        if key[:k] in moves:
            dst = moves[key[:k]]
            return None if dst is None else (*dst, *key[k:])
    return None


def _category(rule: Any) -> str | None:
    """The merge key of a rule: its category, told apart for keyword/pattern rules (they may share one)."""
    cat = rule.get("category") if isinstance(rule, dict) else None
    if not isinstance(cat, str):
        return None
    if rule.get("keywords") or rule.get("patterns"):
        return f"{cat} (keywords/patterns)"
    requires = rule.get("requires")
    if isinstance(requires, dict) and requires:  # a conditional rule is its own rule (self_harm requires unsafe)
        return f"{cat} (requires {', '.join(sorted(map(str, requires)))})"
    return cat


def dotted(path: PathKey) -> str:
    """``("input", "rules", 2, "action")`` -> ``"input.rules[2].action"``: how ops read a field."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
