"""A turn whose custom action failed is dropped whole: no half-applied events, the `unavailable` prompt.

Rasa's own behaviour when an action call fails is to log it, lose the action's events and carry on, which
usually means the user hears nothing useful and the conversation goes on from a state the bot's code
never produced. The action endpoints (gateway/agents/action_endpoints.py) record each failed call here and
hand Rasa an empty result; the guarded processor then raises ActionFailed right after that action, before
Rasa saves the tracker, and the webhook answers with the language's `unavailable` prompt.
"""

from __future__ import annotations

import contextvars
from typing import Any

from gateway.errors import ActionFailed

# The failed action calls of the message being handled (set around each handle_message).
_FAILURES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("action_failures", default=None)


def record_failure(description: str) -> bool:
    """Note a failed action call of the current turn; False when no guarded turn is running."""
    failures = _FAILURES.get()
    if failures is None:
        return False
    failures.append(description)
    return True


def guard(processor: Any) -> None:
    """Make `processor` (a Rasa MessageProcessor) drop a turn after a failed action call; idempotent.

    Like gateway/agents/stages.py, the class is swapped, so shallow copies (probes) are guarded too.
    """
    base = type(processor)
    if getattr(base, "_drops_failed_turns", False):
        return
    processor.__class__ = _guarded_class(base)


# One guarded subclass per processor class (models load in threads; a duplicate made in a race is harmless).
_CLASSES: dict[type, type] = {}


def _guarded_class(base: type) -> type:
    known = _CLASSES.get(base)
    if known is not None:
        return known

    class GuardedProcessor(base):  # type: ignore[misc, valid-type]
        _drops_failed_turns = True

        async def handle_message(self, *args: Any, **kwargs: Any) -> Any:
            token = _FAILURES.set([])
            try:
                return await super().handle_message(*args, **kwargs)
            finally:
                _FAILURES.reset(token)

        async def _run_action(self, *args: Any, **kwargs: Any) -> Any:
            another = await super()._run_action(*args, **kwargs)
            failures = _FAILURES.get()
            if failures:
                raise ActionFailed("custom action failed: " + ", ".join(failures))
            return another

    GuardedProcessor.__name__ = GuardedProcessor.__qualname__ = f"Guarded{base.__name__}"
    return _CLASSES.setdefault(base, GuardedProcessor)
