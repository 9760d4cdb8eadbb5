"""A whole answer's checks, and asking the model again while they block it (the policy's ``on_block.reask``).

``call_sync`` / ``call_async`` hand every whole (non-streamed) answer here. Its text and what it does besides
(tool calls, refusal, audio) are checked apart, as ``GuardedCall.on_output`` reads them; when the check blocks the
answer's text and the policy asks for it, the request is sent again as it was first sent (the input check already
ran, and its redactions stay: the placeholders the model saw are the ones it sees again), with two turns after it:
the blocked answer as the assistant's and the policy's correction as the user's. The first answer that passes is
returned; when none does, the last one is answered as any block is (a refusal, or ``Blocked``). So is a reask whose
request fails (an upstream error, a request the provider refuses): the block stands, as it would without a reask,
and ``guardrail.reask_failed`` is logged. Each answer's checks are ordinary output decisions (audited, counted, on
the call's ``decisions``); a reasked answer's audit events also carry ``reask_attempt`` (1, 2 ...) and ``reask_of``
(the decision that blocked the answer before it). The caller's ``Idempotency-Key`` header gets a suffix per attempt:
the same key would fetch the blocked answer again from a provider that honours it.

The blocked answer goes back as the model wrote it: the placeholders it holds for the user's values stay
placeholders (``restore`` never runs on it), and the values it wrote itself (which the output check would mask for
the caller) are the provider's own output, sent back to the provider only, in a request it does not store (below).

A request that ends with the assistant's turn (a prefill, which the answer continues) keeps it last: the blocked
answer goes back as that turn continued, then the correction, then the same prefill, so the new answer continues it
as the first one did (and the turns still alternate, as the Messages API requires).

What is asked again, and what a block means, is the call's (``Call.reask``): only the output check's blocks by
its rules (a prompt is never re-sent; a fail-mode block judged nothing to correct). What is not asked again here:

- a stream: its text was already released as it was checked;
- an answer of more than one choice (``n > 1``): its choices are alternatives, not one turn to correct;
- an answer blocked only for what it does (tool calls), or with no text: a call without its result is no turn
  the APIs accept, and re-sending the text alone would not show what was withheld. An answer whose text is
  blocked goes back as its text alone (its tool calls, thinking or audio are not re-sent);
- a request the provider stores (:func:`reaskable`): a Responses request unless ``store=False`` (stored is the
  API's default), a chat completion with ``store=True``, a server-side ``conversation``. The answer the caller gets
  would have the withheld one among its stored input, handed back as written by ``responses.input_items.list`` /
  ``chat.completions.messages.list`` (which return the caller's own input, unchecked) and read by every later turn
  that continues it (``previous_response_id``); a conversation also keeps the correction and a second copy of the
  request.

The two drivers differ only by ``await``, as the rest of ``_core``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from guardrail import audit
from guardrail.decision import Decision

from . import shapes

if TYPE_CHECKING:
    from ._core import GuardedCall

__all__ = ["achecks", "answer_async", "answer_sync", "checks", "reaskable"]

_log = structlog.get_logger("guardrail")
Checks = tuple[list[Decision | None], list[Decision | None]]
# A reask's request the client rejects before sending (an argument it does not take) or that breaks in code: the
# request the first time was the caller's and passed, so this is the reask's own bug, raised, not a block logged
_OUR_ERRORS = (TypeError, AttributeError, NameError, AssertionError)


def checks(gc: GuardedCall, result: Any) -> Checks:
    """The decisions on each choice's text, and apart from it on what the choice does."""
    texts = [gc.call.check_output(t, prompt=gc.prompt) if t else None for t in shapes.texts_of(result)]
    acts = [gc.call.check_output(a, prompt=gc.prompt) if a else None for a in shapes.action_texts_of(result)]
    return texts, acts


async def achecks(gc: GuardedCall, result: Any) -> Checks:
    """:func:`checks` for async code."""
    texts = [await gc.call.acheck_output(t, prompt=gc.prompt) if t else None for t in shapes.texts_of(result)]
    acts = [await gc.call.acheck_output(a, prompt=gc.prompt) if a else None for a in shapes.action_texts_of(result)]
    return texts, acts


def answer_sync(gc: GuardedCall, send: Callable[..., Any], result: Any) -> Any:
    """The answer the caller gets: ``result`` checked, asked for again (``send``) while the policy says so."""
    decided = checks(gc, result)
    attempt = 0
    while (kwargs := again(gc, result, decided[0])) is not None:
        attempt, blocked = attempt + 1, decided[0][0]
        try:
            answer = send(**fresh_idempotency(kwargs, attempt))
        except _OUR_ERRORS:
            gc.unsent()
            raise
        except Exception as exc:
            failed(blocked, exc)
            break
        with audit.reasked(attempt, blocked.id if blocked else None):
            result, decided = answer, checks(gc, answer)
    return gc.on_output(result, *decided)


async def answer_async(gc: GuardedCall, send: Callable[..., Any], result: Any) -> Any:
    """:func:`answer_sync` for async code."""
    decided = await achecks(gc, result)
    attempt = 0
    while (kwargs := again(gc, result, decided[0])) is not None:
        attempt, blocked = attempt + 1, decided[0][0]
        try:
            answer = await send(**fresh_idempotency(kwargs, attempt))
        except _OUR_ERRORS:
            gc.unsent()
            raise
        except Exception as exc:
            failed(blocked, exc)
            break
        with audit.reasked(attempt, blocked.id if blocked else None):
            result, decided = answer, await achecks(gc, answer)
    return gc.on_output(result, *decided)


def fresh_idempotency(kwargs: dict[str, Any], attempt: int) -> dict[str, Any]:
    """``kwargs`` with the caller's ``Idempotency-Key`` header (in ``extra_headers``) made the reask's own: a provider
    that honours the key would answer the reask with the first, blocked answer. Retries of one reask still share
    a key, as the caller meant."""
    headers = kwargs.get("extra_headers")
    if not isinstance(headers, Mapping):
        return kwargs
    renamed = {k: f"{v}-reask-{attempt}" if str(k).lower() == "idempotency-key" and isinstance(v, str) else v
               for k, v in headers.items()}  # fmt: skip
    return {**kwargs, "extra_headers": renamed} if renamed != dict(headers) else kwargs


def failed(d: Decision | None, exc: Exception) -> None:
    """A reask whose request failed: the block ``d`` stands (the first request was sent and answered, so nothing it
    claimed is given back), and the failure is logged, not raised: a reask never turns a refusal into an error."""
    _log.warning("guardrail.reask_failed", decision_id=d.id if d else None, error_type=type(exc).__name__)


def reaskable(gc: GuardedCall) -> bool:
    """Whether a blocked answer to ``gc``'s request may be asked for again: not when the provider stores the request
    (see the module docstring). A Responses request is stored unless ``store=False``; a chat one only with ``store``."""
    store = gc.kwargs.get("store")
    stored = store is not False if gc.kind == "responses" else bool(store)
    return not stored and gc.kwargs.get("conversation") is None


def again(gc: GuardedCall, result: Any, texts: list[Decision | None]) -> dict[str, Any] | None:
    """The request that asks again for ``result`` (one choice, whose text ``texts`` says is blocked), when the
    call's policy asks for one more reask; None when the answer stands as checked."""
    originals = shapes.texts_of(result)
    if len(originals) != 1 or not originals[0] or texts[0] is None or not reaskable(gc):
        return None
    turn = gc.call.reask(texts[0])
    return None if turn is None else gc.reasked(originals[0], turn)
