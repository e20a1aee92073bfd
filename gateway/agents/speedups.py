"""Targeted fixes for Rasa hot spots the request-path profile shows (see docs/performance.md).

- Rasa 3.6 looks up an event's class by walking every subclass of `Event` (and calling
  `inspect.isabstract` on each) once per event, whenever a tracker is deserialised: with six turns of
  history that walk was 17% of a light turn's CPU, half as much as the whole NLU pipeline. The lookup is
  a pure function of the imported classes, so the classes it finds are remembered by type name; misses
  go to Rasa's own lookup.
- Every message, `MessageProcessor` asks `Domain.is_empty()`, which builds a whole empty Domain to compare
  with (~0.1 ms, 2% of a light turn). The empty domain's dict is a constant of the Rasa release, so it is
  built once.
- Every custom action's answer is checked by `RemoteAction._validate_action_result` with
  `jsonschema.validate`, which first validates Rasa's (constant) events schema against its metaschema:
  hundreds of ms per action call on the busy 2-core machine (0.2 ms with a validator built once), far more
  than the action itself. The same check runs with one validator built (and its schema checked) once; the
  errors and messages are Rasa's.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from gateway.agents.patches import install_once

logger = logging.getLogger(__name__)


@install_once
def install() -> None:
    """Replace `Event.resolve_by_type` with a remembering wrapper (idempotent, thread-safe)."""
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
    _install_action_result_check()
    logger.debug("installed the remembering Event.resolve_by_type")


def _install_empty_domain_check() -> None:
    from rasa.shared.core.domain import Domain

    empty = Domain.empty().as_dict()

    def is_empty(self: Domain) -> bool:
        """Check whether the domain is empty."""
        return bool(self.as_dict() == empty)

    Domain.is_empty = is_empty


@functools.cache
def action_result_validator() -> Any:
    """A jsonschema validator of Rasa's action-server response format, built and schema-checked once."""
    import jsonschema
    from rasa.core.actions.action import RemoteAction

    schema = RemoteAction.action_response_format_spec()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _install_action_result_check() -> None:
    import jsonschema
    from rasa.core.actions.action import RemoteAction
    from rasa.shared.constants import DOCS_BASE_URL

    def _validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
        error = jsonschema.exceptions.best_match(action_result_validator().iter_errors(result))
        if error is None:
            return True
        error.message += (  # Rasa's own wording
            f". Failed to validate Action server response from API, "
            f"make sure your response from the Action endpoint is valid. "
            f"For more information about the format visit "
            f"{DOCS_BASE_URL}/custom-actions"
        )
        raise error

    RemoteAction._validate_action_result = _validate_action_result
