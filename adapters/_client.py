"""What every guarded SDK client shares (``adapters.openai``, ``adapters.anthropic``): the guard and the client
underneath, per-request copies (``with_options`` / ``copy``) that keep the guard, and the client's own doors to
generation that the wrapper does not guard, closed with an ``AttributeError`` that says what to use instead (fail
closed, DESIGN.md §8). Each wrapper adds its guarded resources and what else its client's attributes need."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guardrail.engine import Guard
    from guardrail.routing import RoutingContext

__all__ = ["GuardedClient"]


class GuardedClient:
    _doors: frozenset[str] = frozenset()  # the client's attributes that would bypass the guard
    _use = ""  # what to call instead, named when a door is refused

    def __init__(self, guard: Guard, client: Any, *, restore: bool = False, context: RoutingContext = None) -> None:
        self._guard, self._client, self._restore, self._context = guard, client, restore, context

    @property
    def guard(self) -> Guard:
        return self._guard

    @property
    def unwrapped(self) -> Any:
        """The client underneath, unguarded (for what you deliberately want to bypass)."""
        return self._client

    def with_options(self, **options: Any) -> Any:
        return self._like(self._client.with_options(**options))

    def copy(self, **options: Any) -> Any:
        return self._like(self._client.copy(**options))

    def _like(self, client: Any) -> Any:
        """The same wrapper around ``client`` (a per-request copy of the one underneath)."""
        return type(self)(self._guard, client, restore=self._restore, context=self._context)

    def __getattr__(self, name: str) -> Any:
        # only what the instance lacks reaches here: before __init__ has run (copy.copy and pickle make the object
        # first, then ask for __setstate__) there is no client to forward to, and forwarding looked up _client
        # through this method again, without end (RecursionError)
        if name.startswith("__") or "_client" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        if name in self._doors:
            raise AttributeError(
                f"client.{name} is not available on a guardrail-wrapped client (it would bypass the guard); use "
                f"{self._use}, or .unwrapped to bypass it deliberately"
            )
        return self._attribute(name)

    def _attribute(self, name: str) -> Any:
        """Any other attribute: the client's own (a wrapper may guard some of them)."""
        return getattr(self._client, name)

    def __repr__(self) -> str:
        return f"<guarded {self._client!r} policy={self._guard.policy.name!r}>"
