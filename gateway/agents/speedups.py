"""Targeted fixes for Rasa hot spots the request-path profile shows (see docs/performance.md).

- Rasa 3.6 looks up an event's class by walking every subclass of `Event` (and calling
  `inspect.isabstract` on each) once per event, whenever a tracker is deserialised: with six turns of
  history that walk was 17% of a light turn's CPU, half as much as the whole NLU pipeline. The lookup is
  a pure function of the imported classes, so the classes it finds are remembered by type name; misses
  go to Rasa's own lookup.
- Every message, `MessageProcessor` asks `Domain.is_empty()`, which builds a whole empty Domain to compare
  with (~0.1 ms, 2% of a light turn). The empty domain's dict is a constant of the Rasa release, so it is
  built once.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_installed = False


def install() -> None:
    """Replace `Event.resolve_by_type` with a remembering wrapper (idempotent, thread-safe)."""
    global _installed
    with _lock:
        if _installed:
            return
        from rasa.shared.core.events import Event

        original = Event.resolve_by_type
        found: dict[str, Any] = {}

        @functools.wraps(original)
        def resolve_by_type(type_name: str, default: Any = None) -> Any:
            cls = found.get(type_name)
            if cls is not None:
                return cls
            cls = original(type_name, default)
            # Remember only real matches: defaults and "unknown" answers depend on the caller.
            if cls is not None and cls is not default and getattr(cls, "type_name", None) == type_name:
                found[type_name] = cls
            return cls

        Event.resolve_by_type = staticmethod(resolve_by_type)
        _install_empty_domain_check()
        _installed = True
        logger.debug("installed the remembering Event.resolve_by_type")


def _install_empty_domain_check() -> None:
    from rasa.shared.core.domain import Domain

    empty = Domain.empty().as_dict()

    def is_empty(self: Domain) -> bool:
        """Check whether the domain is empty."""
        return bool(self.as_dict() == empty)

    Domain.is_empty = is_empty
