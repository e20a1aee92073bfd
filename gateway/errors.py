"""The one exception hierarchy of the gateway; library errors are translated at the boundary."""

from __future__ import annotations


class GatewayError(Exception):
    """Base class of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """A setting is missing or invalid; the message names the key, the value and what is allowed."""


class ActionModuleError(ConfigError):
    """A bot's custom action code cannot be imported or registered; the message names the file and line."""


class BadRequest(GatewayError):
    """A client sent something we cannot answer; becomes a 4xx with this message as the reason."""

    status = 400

    def __init__(self, reason: str, *, status: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class UnknownBot(GatewayError):
    """No bot is configured for the requested language."""


class BotNotReady(GatewayError):
    """The bot exists but has no model loaded yet (or its only model failed)."""


class TrainingError(GatewayError):
    """Training a bot failed; the message names the bot folder and the cause."""


class BotFolderMissing(TrainingError, ConfigError):
    """A configured language has no bot folder: a configuration error (exit code 2), not a broken bot."""


class DeliveryError(GatewayError):
    """A delivery step (story tests, quality gate, change detection) failed; the message says which."""


class ModelError(GatewayError):
    """A model archive could not be found, verified or loaded."""


class ModelRejected(ModelError):
    """A model archive failed verification (checksum, signature, unsafe member) and was not loaded."""


class InvalidModelName(ModelRejected, ValueError):
    """A model name or sha256 from outside is not a plain archive name / 64 hex digits."""


class ModelSignatureInvalid(ModelRejected):
    """A model archive is unsigned, or not signed by a key this gateway trusts."""


class ModelRefusedBefore(ModelRejected):
    """The very same archive (name and sha256) already failed to load here; it is not tried again."""


class ModelProbeFailed(ModelError):
    """A freshly loaded model failed its warm-up probe turn, so it was not swapped in."""


class ActionFailed(GatewayError):
    """A custom action could not run (server down, timeout, bad answer...); the turn is dropped whole."""


class StorageError(GatewayError):
    """A storage backend (Redis, S3, local disk) failed; the message names the backend and key."""


class TrackerStoreUnavailable(StorageError):
    """The tracker store could not be reached; the turn is refused with a friendly prompt."""


class ModelStoreError(StorageError):
    """The model store could not be reached or does not hold the requested object."""


class ModelNotFound(ModelStoreError):
    """The model store does not hold the requested model."""


class EventBusError(StorageError):
    """The event bus could not be reached."""


class ActiveModelConflict(StorageError):
    """The active model changed while we were acting on it (another admin or publisher won)."""


class AuthError(GatewayError):
    """A request failed authentication (bad/missing Google JWT or admin token)."""


class Refused(AuthError):
    """A channel refused a request's credentials; `label` is a bounded metric label, `text` the reason."""

    def __init__(self, label: str, text: str, *, status: int = 401) -> None:
        super().__init__(text)
        self.label = label
        self.text = text
        self.status = status
