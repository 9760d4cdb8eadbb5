"""Drop-in integrations: ``guardrail.wrap(guard, openai client | anthropic client | litellm)``, the LiteLLM proxy
guardrail.

    client = guardrail.wrap(guard, openai.OpenAI())     # or openai.AsyncOpenAI(), or the litellm module
    client = guardrail.wrap(guard, anthropic.Anthropic())   # or anthropic.AsyncAnthropic(): messages.create
    client = guardrail.wrap(guard, openai.OpenAI(), restore=True)   # put redacted values back in answers

Every adapter drives one ``guardrail.call.Call`` per request (one policy snapshot; what a block
means for the caller), and holds only what is specific to its client: how a request is read and
rewritten (``_core``), and the client's own types (``shapes``, ``_streams``).

Nothing heavy is imported here: ``openai`` and ``anthropic`` are looked up in ``sys.modules`` (a client
instance means it is loaded already) and each adapter module is imported only when its client is wrapped. The
proxy guardrail lives in :mod:`guardrail.adapters.litellm` (``GuardrailLiteLLM``).
"""

from __future__ import annotations

import os
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardrail.engine import Guard
    from guardrail.routing import RoutingContext

__all__ = ["litellm_offline", "wrap"]


def litellm_offline() -> None:
    """Before litellm is imported: use its bundled price map (``LITELLM_LOCAL_MODEL_COST_MAP``), so its
    import never reaches for the network; a value the user set wins."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


SUPPORTED = (
    "openai.OpenAI, openai.AsyncOpenAI (and subclasses such as AzureOpenAI), anthropic.Anthropic, "
    "anthropic.AsyncAnthropic, a LangChain chat model (langchain_core BaseChatModel) or the litellm module"
)


def wrap(guard: Guard, client: Any, *, restore: bool = False, context: RoutingContext = None) -> Any:
    """``client`` with the same interface, its completions guarded by ``guard``."""
    if isinstance(client, types.ModuleType) and client.__name__ == "litellm":
        from .litellm import GuardedLiteLLM

        return GuardedLiteLLM(guard, client, restore=restore, context=context)
    openai = sys.modules.get("openai")
    if openai is not None:
        if isinstance(client, openai.AsyncOpenAI):
            from .openai import GuardedAsyncOpenAI

            return GuardedAsyncOpenAI(guard, client, restore=restore, context=context)
        if isinstance(client, openai.OpenAI):
            from .openai import GuardedOpenAI

            return GuardedOpenAI(guard, client, restore=restore, context=context)
    anthropic = sys.modules.get("anthropic")
    if anthropic is not None:
        if isinstance(client, anthropic.AsyncAnthropic):
            from .anthropic import GuardedAsyncAnthropic

            return GuardedAsyncAnthropic(guard, client, restore=restore, context=context)
        if isinstance(client, anthropic.Anthropic):
            from .anthropic import GuardedAnthropic

            return GuardedAnthropic(guard, client, restore=restore, context=context)
    chat_models = sys.modules.get("langchain_core.language_models")  # LangChain: any chat model (adapters.langchain)
    if chat_models is not None and isinstance(client, chat_models.BaseChatModel):
        from .langchain import GuardedChatModel

        return GuardedChatModel(guard, client, restore=restore, context=context)
    kind = (
        client.__name__
        if isinstance(client, types.ModuleType)
        else type(client).__module__ + "." + type(client).__qualname__
    )
    raise TypeError(f"guardrail.wrap() supports {SUPPORTED}; got {kind}")
