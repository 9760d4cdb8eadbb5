"""Turn texts into model inputs: the one encoder used by training and by the runtime classifier.

Keeping this in one place is what makes the shipped ONNX model score what it was trained on: the
same special tokens, the same prompt/response layout and the same windowing.

Layout: an input-stage text is ``[CLS] text [SEP]``; an output-stage text is
``[CLS] prompt-tail [SEP] response [SEP]`` with segment ids 0/1, so one model serves both stages and
the response is always judged in the context of (the end of) its prompt. An input text read with its
context (a system prompt) has a layout of its own, ``[CLS] context-tail [SEP] [SEP] text [SEP]`` with
every segment id 0 (``context_layout="marked"``): the text keeps the segment it has when read alone, and
the doubled separator tells the model the stage. Models trained before that read it as an output row
(``context_layout="pair"``, the default for a labels.json that does not say), so nothing told them
whether a first segment was a system prompt or the prompt an answer replies to. Long texts are cut into
overlapping windows of at most ``max_length`` tokens; a score is the maximum over windows, so a harmful
sentence buried in a long benign document is still seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer

__all__ = ["Batch", "EncodingConfig", "Window", "encode_windows", "pad_batch"]


@dataclass(frozen=True, slots=True)
class EncodingConfig:
    max_length: int = 128
    prompt_tokens: int = 48  # how much of the prompt's end accompanies a response
    stride: int = 112  # window step; max_length - stride tokens of overlap (measured: 96 -> 112 caught as
    # many buried requests, 59 vs 56 of 60, at 0.84x the cost)
    max_windows: int = 64  # beyond this, windows stop overlapping (a longer text costs more windows, never a gap;
    # max_chars and the per-token budget bound the cost)
    cls_id: int = 101
    sep_id: int = 102
    pad_id: int = 0
    context_layout: str = "pair"  # how an input text's context is laid out: "pair" (as an output row's
    # prompt, models before v24) or "marked" (doubled separator, one segment); see the module docstring

    def __post_init__(self) -> None:
        if self.context_layout not in ("pair", "marked"):
            raise ValueError(f"context_layout must be 'pair' or 'marked', not {self.context_layout!r}")


@dataclass(frozen=True, slots=True)
class Window:
    """One model input: token ids and segment ids (no padding), and the text it came from."""

    item: int
    ids: tuple[int, ...]
    segments: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Batch:
    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray


def _spans(
    n: int, size: int, stride: int, max_windows: int, word_ids: Sequence[int | None] | None = None
) -> list[tuple[int, int]]:
    """Window spans over ``n`` tokens; with ``word_ids``, a window never starts inside a word (a window
    opening on "##ing" is text the model never saw in training, and such fragments scored as unsafe)."""
    if n <= size:
        return [(0, n)]
    if word_ids is not None:  # a start may move back to its word's start: the step leaves room for that (no gap)
        stride = min(stride, max(1, size - _WORD_BACK))
    count = -(-(n - size) // stride) + 1
    if count > max_windows:  # widen the stride to bound cost: less overlap, never a gap (an unread stretch of a
        # long text let a request buried in it pass: a review found one at 25-75% of a 100,000-character text).
        # A start moves back at most _WORD_BACK tokens to a word's start, so the step stays that much under a window
        count = max(max_windows, -(-(n - size) // max(1, size - _WORD_BACK)) + 1)
    step = (n - size) / (count - 1)
    starts = sorted({round(i * step) for i in range(count)})
    if word_ids is not None:
        head = {_word_start(s, word_ids) for s in starts[:-1]}
        last = _word_end_start(starts[-1], word_ids)  # forward: only as far as the window before it reaches
        starts = sorted(head | {last if last <= max(head) + size else starts[-1]})
    return [(s, min(n, s + size)) for s in starts]


_WORD_BACK = 8  # how far a window's start may move back to the start of the word it falls in


def _word_end_start(s: int, word_ids: Sequence[int | None]) -> int:
    """The last window's start: moved *forward* to the next word's start (at most _WORD_BACK tokens), since moving
    it back would leave the text's last tokens unread (``_spans`` keeps it where the window before it reaches)."""
    fwd = s
    while 0 < fwd < len(word_ids) and word_ids[fwd] is not None and word_ids[fwd] == word_ids[fwd - 1]:
        if fwd - s >= _WORD_BACK:
            return s
        fwd += 1
    return fwd if fwd < len(word_ids) else s


def _word_start(s: int, word_ids: Sequence[int | None]) -> int:
    """Token ``s`` moved back (at most _WORD_BACK tokens) to the start of the word it is inside, else ``s``."""
    back = s
    while back > 0 and word_ids[back] is not None and word_ids[back] == word_ids[back - 1] and s - back < _WORD_BACK:
        back -= 1
    return back if back == 0 or word_ids[back] != word_ids[back - 1] else s


def _focus_start(
    offsets: Sequence[tuple[int, int]], focus: tuple[int, int], room: int, word_ids: Sequence[int | None]
) -> int:
    """First token of the ``room``-token window centred on the tokens of character span ``focus`` (its start
    when the span is longer than a window), moved back to the start of a word as the runtime's windows are."""
    n = len(offsets)
    first = next((t for t, (_s, e) in enumerate(offsets) if e > focus[0]), n - 1)
    last = next((t for t, (s, _e) in enumerate(offsets) if s >= focus[1]), n)
    width = max(last - first, 1)
    return _word_start(max(0, min(first if width >= room else first - (room - width) // 2, n - room)), word_ids)


def encode_windows(
    tokenizer: Tokenizer,
    texts: Sequence[str],
    prompts: Sequence[str | None] | None,
    cfg: EncodingConfig,
    *,
    windows: bool = True,
    context: bool | Sequence[bool] = False,
    focus: Sequence[tuple[int, int] | None] | None = None,
) -> list[Window]:
    """Encode ``texts`` (with ``prompts`` for the output stage, or as context) into windows.

    ``context``: whether a text's prompt is its context (an input text's system prompt) rather than the
    prompt an output answers; one flag for all texts or one per text. It changes the layout only for a
    model whose ``cfg.context_layout`` is "marked".
    With ``windows=False`` (training), a long text keeps its head and tail instead: a request is
    usually at one end of a pasted document, and training sees one row per example. A text with a
    ``focus`` (a character span: the part that carries its label) keeps the one window around it.
    """
    flags = [context] * len(texts) if isinstance(context, bool) else list(context)
    if len(flags) != len(texts):
        raise ValueError(f"{len(flags)} context flags for {len(texts)} texts")
    enc_texts = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    enc_prompts = None
    if prompts is not None and any(p is not None for p in prompts):
        enc_prompts = tokenizer.encode_batch([p or "" for p in prompts], add_special_tokens=False)
    out: list[Window] = []
    for i, enc in enumerate(enc_texts):
        ids = enc.ids
        head: list[int] = [cfg.cls_id]
        marked = flags[i] and cfg.context_layout == "marked"
        if enc_prompts is not None and prompts is not None and prompts[i] is not None:
            head += [*enc_prompts[i].ids[-cfg.prompt_tokens :], cfg.sep_id]
            if marked:
                head.append(cfg.sep_id)
        room = cfg.max_length - len(head) - 1
        seg0 = len(head)
        seg_text = 1 if seg0 > 1 and not marked else 0
        if len(ids) <= room:
            spans = [(0, len(ids))]
        elif not windows and focus is not None and (span := focus[i]) is not None:
            s = _focus_start(enc.offsets, span, room, enc.word_ids)
            ids = ids[s : s + room]
            spans = [(0, len(ids))]
        elif not windows:
            tail = room * 3 // 4
            ids = ids[: room - tail] + ids[-tail:]
            spans = [(0, len(ids))]
        else:
            stride = max(1, room * cfg.stride // cfg.max_length)
            spans = _spans(len(ids), room, stride, cfg.max_windows, enc.word_ids)
        for s, e in spans:
            body = ids[s:e]
            full = head + body + [cfg.sep_id]
            segs = [0] * seg0 + [seg_text] * (len(body) + 1)
            out.append(Window(i, tuple(full), tuple(segs)))
    return out


def pad_batch(windows: Sequence[Window], pad_id: int = 0) -> Batch:
    """Pad only to the longest window of the batch (padding to a fixed length costs 2-8x on short prompts)."""
    n = max(len(w.ids) for w in windows)
    ids = np.full((len(windows), n), pad_id, dtype=np.int64)
    mask = np.zeros((len(windows), n), dtype=np.int64)
    segs = np.zeros((len(windows), n), dtype=np.int64)
    for r, w in enumerate(windows):
        k = len(w.ids)
        ids[r, :k] = w.ids
        mask[r, :k] = 1
        segs[r, :k] = w.segments
    return Batch(ids, mask, segs)
