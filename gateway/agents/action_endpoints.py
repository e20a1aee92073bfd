"""The two action endpoints a model can get: in process (rasa-sdk's ActionExecutor) or an action server.

Both are Rasa `EndpointConfig`s, so Rasa's own `RemoteAction` (and its forms' validation actions) call them
unchanged through `request(json=...)`. Each call is timed (`gateway_action_duration_seconds`) and bounded by
`bots.languages.<lang>.action_timeout_seconds`. A call that cannot give Rasa a usable answer (server down
or refusing, slower than the timeout, malformed answer, unknown action, the action raising) is counted in
`gateway_action_errors_total` and recorded for the guard (gateway/agents/action_guard.py), which drops the
turn. A rejection (rasa-sdk's ActionExecutionRejection, HTTP 400) is no failure: other policies predict.

Imports Rasa at import time: import this module lazily.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import jsonschema
import orjson
from rasa.core.actions.action import ActionExecutionRejection
from rasa.utils.endpoints import EndpointConfig
from rasa_sdk.interfaces import ActionExecutionRejection as SdkRejection
from rasa_sdk.interfaces import ActionNotFoundException

from gateway import metrics
from gateway.agents.action_guard import record_failure
from gateway.agents.speedups import action_result_validator
from gateway.errors import ActionFailed, ConfigError

if TYPE_CHECKING:
    from gateway.agents.action_modules import ActionCode
    from gateway.agents.custom_actions import ActionClient

logger = logging.getLogger(__name__)

IN_PROCESS = "in_process"
HTTP = "http"


def empty_result() -> dict[str, Any]:
    return {"events": [], "responses": []}


class ActionCallError(Exception):
    """An action call that cannot give Rasa a usable answer; `reason` is the metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


def dumps(value: Any) -> bytes:
    """JSON for an action server; trackers can hold numpy numbers (NLU confidences)."""
    return orjson.dumps(value, default=str, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


class ActionEndpoint(EndpointConfig):  # type: ignore[misc]
    """An action endpoint whose failures are counted and recorded for the guard."""

    mode = ""

    def __init__(self, lang: str, timeout: float, config: EndpointConfig) -> None:
        super().__init__(
            config.url,
            config.params,
            config.headers,
            config.basic_auth,
            config.token,
            config.token_name,
            config.cafile,
            **config.kwargs,
        )
        self.lang = lang
        self.timeout = timeout

    async def request(self, method: str = "post", subpath: str | None = None, **kwargs: Any) -> Any:
        body = kwargs.get("json")
        if not isinstance(body, dict):  # only RemoteAction calls an action endpoint
            raise ActionFailed(f"bot {self.lang}: unexpected action endpoint call {method} {subpath}")
        name = str(body.get("next_action") or "")
        started = time.perf_counter()
        try:
            return await self.call(name, body)
        except ActionCallError as exc:
            return self._failed(name, exc)
        except ActionExecutionRejection:
            raise  # not a failure: the action declined, other policies predict (Rasa's contract)
        except Exception as exc:  # a bug on our side of the call must not let Rasa carry on half-done
            logger.exception("bot %s: calling custom action %s failed", self.lang, name)
            return self._failed(name, ActionCallError("error", f"{type(exc).__name__}: {exc}"))
        finally:
            metrics.ACTION_DURATION.labels(self.lang, name, self.mode).observe(time.perf_counter() - started)

    async def call(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError  # pragma: no cover - each mode implements it

    def _failed(self, name: str, exc: ActionCallError) -> dict[str, Any]:
        metrics.ACTION_ERRORS.labels(self.lang, name, exc.reason).inc()
        logger.warning("bot %s: custom action %s failed (%s): %s", self.lang, name, exc.reason, exc)
        if not record_failure(f"{name} ({exc.reason})"):
            raise ActionFailed(f"custom action {name} failed: {exc.reason}")
        return empty_result()  # Rasa finishes this action with no events; the guard then drops the turn


class InProcessActions(ActionEndpoint):
    """`actions_module`: the bot's actions run in this process, on the turn's loop, through rasa-sdk.

    The tracker state is the dict Rasa builds for an action server, handed over without JSON or HTTP.
    """

    mode = IN_PROCESS

    def __init__(self, lang: str, timeout: float, config: EndpointConfig, code: ActionCode) -> None:
        super().__init__(lang, timeout, config)
        self.code = code

    async def call(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            result = await asyncio.wait_for(self.code.executor.run(body), self.timeout)
        except ActionNotFoundException as exc:
            raise ActionCallError("unknown_action", f"{self.code.source} defines no action {name!r}") from exc
        except SdkRejection as exc:
            raise ActionExecutionRejection(exc.action_name, exc.message) from exc
        except asyncio.TimeoutError as exc:
            raise ActionCallError("timeout", f"no answer within {self.timeout:g}s") from exc
        except Exception as exc:  # the bot's own code failed: keep its traceback in the log
            logger.exception("bot %s: custom action %s raised", self.lang, name)
            raise ActionCallError("error", f"{type(exc).__name__}: {exc}") from exc
        return result if isinstance(result, dict) else empty_result()


class HttpActions(ActionEndpoint):
    """`url`: the bot's actions run on an action server, called on the gateway's shared client."""

    mode = HTTP

    def __init__(self, lang: str, timeout: float, config: EndpointConfig, client: ActionClient) -> None:
        super().__init__(lang, timeout, config)
        self.client = client
        self._ssl: ssl.SSLContext | None = None
        if self.cafile:
            try:
                self._ssl = ssl.create_default_context(cafile=self.cafile)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"bot {lang}: action_endpoint.cafile {self.cafile}: {exc}") from exc
        self._auth = (
            aiohttp.BasicAuth(self.basic_auth["username"], self.basic_auth["password"])
            if self.basic_auth
            else None
        )

    async def call(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.client.run(self._post(name, body))

    async def _post(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        session = self.client.session
        if session is None:
            raise ActionCallError("unreachable", "the gateway's action client is not running")
        headers = {"Content-Type": "application/json", **self.headers}
        extra: dict[str, Any] = {"ssl": self._ssl} if self._ssl is not None else {}
        try:
            async with session.post(
                self.url,
                data=dumps(body),
                headers=headers,
                params=self.combine_parameters(),
                auth=self._auth,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                **extra,
            ) as resp:
                status, raw = resp.status, await resp.read()
        except asyncio.TimeoutError as exc:
            raise ActionCallError("timeout", f"{self.url} did not answer within {self.timeout:g}s") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ActionCallError("unreachable", f"{self.url}: {type(exc).__name__}: {exc}") from exc
        return _answer(name, status, raw, str(self.url))

    async def listed_actions(self) -> frozenset[str] | None:
        """The actions a rasa-sdk server lists on GET /actions, or None when it cannot tell now."""
        url = str(self.url or "").rstrip("/")
        if not url.endswith("/webhook"):
            return None
        listing = url[: -len("/webhook")] + "/actions"

        async def fetch() -> Any:
            session = self.client.session
            if session is None:
                return None
            timeout = aiohttp.ClientTimeout(total=self.timeout)
            extra: dict[str, Any] = {"ssl": self._ssl} if self._ssl is not None else {}
            async with session.get(
                listing, params=self.combine_parameters(), auth=self._auth, timeout=timeout, **extra
            ) as resp:
                return orjson.loads(await resp.read()) if resp.status == 200 else None

        try:
            data = await self.client.run(fetch())
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, orjson.JSONDecodeError) as exc:
            logger.warning("bot %s: cannot list the actions of %s: %s", self.lang, listing, exc)
            return None
        if not isinstance(data, list):
            return None
        return frozenset(
            item["name"] for item in data if isinstance(item, dict) and isinstance(item.get("name"), str)
        )


def _answer(name: str, status: int, raw: bytes, url: str) -> dict[str, Any]:
    """The action server's answer as Rasa expects it, or ActionCallError naming what is wrong."""
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        data = None
    if status == 400 and isinstance(data, dict) and isinstance(data.get("action_name"), str):
        raise ActionExecutionRejection(data["action_name"], data.get("error"))
    if status == 404:
        raise ActionCallError("unknown_action", f"{url} does not know action {name!r}")
    if status != 200:
        raise ActionCallError(f"status_{status}", f"{url} answered HTTP {status}")
    if not isinstance(data, dict):
        raise ActionCallError("bad_response", f"{url} answered something that is not a JSON object")
    error = jsonschema.exceptions.best_match(action_result_validator().iter_errors(data))
    if error is not None:
        raise ActionCallError("bad_response", f"{url}: {error.message}")
    return data
