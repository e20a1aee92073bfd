"""The raw limit's custom actions: rasa-sdk's own `ActionExecutor` behind a Rasa `EndpointConfig`.

Rasa's `RemoteAction` (custom actions, and the forms' `validate_<form>` actions) calls
`action_endpoint.request(json=..., method="post")` with the body it would POST to an action server; this
endpoint hands that body to `ActionExecutor.run`, which is exactly what `python -m rasa_sdk`'s /webhook does
with it, and maps the two answers that are not a 200 the way the action server + `RemoteAction` do: a
rejection becomes Rasa's `ActionExecutionRejection` (HTTP 400), an unknown action a `RasaException`
(HTTP 404). Only the transport is gone: no HTTP, no JSON, no second process.

Each bot's `actions.py` is imported by file under a name of its own, and only the action classes defined in
it are registered: all three are called `actions`, and rasa-sdk's `register_package` would register every
`Action` subclass in the process, other languages' included. Imports Rasa: import this module lazily.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from rasa.core.actions.action import ActionExecutionRejection
from rasa.shared.exceptions import RasaException
from rasa.utils.endpoints import EndpointConfig
from rasa_sdk import Action
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import ActionExecutionRejection as SdkRejection
from rasa_sdk.interfaces import ActionNotFoundException


class InProcessActions(EndpointConfig):  # type: ignore[misc]
    """An action endpoint that runs the actions of `source` (a bot's actions.py) in this process."""

    def __init__(self, source: Path) -> None:
        super().__init__(url=f"in-process:{source}")
        self.source = source
        self.executor = ActionExecutor()
        for cls in _action_classes(_import(source)):
            self.executor.register_action(cls)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.executor.actions)

    async def request(self, method: str = "post", subpath: str | None = None, **kwargs: Any) -> Any:
        body = kwargs.get("json")
        if not isinstance(body, dict):  # only RemoteAction calls an action endpoint, always with a body
            raise RasaException(f"{self.source}: unexpected action endpoint call {method} {subpath}")
        try:
            return await self.executor.run(body)
        except SdkRejection as exc:
            raise ActionExecutionRejection(exc.action_name, exc.message) from exc
        except ActionNotFoundException as exc:
            raise RasaException(f"{self.source} defines no action {exc.action_name!r}") from exc


def _import(source: Path) -> Any:
    name = f"_bench_raw_actions_{source.parent.name}"
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise RasaException(f"{source}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look a class's module up by name
    spec.loader.exec_module(module)
    return module


def _action_classes(module: Any) -> list[type[Action]]:
    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Action)
        and value.__module__ == module.__name__
        and not inspect.isabstract(value)
    ]


def action_endpoints(bots: Path, langs: list[str]) -> dict[str, InProcessActions | None]:
    """Per language, its bot's actions.py (`bots/<lang>/actions.py`, what start_usual's action servers
    run) in process, or None when the bot has no custom actions."""
    out: dict[str, InProcessActions | None] = {}
    for lang in langs:
        source = bots / lang / "actions.py"
        out[lang] = InProcessActions(source) if source.is_file() else None
    return out
