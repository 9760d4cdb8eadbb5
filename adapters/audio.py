"""An answer's audio (chat completions with ``modalities: ["audio"]``): what is held of a stream, and how it is edited.

Sound cannot be edited. When masking changes an answer's transcript, the audio's data is emptied, since its sound
would still say the value the transcript now hides; restoring the user's own values keeps it. A stream's audio is
held until its last check when it may be edited (``ChatStream``), and a transcript is edited whole: a value can be
cut between two deltas.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from .actions import mask_and_restore, own_redaction, without_fields
from .answer_text import _ACTIONS, _get, _put, unescape_json
from .json_edits import Edit

__all__ = ["edit_held_audio", "has_audio", "only_audio", "without_audio"]


def without_audio(chunk: Any) -> Any | None:
    """A copy of ``chunk`` without its audio (what else it carries: the role, a finish reason, usage), or None."""
    return without_fields(chunk, ("audio",))


def only_audio(chunk: Any) -> Any:
    """A copy of ``chunk`` with its audio alone (the role, finish reason and usage go out with ``without_audio``)."""
    out = copy.deepcopy(chunk)
    if _get(out, "usage") is not None:
        _put(out, "usage", None)
    for c in _get(out, "choices") or []:
        _put(c, "finish_reason", None)
        if (delta := _get(c, "delta")) is not None:
            for name in ("content", "role", *_ACTIONS):
                if name != "audio" and _get(delta, name) is not None:
                    _put(delta, name, None)
    return out


def has_audio(chunk: Any) -> bool:
    """Whether a chat stream chunk carries part of the answer's audio (its sound or its transcript)."""
    return any(_get(_get(c, "delta"), "audio") for c in _get(chunk, "choices") or [] if _get(c, "delta") is not None)


def edit_held_audio(
    chunks: list[Any],
    entities: frozenset[str],
    restore_map: Mapping[str, str],
    reserved: frozenset[str] = frozenset(),
    taken: dict[str, str] | None = None,
) -> list[Any] | None:
    """A streamed answer's audio chunks (held until its last check), each choice's transcript redacted as the
    policy redacts the answer's text (``entities``) and the input's values restored (``restore_map``). A value can
    be cut between two transcript deltas, so a transcript is edited whole: when an edit changes it, it goes whole
    in the choice's first audio delta (a client joins the deltas in order). Masking also empties the choice's
    sound, which would still say the value; a restore keeps it. Unchanged chunks are returned as they came; None
    when a value to mask is still readable after masking (written as escapes, as the check reads them): the
    caller stops the answer, as for a whole answer's audio."""
    out = copy.deepcopy(chunks)
    audio: dict[int, list[Any]] = {}
    for chunk in out:
        for c in _get(chunk, "choices") or []:
            if (a := _get(_get(c, "delta"), "audio")) is not None:
                audio.setdefault(_get(c, "index") or 0, []).append(a)
    changed = False
    for parts in audio.values():
        transcript = "".join(_get(a, "transcript") or "" for a in parts)
        own = own_redaction(unescape_json(transcript), entities, reserved, taken)
        edited = [transcript]

        def apply(edit: Edit, _masking: bool, edited: list[str] = edited) -> None:
            edited[0] = edit(edited[0])

        def read(edited: list[str] = edited) -> str:
            return unescape_json(edited[0])

        if not mask_and_restore(apply, read, own, restore_map):  # the one mask, check and restore of an action
            return None
        new = edited[0]
        if new == transcript:
            continue
        changed = True
        for i, a in enumerate(parts):
            _put(a, "transcript", "" if i else new)
            if own and _get(a, "data"):
                _put(a, "data", "")
    return out if changed else chunks
