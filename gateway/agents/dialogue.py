"""Running one user turn, or a throwaway probe turn, through a loaded Rasa agent."""

from __future__ import annotations

import copy
import functools
import uuid
from typing import Any

from gateway.agents.loader import LoadedModel
from gateway.errors import BotNotReady, StorageError, TrackerStoreUnavailable

BotMessages = list[dict[str, Any]]


@functools.cache
def _channel_class() -> Any:
    """A collecting channel that also records which response (utter_*) produced each message."""
    from rasa.core.channels.channel import CollectingOutputChannel

    class ActionCollectingOutputChannel(CollectingOutputChannel):  # type: ignore[misc]
        async def send_response(self, recipient_id: str, message: dict[str, Any]) -> None:
            before = len(self.messages)
            await super().send_response(recipient_id, message)
            action = message.get("utter_action")
            if action:
                for collected in self.messages[before:]:
                    collected["utter_action"] = action

    return ActionCollectingOutputChannel


def _output_channel() -> Any:
    return _channel_class()()


async def run_turn(
    model: LoadedModel,
    sender_id: str,
    text: str,
    metadata: dict[str, Any] | None = None,
    input_channel: str = "google",
) -> BotMessages:
    """Handle `text` for `sender_id` and return the bot's messages (Rasa's collected dicts)."""
    from rasa.core.channels.channel import UserMessage

    processor = model.agent.processor
    if processor is None:
        raise BotNotReady(f"model {model.name} has no processor")
    output = _output_channel()
    message = UserMessage(text, output, sender_id, input_channel=input_channel, metadata=metadata or {})
    try:
        await processor.handle_message(message)
    except StorageError:
        raise
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise TrackerStoreUnavailable(f"tracker store failed for {sender_id}: {exc}") from exc
    return list(output.messages)


def answered(messages: BotMessages) -> bool:
    """Whether a turn said anything a user would get: text, an image or a custom (rich) payload."""
    return any(m.get("text") or m.get("image") or m.get("custom") for m in messages)


async def probe(model: LoadedModel, text: str) -> BotMessages:
    """Run `text` through the model on a fresh in-memory tracker; real conversations are untouched."""
    from rasa.core.channels.channel import UserMessage
    from rasa.core.tracker_store import InMemoryTrackerStore

    processor = model.agent.processor
    if processor is None:
        raise BotNotReady(f"model {model.name} has no processor")
    # A shallow copy shares the loaded graph but gets its own throwaway tracker store.
    throwaway = copy.copy(processor)
    throwaway.tracker_store = InMemoryTrackerStore(processor.domain)
    output = _output_channel()
    sender = f"probe-{uuid.uuid4().hex}"
    await throwaway.handle_message(UserMessage(text, output, sender, input_channel="probe"))
    return list(output.messages)
