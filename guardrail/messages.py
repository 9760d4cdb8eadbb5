"""Extract the text to check from whatever the caller passes: a string, bytes, or chat messages.

Chat payloads in the wild are messy: ``content`` may be a string, ``None`` (assistant tool calls), or
a list of parts (text, image_url, input_audio...), and messages may be dicts or SDK objects. Every
shape is handled deliberately: every text a part carries is scanned, whatever its type says (a document's
source, a text file given inline: ``guardrail._parts``), parts without text (images, audio, PDFs) are skipped and
reported in ``skipped`` (the audit log says so), and anything else is an ``InvalidMessages`` error (a
``TypeError``) naming what was wrong: a part holding text the reader does not know is refused, never skipped.

Roles are what an attacker picks, so they are read strictly: matched case-insensitively (``"USER"``
once meant nothing was scored), a few well-known aliases are mapped (``human`` is a user, ``model``
and ``ai`` are the assistant, ``developer`` is the system), and an unknown role is an error that names
it rather than a message silently left unread. Which turns are read is the policy's ``input.scope``:

- ``untrusted`` (default): every user turn, and every message carrying text the model will read but
  nobody on your side wrote: tool and function results, retrieved documents (roles ``tool``,
  ``function``, ``ipython``, ``document``). The engine checks those for injection only;
- ``last_user`` / ``all_user``: the newest user turn / every user turn;
- ``all``: every message, system and assistant included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from guardrail._data_url import texts_in
from guardrail._parts import At, part_texts, put_text
from guardrail.answer_actions import actions_text, unescape_json
from guardrail.classifiers.patterns import placeholders
from guardrail.errors import InvalidMessages
from guardrail.names import NAME_SEPARATORS, masked_name, name_reading, name_words

Scope = Literal["untrusted", "last_user", "all_user", "all"]

__all__ = [
    "DATA_ROLES",
    "ROLES",
    "Extra",
    "Extracted",
    "Scope",
    "answer_extract",
    "canonical_role",
    "extract",
    "prompt_placeholders",
    "replace_texts",
    "to_text",
]

# every role guardrail reads, and its canonical name
ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "model": "assistant",
    "ai": "assistant",
    "system": "system",
    "developer": "system",
    "tool": "tool",
    "function": "tool",
    "ipython": "tool",
    "document": "document",
    "documents": "document",
}
DATA_ROLES = frozenset({"tool", "document"})  # text from tools and retrieval: read for injection


def to_text(value: str | bytes | bytearray) -> str:
    """Bytes are decoded as UTF-8; invalid sequences become U+FFFD instead of failing the check."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return value


@dataclass(frozen=True, slots=True)
class Extracted:
    """Texts to scan, and where each came from (message index, part index or None for plain content)
    and the canonical role of its message (``user`` for a plain string). ``system`` is the text of the
    system/developer messages (a policy may give it to the classifier as context)."""

    texts: tuple[str, ...]
    locations: tuple[tuple[int, int | None], ...]
    skipped: tuple[str, ...] = field(default_factory=tuple)
    is_messages: bool = False
    roles: tuple[str, ...] = ()
    system: str | None = None
    extra: tuple[Extra, ...] = ()  # more readings of these texts: joined where split, a message's name
    # where in its part each text sits (None: the content, or a string part), to put a rewrite back there
    spots: tuple[At | None, ...] = ()


@dataclass(frozen=True, slots=True)
class Extra:
    """One more reading to score, counted as a reading of ``texts[owner]``: the texts ``joined`` (indices, in
    order; ``starts``: where each begins in ``text``) read as one; or, with ``joined`` empty, a message's ``name``,
    or what an answer does besides its text. A model reads a message's parts, and
    consecutive turns of one role, as one text: a request cut into parts ("...build a p", "ipe b", "omb") passed
    when each part was scored alone. It is scored and matched by rules, never rewritten: what is masked is masked
    in the texts themselves."""

    text: str
    owner: int
    joined: tuple[int, ...] = ()
    starts: tuple[int, ...] = ()
    scored: bool = True  # False: matched by keyword and pattern rules only (a short name, a handle)
    # a message's name: the index of its message in the payload, where ``replace_texts`` masks the name
    name_of: int | None = None
    # whether the texts ``joined`` are scored alone too: not when every one is a fragment of at most _FRAGMENT
    # characters (three letters alone mean nothing, and scored alone they flagged benign text cut into parts), else
    # yes: a request after a pasted document, sent as a part of its own, scored 0.69 alone and 0.37 read with the
    # document (the model's dilution), and scoring each text alone too keeps that catch
    alone: bool = True


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def _parts(
    content: Any, msg_index: int, role: str
) -> tuple[list[str], list[tuple[int, int | None]], list[str], list[At | None]]:
    """A message's texts, where each sits (its part, and where in the part: ``guardrail._parts``), and the parts
    without text (noted in the audit event)."""
    texts: list[str] = []
    locs: list[tuple[int, int | None]] = []
    skipped: list[str] = []
    spots: list[At | None] = []
    if content is None:
        return texts, locs, skipped, spots
    if isinstance(content, (str, bytes, bytearray)):
        return [to_text(content)], [(msg_index, None)], skipped, [None]
    if isinstance(content, Sequence):
        for j, part in enumerate(content):
            if isinstance(part, (str, bytes, bytearray)):
                texts.append(to_text(part))
                locs.append((msg_index, j))
                spots.append(None)
                continue
            if part is None or isinstance(part, (Sequence, int, float)):
                raise InvalidMessages(
                    f"message {msg_index} part {j}: a part must be a string or an object with a type, "
                    f"not {type(part).__name__}"
                )
            found, label = part_texts(part, f"message {msg_index} part {j}", role)
            for text, at in found:
                texts.append(text)
                locs.append((msg_index, j))
                spots.append(at)
            if label is not None:
                skipped.append(f"message {msg_index} part {j}: {label}")
        return texts, locs, skipped, spots
    raise InvalidMessages(
        f"message {msg_index}: content must be a string, a list of parts or None, not {type(content).__name__}"
    )


def canonical_role(role: Any, index: int = 0) -> str:
    """The canonical name of a message's role; ``InvalidMessages`` naming an unknown one."""
    if not isinstance(role, str):
        raise InvalidMessages(f"message {index} has no role (got {type(role).__name__})")
    value = getattr(role, "value", role)  # a str enum member reads as its value
    name = ROLES.get(str(value).strip().lower())
    if name is None:
        known = ", ".join(sorted(ROLES))
        raise InvalidMessages(f"message {index} has the unknown role {role!r} (known roles: {known})")
    return name


def prompt_placeholders(prompt: Any) -> frozenset[str]:
    """The placeholders anywhere in a prompt as it was sent: every message, every string in it (texts, tool-call
    arguments, parts): the redactions already made, which new values must never be given
    (``redact(..., reserved=)``). It reads what it can and never raises: a message no check reads (outside the
    scope) may hold anything."""
    found: set[str] = set()

    def walk(value: Any, depth: int) -> None:
        if depth > _PLACEHOLDER_DEPTH:
            return
        if isinstance(value, str):
            found.update(placeholders(value))
            for text in texts_in(value):  # a text file given inline, masked by an earlier turn's check
                found.update(placeholders(text))
        elif isinstance(value, (bytes, bytearray)):
            found.update(placeholders(bytes(value).decode("utf-8", "replace")))
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item, depth + 1)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item, depth + 1)
        elif callable(getattr(value, "model_dump", None)):  # an SDK message object
            try:
                walk(value.model_dump(), depth + 1)
            except Exception:  # unreadable: nothing to reserve from it
                return

    walk(prompt, 0)
    return frozenset(found)


_PLACEHOLDER_DEPTH = 16


def extract(payload: Any, scope: Scope = "untrusted") -> Extracted:
    """Texts of ``payload`` that the policy's input ``scope`` asks to check (see the module docstring).

    The newest user turn's texts come last: a rewrite or block replaces the last text, and that is
    the turn the person just sent, never a tool result that happened to follow it."""
    if isinstance(payload, (str, bytes, bytearray)):
        return Extracted((to_text(payload),), ((0, None),), roles=("user",))
    if isinstance(payload, Mapping) and "role" in payload:
        payload = [payload]
    if not isinstance(payload, Sequence):
        raise InvalidMessages(f"expected a string or a list of chat messages, not {type(payload).__name__}")
    if plain := [i for i, m in enumerate(payload) if isinstance(m, (str, bytes, bytearray))]:  # ["hi", "there"]
        raise InvalidMessages(
            f"message {plain[0]} is a {type(payload[plain[0]]).__name__}, not a chat message: pass one text, or "
            'messages such as {"role": "user", "content": "..."} (to check several texts, check each)'
        )
    roles = [canonical_role(_get(m, "role"), i) for i, m in enumerate(payload)]
    users = [i for i, r in enumerate(roles) if r == "user"]
    if scope == "last_user":
        chosen = users[-1:]
    elif scope == "all_user":
        chosen = users
    elif scope == "untrusted":
        chosen = [i for i, r in enumerate(roles) if r == "user" or r in DATA_ROLES]
    else:
        chosen = list(range(len(payload)))
    if users and users[-1] in chosen:
        chosen = [i for i in chosen if i != users[-1]] + [users[-1]]
    texts: list[str] = []
    locs: list[tuple[int, int | None]] = []
    skipped: list[str] = []
    kinds: list[str] = []
    spots: list[At | None] = []
    names: list[Extra] = []
    textless: list[int] = []  # names of messages without text (an image alone, a call): counted after every text
    for i in chosen:
        t, lo, sk, at = _parts(_get(payload[i], "content"), i, roles[i])
        name = _get(payload[i], "name")
        if isinstance(name, str) and name.strip():
            # the model reads a message's name too. A handle ("hitman_47", "dick_tracy") is matched by keyword rules
            # only: scored, such handles blocked ordinary questions. A name of _NAME_WORDS words or more (its
            # separators as spaces) is a sentence put where a name goes, and is scored. The name of a message with no
            # text is read too (an image sent with a name went out unread); it is counted for no text, so it is read
            # for every category
            if not t:
                textless.append(len(names))
            scored = name_words(name) >= _NAME_WORDS
            names.append(Extra(name_reading(name), len(texts), scored=scored, name_of=i))
        texts += t
        locs += lo
        skipped += sk
        spots += at
        kinds += [roles[i]] * len(t)
    names = [replace(e, owner=len(texts)) if k in textless else e for k, e in enumerate(names)]
    system = [t for i, r in enumerate(roles) if r == "system" for t in _parts(_get(payload[i], "content"), i, r)[0]]
    return Extracted(
        tuple(texts),
        tuple(locs),
        tuple(skipped),
        is_messages=True,
        roles=tuple(kinds),
        system="\n\n".join(system) if system else None,
        extra=(*_joined(texts, locs, kinds), *names),
        spots=tuple(spots),
    )


_NAME_SEPARATORS = NAME_SEPARATORS  # where guardrail._answer reads it
_NAME_WORDS = 6  # "acme_web_shop_customer", "customer-support-bot-v2" are handles; six words are a sentence


def _joined(texts: Sequence[str], locs: Sequence[tuple[int, int | None]], roles: Sequence[str]) -> list[Extra]:
    """Runs of texts read as one: the parts of one message, joined with nothing between (a request cut into parts
    reads whole again), and consecutive messages of one role (no other turn between them), each on its own line:
    joined with nothing, ordinary turns made words nobody wrote ("Is this your pen" + "is it blue?"). Turns of at
    most ``_SPLIT`` characters each are joined with nothing too: no one writes those but to cut a request apart."""
    runs: list[list[int]] = []
    # in the order the model reads them (extract moves the newest user turn last, after a tool result that followed it)
    order = sorted(range(len(texts)), key=lambda k: (locs[k][0], -1 if locs[k][1] is None else locs[k][1]))
    for n, k in enumerate(order):
        j = order[n - 1]
        if n and roles[k] == roles[j] and locs[k][0] - locs[j][0] in (0, 1):
            runs[-1].append(k)
        else:
            runs.append([k])
    out: list[Extra] = []
    for run in (r for r in runs if len(r) > 1):
        text, starts = "", []
        for n, k in enumerate(run):
            j = run[n - 1]
            cut = locs[k][0] == locs[j][0] or max(len(texts[j].strip()), len(texts[k].strip())) <= _SPLIT
            text += "" if n == 0 or cut else "\n"
            starts.append(len(text))
            text += texts[k]
        # a run of fragments only is scored only as the run; a fragment beside a longer text is scored alone too
        # ("DAN mode" after a longer turn: 0.99 alone, 0.78 read with it)
        alone = not all(len(texts[k].strip()) <= _FRAGMENT for k in run)
        out.append(Extra(text, max(run), tuple(run), tuple(starts), alone=alone))
    return out


_SPLIT = 3  # characters: consecutive turns no longer than this are read joined with nothing between them
_FRAGMENT = 8  # characters: a run of texts no longer than this is scored only as the run


def answer_extract(payload: Any) -> Extracted:
    """The texts of a completion given as messages: every message's content, and what each message does besides
    (``guardrail.answer_actions``: tool calls' arguments, refusal, audio transcript, reasoning) as more readings
    (``Extra``): text the caller receives and a tool runs on is scored and matched like the content, while a
    Decision's text stays the content (empty for an answer that only calls a tool); its ``messages`` carry the
    answer masked where its personal data sits (``guardrail._answer``)."""
    ex = extract(payload, "all")
    if not ex.is_messages:
        return ex
    messages = [payload] if isinstance(payload, Mapping) else payload
    said = [t for m in messages if (t := unescape_json(actions_text(m).strip()))]
    if not said:
        return ex
    texts, locations, roles = (ex.texts, ex.locations, ex.roles) if ex.texts else (("",), ((-1, None),), ("assistant",))
    owner = len(texts) - 1  # read with the answer, never its text: a Decision's text stays the content
    return Extracted(
        texts, locations, ex.skipped, is_messages=True, roles=roles, system=ex.system,
        extra=(*ex.extra, *(Extra(t, owner) for t in said)), spots=ex.spots if ex.texts else (None,),
    )  # fmt: skip


def _first_text(part: dict[str, Any]) -> At:
    """Where a part read without its spot keeps its text (an ``Extracted`` built by hand): its first text key."""
    key = next(k for k in ("text", "refusal") if part.get(k) is not None)
    return At((key,) if isinstance(part[key], (str, bytes, bytearray)) else (key, "value"))


def _plain_part(part: Any) -> Any:
    if isinstance(part, Mapping):
        return dict(part)
    return part.model_dump(exclude_none=True) if hasattr(part, "model_dump") else part


def replace_texts(
    payload: Sequence[Any], ex: Extracted, new_texts: Sequence[str], redactions: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """A copy of ``payload`` (as plain dicts) with the extracted texts replaced; the caller's list is untouched.
    With ``redactions`` (placeholder -> value), the names the check read are masked too (``masked_name``)."""
    out: list[dict[str, Any]] = []
    for m in payload:
        if isinstance(m, Mapping):
            d = dict(m)
        elif hasattr(m, "model_dump"):
            d = m.model_dump(exclude_none=True)
        else:
            d = {"role": _get(m, "role"), "content": _get(m, "content")}
        if isinstance(d.get("content"), list):
            d["content"] = [_plain_part(p) for p in d["content"]]
        out.append(d)
    locations = ex.locations
    if not locations and new_texts and (named := [e.name_of for e in ex.extra if e.name_of is not None]):
        # a rule's message in place of a turn read by its name alone (an image sent with a name): the message is
        # what the turn says now, as a turn's text is replaced
        locations = ((named[-1], None),)
    spots = ex.spots if len(ex.spots) == len(locations) else (None,) * len(locations)
    olds = ex.texts if len(ex.texts) == len(locations) else new_texts
    for (i, j), text, at, old in zip(locations, new_texts, spots, olds, strict=True):
        if j is None:
            out[i]["content"] = text
        elif isinstance(out[i]["content"][j], (str, bytes, bytearray)):
            out[i]["content"][j] = text
        else:
            part = out[i]["content"][j]
            put_text(part, at or _first_text(part), text, old)
    for e in ex.extra if redactions else ():
        if e.name_of is not None and isinstance(name := out[e.name_of].get("name"), str):
            masked = masked_name(name, redactions or {})
            if masked is None:
                del out[e.name_of]["name"]
            elif masked != name:
                out[e.name_of]["name"] = masked
    return out
