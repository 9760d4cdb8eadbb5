"""From policy files to one merged mapping that remembers where every value came from.

This is the file half of :mod:`guardrail.policy`: reading (every way a file can be unusable becomes
a :class:`~guardrail.errors.PolicyError`), YAML parsing with line numbers, bundled names, and the
``extends`` chain (its merge is :mod:`guardrail._policy_merge`). It knows nothing of the schema;
``policy`` validates the result.

Why not ``yaml.safe_load``: it forgets line numbers and silently keeps the last of two duplicate
keys, so a typo'd policy would be reported with no place to jump to, and a pasted-twice key would
quietly win. Here the document is *composed* (nodes keep their marks) and turned into dicts and
lists by hand, recording a :data:`Locations` map from each key path, e.g.
``("input", "rules", 2, "action")``, to the ``(file, line)`` that defined it. The map survives the
``extends`` merge, so an error in an inherited value points at the parent file, not at the child
that merely extended it.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from guardrail._policy_merge import RULE_LISTS, merge_policies
from guardrail._policy_merge import Locations as Locations
from guardrail._policy_merge import PathKey as PathKey
from guardrail._policy_merge import dotted as dotted
from guardrail.errors import PolicyError

MAX_BYTES = 1 << 20  # a policy is a page of YAML; a megabyte means the wrong file was given
_MAX_NODES = 100_000  # bounds alias expansion ("billion laughs") long before memory does
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
BUNDLED_POLICIES: tuple[str, ...] = ("default", "strict", "permissive", "monitor")
_PKG_DIR = Path(__file__).resolve().parent


def bundled_policy_dir() -> Path:
    """The bundled policies: inside the package in a wheel, beside it in a checkout or editable install."""
    candidates = (_PKG_DIR / "policies", _PKG_DIR.parent / "policies")
    return next((c for c in candidates if c.is_dir()), candidates[0])


def read_text(path: Path) -> str:
    """Read a policy file as UTF-8 text, turning every way a file can be unusable into a PolicyError."""
    file = str(path)
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise PolicyError("is a directory, not a policy file", file=file)
        if not stat.S_ISREG(mode):  # a FIFO or device would block or never end
            raise PolicyError("not a regular file", file=file)
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise PolicyError("file not found", file=file) from None
    except (OSError, ValueError) as exc:  # ValueError: embedded NUL in the path
        raise PolicyError(f"cannot read file: {exc}", file=file) from None
    if len(raw) > MAX_BYTES:
        raise PolicyError(f"file is larger than {MAX_BYTES} bytes; is it really a policy?", file=file)
    if b"\x00" in raw:
        raise PolicyError("binary file (contains NUL bytes), expected YAML text", file=file)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", file=file, line=line) from None
    if not text.strip():
        raise PolicyError("file is empty", file=file, line=1)
    return text


def parse_yaml(text: str, file: str) -> tuple[Any, Locations]:
    """Parse one YAML document into plain data plus the line of every key and list item."""
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # checks for unprintable characters right away
        node = loader.get_single_node()
        if node is None:
            raise PolicyError("file holds no YAML document (only comments?)", file=file, line=1)
        builder = _Builder(loader, file)
        return builder.build(node, ()), builder.locations
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise PolicyError(f"YAML syntax error: {problem}", file=file, line=mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise PolicyError(f"character {exc.character!r} is not allowed in YAML", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"YAML error: {exc}", file=file) from None
    except RecursionError:
        raise PolicyError("YAML is nested too deeply", file=file) from None
    finally:
        if loader is not None:
            loader.dispose()


class _Builder:
    """Walks composed nodes into dicts/lists, recording locations and refusing what a policy never needs."""

    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.locations: Locations = {}
        self.count = 0
        self.active: set[int] = set()  # node ids on the current path: a recursive alias would loop

    def error(self, message: str, node: yaml.Node, path: PathKey) -> PolicyError:
        return PolicyError(message, file=self.file, line=node.start_mark.line + 1, field=dotted(path) or None)

    def build(self, node: yaml.Node, path: PathKey) -> Any:
        self.count += 1
        if self.count > _MAX_NODES:
            raise self.error("document too large (too many values or aliases)", node, path)
        self.locations.setdefault(path, (self.file, node.start_mark.line + 1))
        if isinstance(node, yaml.ScalarNode):
            try:
                return self.loader.construct_object(node, deep=True)
            except (ValueError, TypeError, OverflowError) as exc:  # e.g. "!!int abc", "!!timestamp 2020-13-45"
                raise self.error(f"invalid value for its YAML tag: {exc}", node, path) from None
        if id(node) in self.active:
            raise self.error("recursive YAML alias", node, path)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                if node.tag != _SEQ_TAG:
                    raise self.error(f"unsupported YAML tag {node.tag!r}", node, path)
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, yaml.MappingNode)
            if node.tag != _MAP_TAG:
                raise self.error(f"unsupported YAML tag {node.tag!r}", node, path)
            return self.build_mapping(node, path)
        finally:
            self.active.discard(id(node))

    def build_mapping(self, node: yaml.MappingNode, path: PathKey) -> dict[str, Any]:
        merged: dict[str, Any] = {}  # from "<<: *anchor"; the mapping's own keys may override these
        own: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    value = self.build(source, path)
                    if not isinstance(value, dict):
                        raise self.error("'<<' merge needs a mapping", value_node, path)
                    merged.update(value)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.error("keys must be plain names, not lists or mappings", key_node, path)
            key = str(key_node.value)  # raw text: "on"/"yes"/"1" stay names instead of becoming bools/ints
            sub = (*path, key)
            if key in own:
                raise self.error(f"duplicate key {key!r} (YAML would silently keep the last one)", key_node, sub)
            self.locations[sub] = (self.file, key_node.start_mark.line + 1)
            own[key] = self.build(value_node, sub)
        return {**merged, **own}


def from_mapping(data: Mapping[Any, Any], file: str) -> tuple[dict[str, Any], Locations]:
    """Copy a caller's mapping into plain dicts/lists with string keys (no lines: it has no file)."""

    def copy(value: Any, path: PathKey) -> Any:
        if isinstance(value, Mapping):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    raise PolicyError(f"keys must be strings, got {key!r}", file=file, field=dotted(path) or None)
                out[key] = copy(item, (*path, key))
            return out
        if isinstance(value, list | tuple):
            return [copy(item, (*path, i)) for i, item in enumerate(value)]
        return value

    try:
        return copy(data, ()), {(): (file, None)}
    except RecursionError:
        raise PolicyError("mapping is nested too deeply (or contains itself)", file=file) from None


def is_path_like(ref: str) -> bool:
    """Whether a policy/model reference is a filesystem path rather than a bundled name."""
    return os.sep in ref or "/" in ref or ref.startswith(("~", ".")) or ref.endswith((".yaml", ".yml"))


def is_file(path: Path) -> bool:
    """``Path.is_file`` that says False instead of raising (name too long, NUL byte, no permission)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def expand(ref: str) -> Path:
    """``~`` expanded when possible; ``~nosuchuser`` stays as written and later fails as "not found"."""
    try:
        return Path(ref).expanduser()
    except RuntimeError:
        return Path(ref)


def closest(word: object, choices: list[str] | tuple[str, ...]) -> str | None:
    matches = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


# ------------------------------------------------------------------- files and the extends chain


def resolve_ref(ref: str | os.PathLike[str], base: Path, where: tuple[str, int | None] | None) -> Path:
    """A bundled name or a path (relative to ``base``, the extending file's folder) to a file path."""
    file, line = where or (None, None)
    field = "extends" if where else None
    text = os.fspath(ref)
    if not isinstance(text, str) or not text.strip():
        raise PolicyError("expected a bundled policy name or a file path", file=file, line=line, field=field)
    if isinstance(ref, str) and not is_path_like(text):
        if text in BUNDLED_POLICIES:
            return bundled_policy_dir() / f"{text}.yaml"
        if not is_file(base / text):
            msg = f"unknown bundled policy {text!r} (bundled: {', '.join(BUNDLED_POLICIES)})"
            raise PolicyError(msg, file=file, line=line, field=field, suggestion=closest(text, BUNDLED_POLICIES))
    path = expand(text)
    return path if path.is_absolute() else base / path


def load_file(
    path: Path, chain: tuple[Path, ...], text: str | None = None
) -> tuple[dict[str, Any], Locations, list[Path]]:
    data, locs = parse_yaml(read_text(path) if text is None else text, str(path))
    try:
        real = path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # RuntimeError: symlink loop; ValueError: NUL
        raise PolicyError(f"cannot resolve path: {exc}", file=str(path)) from None
    return prepare(data, locs, str(path), path.parent, (*chain, real))


def prepare(
    data: Any, locs: Locations, file: str, base: Path, chain: tuple[Path, ...]
) -> tuple[dict[str, Any], Locations, list[Path]]:
    """Check one file's own shape, normalise its shorthands, then merge it over what it extends."""
    root_line = locs.get((), (file, None))[1]
    if not isinstance(data, dict):
        raise PolicyError("the top level must be a mapping (version: 1, name: ..., input: ...)", file=file, line=1)
    if "version" not in data:
        msg = "missing 'version: 1' (every policy file states its format)"
        raise PolicyError(msg, file=file, line=root_line, field="version")
    version = data["version"]
    if type(version) is not int or version != 1:
        where = locs.get(("version",), (file, root_line))
        raise PolicyError(f"unsupported version {version!r}; expected 1", file=file, line=where[1], field="version")
    data = dict(data)
    extends = data.pop("extends", None)
    if isinstance(data.get("on_block"), str):  # shorthand: "on_block: raise"
        data["on_block"] = {"respond": data["on_block"]}
        locs[("on_block", "respond")] = locs.get(("on_block",), (file, root_line))
    model = data.get("model")
    if isinstance(model, str) and is_path_like(model) and not expand(model).is_absolute():
        data["model"] = str(base / expand(model))  # relative to the file that names it
    files = [Path(file)] if file != "<dict>" else []
    parent: dict[str, Any] = {}
    parent_locs: Locations = {}
    if extends is not None:
        where = locs.get(("extends",), (file, root_line))
        if not isinstance(extends, str):
            raise PolicyError("extends must be a policy name or a path", file=file, line=where[1], field="extends")
        path = resolve_ref(extends, base, where)
        try:
            real = path.resolve()
        except (OSError, RuntimeError, ValueError) as exc:
            raise PolicyError(f"cannot resolve path: {exc}", file=file, line=where[1], field="extends") from None
        if real in chain:
            cycle = " -> ".join(str(p) for p in (*chain, real))
            raise PolicyError(f"cycle: {cycle}", file=file, line=where[1], field="extends")
        if len(chain) >= 16:
            raise PolicyError("extends chain deeper than 16 files", file=file, line=where[1], field="extends")
        try:
            text = read_text(path)
        except PolicyError as exc:
            if exc.line is not None:  # a problem inside the parent (not UTF-8 at line n): its own place
                raise
            # The parent as a whole is unusable (missing, a directory...): the fix is the child's
            # extends line (a typo'd path), so that is where the error points.
            msg = f"cannot extend {extends!r}: {exc.message} ({path})"
            raise PolicyError(msg, file=file, line=where[1], field="extends") from None
        parent, parent_locs, parent_files = load_file(path, chain, text)
        files += parent_files
        # Identity is not inherited: a child that forgot its name must not log as its parent.
        parent = {k: v for k, v in parent.items() if k not in ("name", "description")}
    merged, merged_locs = merge_policies(parent, parent_locs, data, locs)
    return merged, merged_locs, files


def where(locs: Locations, path: PathKey, origin: str) -> tuple[str, int | None]:
    """The file and line of the deepest known part of ``path`` (a missing key: its parent)."""
    for k in range(len(path), -1, -1):
        if path[:k] in locs:
            return locs[path[:k]]
    return origin, None


def located_error(
    message: str, locs: Locations, path: PathKey, origin: str, suggestion: str | None = None
) -> PolicyError:
    file, line = where(locs, path, origin)
    shown = _as_written(locs, path)
    return PolicyError(message, file=file, line=line, field=dotted(shown) or None, suggestion=suggestion)


def _as_written(locs: Locations, path: PathKey) -> PathKey:
    """``path`` with a rule's index as the file that wrote the rule numbers it. After ``extends`` a rule sits in the
    merged list (a child's only rule may be ``input.rules[14]``); the file is read again to find which of its own
    rules starts on that rule's line. Errors only, so the second read costs nothing in normal use."""
    if len(path) < 3 or path[:2] not in RULE_LISTS or not isinstance(path[2], int):
        return path
    file, line = locs.get(path[:3], ("<dict>", None))
    if line is None or file == "<dict>":
        return path
    try:
        _, own = parse_yaml(read_text(Path(file)), file)
    except PolicyError:
        return path
    mine = [k[2] for k, (_, n) in own.items() if len(k) == 3 and k[:2] == path[:2] and n == line]
    return (*path[:2], mine[0], *path[3:]) if len(mine) == 1 and isinstance(mine[0], int) else path
