"""Drop-in integrations: ``guard.wrap(openai client | litellm)``, the LiteLLM proxy guardrail.

    client = guard.wrap(openai.OpenAI())          # or openai.AsyncOpenAI(), or the litellm module
    client = guard.wrap(openai.OpenAI(), restore=True)   # put redacted values back in answers

Nothing heavy is imported here: ``openai`` is looked up in ``sys.modules`` (a client instance means
it is loaded already) and each adapter module is imported only when its client is wrapped. The
proxy guardrail lives in :mod:`guardrail.adapters.litellm` (``GuardrailLiteLLM``).
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardrail.engine import Guard

__all__ = ["wrap"]

SUPPORTED = "openai.OpenAI, openai.AsyncOpenAI (and subclasses such as AzureOpenAI) or the litellm module"


def wrap(guard: Guard, client: Any, *, restore: bool = False) -> Any:
    """``client`` with the same interface, its completions guarded by ``guard``."""
    if isinstance(client, types.ModuleType) and client.__name__ == "litellm":
        from .litellm import GuardedLiteLLM

        return GuardedLiteLLM(guard, client, restore=restore)
    openai = sys.modules.get("openai")
    if openai is not None:
        if isinstance(client, openai.AsyncOpenAI):
            from .openai import GuardedAsyncOpenAI

            return GuardedAsyncOpenAI(guard, client, restore=restore)
        if isinstance(client, openai.OpenAI):
            from .openai import GuardedOpenAI

            return GuardedOpenAI(guard, client, restore=restore)
    kind = (
        client.__name__
        if isinstance(client, types.ModuleType)
        else type(client).__module__ + "." + type(client).__qualname__
    )
    raise TypeError(f"guard.wrap() supports {SUPPORTED}; got {kind}")
