"""Custom actions of each bot: in the gateway process or on an action server, per its endpoints.yml.

`bots/<lang>/endpoints.yml` (read by gateway/agents/endpoints.py) decides, per language:

- `action_endpoint: {actions_module: actions}`: the bot's code runs here, through rasa-sdk's own
  `ActionExecutor` (gateway/agents/action_modules.py); no second server, no HTTP, no JSON round trip;
- `action_endpoint: {url, token?, cafile?, headers?, basic_auth?}`: an action server, called on the
  gateway's one shared HTTP client (keep-alive, at most MAX_CONNECTIONS connections);
- no `action_endpoint`: no custom actions (a model whose domain names some is refused).

Each new model gets a new endpoint (in process: the action code imported afresh, so a swap picks up edited
actions and broken code refuses the model while the old one keeps answering). The endpoints and the guard
that drops turns whose action failed live in action_endpoints.py and action_guard.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from gateway.agents.action_modules import ActionCode, import_actions, resolve
from gateway.agents.endpoints import bot_endpoints
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from rasa.core.utils import AvailableEndpoints
    from rasa.shared.core.domain import Domain
    from rasa.utils.endpoints import EndpointConfig

    from gateway.settings import BotSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Connections to action servers held by the shared client (all languages); more calls wait for one.
MAX_CONNECTIONS = 64


class ActionClient:
    """The gateway's one HTTP client for action servers: keep-alive, bounded connections.

    It belongs to the loop that entered it; `run` hops calls made on another loop (the inference thread).
    """

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __aenter__(self) -> ActionClient:
        self.loop = asyncio.get_running_loop()
        connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=30.0)
        self.session = aiohttp.ClientSession(connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.close()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on the client's own loop."""
        owner = self.loop
        if owner is None or owner is asyncio.get_running_loop():
            return await coro
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, owner))


class BotActions:
    """One language's endpoints (endpoints.yml + overrides) and the action endpoint each model gets.

    Built when the app is created: bad endpoints or action code that fails to import stop start-up with
    an error naming the file (and line).
    """

    def __init__(self, bot: BotSettings, client: ActionClient) -> None:
        self.lang = bot.lang
        self.timeout = bot.action_timeout_seconds
        self.client = client
        self.endpoints: AvailableEndpoints = bot_endpoints(bot)
        self.where = f"{bot.project_dir / 'endpoints.yml'}"
        action = self.endpoints.action
        self._preloaded: ActionCode | None = None
        self.mode: str | None = None
        if action is None:
            return
        module = action.kwargs.get("actions_module")
        if module:
            if action.url:
                logger.warning("bot %s: action_endpoint has url and actions_module: module used", self.lang)
            self.mode = "in_process"
            self.source = resolve(bot.project_dir, str(module))
            self._preloaded = import_actions(bot.lang, self.source)
        elif action.url:
            self.mode = "http"
            self.action_endpoint()  # a cafile that cannot be read stops start-up, naming it
        else:
            raise ConfigError(
                f"{self.where}: action_endpoint needs `url` (action server) or `actions_module` (in process)"
            )

    @property
    def nlg(self) -> EndpointConfig | None:
        """Rasa's NLG endpoint (`nlg:`), used the way `rasa run` uses it."""
        return self.endpoints.nlg

    def action_endpoint(self) -> EndpointConfig | None:
        """A new model's action endpoint (blocking: in process, the action code is imported afresh)."""
        from gateway.agents.action_endpoints import HttpActions, InProcessActions

        action = self.endpoints.action
        if action is None or self.mode is None:
            return None
        if self.mode == "http":
            return HttpActions(self.lang, self.timeout, action, self.client)
        code, self._preloaded = self._preloaded, None
        code = code or import_actions(self.lang, self.source)
        return InProcessActions(self.lang, self.timeout, action, code)

    async def cannot_run(self, endpoint: EndpointConfig | None, domain: Domain) -> str | None:
        """Why `endpoint` cannot run every custom action `domain` names (naming them), or None."""
        from gateway.agents.action_endpoints import HttpActions, InProcessActions

        wanted = custom_action_names(domain)
        if not wanted:
            return None
        if isinstance(endpoint, InProcessActions):
            missing, where = wanted - endpoint.code.names, f"defined in {endpoint.code.source}"
        elif isinstance(endpoint, HttpActions):
            known = await endpoint.listed_actions()
            if known is None:
                return None  # the server cannot tell now: calls fail politely until it can
            missing, where = wanted - known, f"registered on the action server {endpoint.url}"
        else:
            missing, where = wanted, f"runnable: bot {self.lang} has no action_endpoint ({self.where})"
        if not missing:
            return None
        return f"the domain's custom action(s) {', '.join(sorted(missing))} are not {where}"


def custom_action_names(domain: Domain) -> frozenset[str]:
    """The domain's actions that are custom code (not responses, forms or Rasa's defaults)."""
    responses = set(domain.responses)
    forms = set(domain.form_names)
    return frozenset(
        name
        for name in domain.user_actions
        if name not in responses and name not in forms and not name.startswith("utter_")
    )
