"""A bot's custom action code imported into the gateway: one private module namespace per language.

`action_endpoint: {actions_module: actions}` names `bots/<lang>/actions.py` or the package
`bots/<lang>/actions/`; a dotted name (`my.actions` -> `bots/<lang>/my/actions.py`) or a path (relative to the
bot folder, or absolute) works too. The code is imported under a name of its own per language and load
(`_gateway_actions_<lang>_<n>`), so en's `actions.py` never sees pl's even though both are called
`actions`, and a model swap picks up edited action code without disturbing the model still answering.

Actions are registered in rasa-sdk's own `ActionExecutor`, but only those defined in that code (rasa-sdk's
`register_package` would register every `Action` subclass in the process, other languages' included).
A synchronous `run` is wrapped to run in a worker thread, so it never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import itertools
import logging
import pkgutil
import sys
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.errors import ActionModuleError

if TYPE_CHECKING:
    from rasa_sdk.executor import ActionExecutor

logger = logging.getLogger(__name__)

_loads = itertools.count(1)


@dataclass(frozen=True)
class ActionCode:
    """One import of a bot's action code: the executor that runs it and the modules it came from."""

    lang: str
    source: Path
    module: types.ModuleType
    executor: ActionExecutor

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.executor.actions)


def resolve(bot_dir: Path, spec: str) -> Path:
    """The file or package folder `spec` (an `actions_module` value) names; ActionModuleError if none."""
    candidates: list[Path] = []
    as_path = Path(spec).expanduser()
    if spec.endswith(".py") or "/" in spec or as_path.is_absolute():
        candidates.append(as_path if as_path.is_absolute() else bot_dir / as_path)
    else:
        relative = Path(*spec.split("."))
        candidates += [bot_dir / relative.with_suffix(".py"), bot_dir / relative]
    for candidate in candidates:
        if candidate.is_file() and candidate.suffix == ".py":
            return candidate
        if candidate.is_dir() and (candidate / "__init__.py").is_file():
            return candidate
    raise ActionModuleError(
        f"actions_module {spec!r} of {bot_dir / 'endpoints.yml'}: no such module; expected "
        + " or ".join(f"{c}" + ("" if c.suffix else " (a package with __init__.py)") for c in candidates)
    )


def import_actions(lang: str, source: Path) -> ActionCode:
    """Import `source` (a .py file or a package folder) afresh and register its actions.

    Raises ActionModuleError naming the file and line when the code fails to import.
    """
    from rasa_sdk.executor import ActionExecutor

    name = f"_gateway_actions_{lang}_{next(_loads)}"
    modules = _import_tree(name, source)
    executor = ActionExecutor()
    for module in modules:
        for cls in _action_classes(module):
            _register(executor, cls, source)
    logger.info(
        "bot %s: %d custom action(s) from %s: %s",
        lang,
        len(executor.actions),
        source,
        ", ".join(sorted(executor.actions)) or "none",
    )
    return ActionCode(lang, source, modules[0], executor)


def _import_tree(name: str, source: Path) -> list[types.ModuleType]:
    init = source / "__init__.py" if source.is_dir() else source
    locations = [str(source)] if source.is_dir() else None
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=locations)
    if spec is None or spec.loader is None:
        raise ActionModuleError(f"{init}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # relative imports inside a package need the parent registered
    modules = [module]
    try:
        spec.loader.exec_module(module)
        if locations is not None:
            for info in pkgutil.walk_packages(locations, prefix=f"{name}."):
                modules.append(importlib.import_module(info.name))
    except Exception as exc:  # whatever the bot's code raises while importing: name its file and line
        for key in [key for key in sys.modules if key == name or key.startswith(f"{name}.")]:
            del sys.modules[key]
        raise ActionModuleError(_where(exc, source)) from exc
    return modules


def _where(exc: BaseException, source: Path) -> str:
    """`file:line: Type: message` for an import failure, pointing into the bot's code when possible."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}: {type(exc).__name__}: {exc.msg}"
    root = str(source if source.is_dir() else source.parent)
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [frame for frame in frames if frame.filename.startswith(root)]
    frame = (ours or frames)[-1] if (ours or frames) else None
    at = f"{frame.filename}:{frame.lineno}" if frame else str(source)
    return f"{at}: {type(exc).__name__}: {exc} (while importing the bot's custom actions)"


def _action_classes(module: types.ModuleType) -> list[type]:
    from rasa_sdk import Action

    return [
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, Action)
        and value.__module__ == module.__name__
        and not inspect.isabstract(value)
    ]


def _register(executor: ActionExecutor, cls: type, source: Path) -> None:
    try:
        action = cls()
        name = action.name()
    except Exception as exc:  # a constructor or name() that fails is the bot's bug: say where
        raise ActionModuleError(f"{_where(exc, source)} (creating action class {cls.__name__})") from exc
    if name in executor.actions:
        raise ActionModuleError(f"{source}: two action classes are called {name!r}")
    run = action.run
    executor.register_function(name, run if inspect.iscoroutinefunction(run) else _in_thread(run))


def _in_thread(run: Callable[..., Any]) -> Callable[..., Any]:
    """A synchronous `run` as a coroutine function that runs it in a worker thread."""

    async def run_in_thread(dispatcher: Any, tracker: Any, domain: Any) -> Any:
        return await asyncio.to_thread(run, dispatcher, tracker, domain)

    return run_in_thread
