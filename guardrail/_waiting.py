"""Waiting for a check's classifier futures until its deadline, in a thread or on the event loop: the two thin
drivers of the engine's one step that waits. Past the deadline the futures still queued are cancelled (never run)
and the check is a time-out, which the policy's fail mode decides; a caller that gives up cancels them too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import time
from collections.abc import Sequence
from typing import Any

from guardrail._decide import Plan, timeout_error

__all__ = ["wait_async", "wait_sync"]


def wait_sync(futures: Sequence[cf.Future[Any]], plan: Plan) -> list[Any]:
    """Each future's result, in order, or :class:`CheckTimeout` once ``plan.deadline`` passes."""
    results = []
    for fut in futures:
        try:
            results.append(fut.result(timeout=max(0.0, plan.deadline - time.monotonic())))
        except cf.TimeoutError:
            _cancel(futures)
            raise timeout_error(plan) from None
    return results


async def wait_async(futures: Sequence[cf.Future[Any]], plan: Plan) -> list[Any]:
    """:func:`wait_sync` on the event loop: inference never runs on it."""
    waiting = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
    waiting.add_done_callback(_retrieved)  # a caller that cancels never reads it: no "never retrieved" error
    try:
        return list(await asyncio.wait_for(waiting, max(0.0, plan.deadline - time.monotonic())))
    except TimeoutError:
        _cancel(futures)
        raise timeout_error(plan) from None
    except asyncio.CancelledError:  # the caller gave up: its inference need not run
        _cancel(futures)
        raise


def _cancel(futures: Sequence[cf.Future[Any]]) -> None:
    for f in futures:
        f.cancel()  # still queued: never run


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Read a finished gather's outcome, so asyncio does not log an exception nobody was left to read."""
    if not future.cancelled():
        future.exception()
