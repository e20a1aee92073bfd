"""Micro-batched NLU: concurrent turns of one model parse their messages in one run of its NLU graph.

Rasa's NLU graph already works on lists: `__message__` is a list of `UserMessage`s, every NLU component's
`process(messages)` goes over the list (tokenizers, featurizers, RegexMessageHandler for "/intent"
payloads, EntitySynonymMapper and FallbackClassifier hold no state between messages) and returns them in
order. Only `DIETClassifier.process` runs TensorFlow once per message; `diet_process` gives its node one
`run_inference` over the whole list instead, the per-message `_predict_label` then reads that message's
row. Entity recognition (variable-length tag sequences) and diagnostic data keep Rasa's per-message
loop: none of the bots uses them, and their padding would need splitting we do not test.

The processor's class is swapped (as in stages.py) for one whose `parse_message` awaits the batch, then
lets Rasa's own `parse_message` build the parse data from the parsed `Message` (retrieval intents,
unseen-feature warnings and logging stay Rasa's).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Sequence
from typing import Any

from gateway.agents.batching import MicroBatcher

logger = logging.getLogger(__name__)

# The message parsed by a batch, and what it parsed to, while Rasa's parse_message runs for it.
_PARSED: contextvars.ContextVar[tuple[Any, Any] | None] = contextvars.ContextVar(
    "batched_parse", default=None
)
_CLASSES: dict[type, type] = {}


def diet_process(self: Any, messages: list[Any]) -> list[Any]:
    """`DIETClassifier.process` with one inference over all `messages` (intent classification only)."""
    from rasa.nlu.classifiers.diet_classifier import DIETClassifier
    from rasa.shared.nlu.constants import INTENT
    from rasa.utils.tensorflow.constants import ENTITY_RECOGNITION, INTENT_CLASSIFICATION

    config = self.component_config
    if (
        len(messages) < 2
        or self.model is None
        or not config[INTENT_CLASSIFICATION]
        or config[ENTITY_RECOGNITION]
        or self._execution_context.should_add_diagnostic_data
    ):
        return DIETClassifier.process(self, messages)  # type: ignore[no-any-return]
    model_data = self._create_model_data(messages, training=False)
    if model_data.is_empty() or model_data.number_of_examples() != len(messages):
        return DIETClassifier.process(self, messages)  # type: ignore[no-any-return]
    scores = self.model.run_inference(model_data, batch_size=len(messages))["i_scores"]
    for row, message in enumerate(messages):
        label, ranking = self._predict_label({"i_scores": scores[row : row + 1]})
        message.set(INTENT, label, add_to_output=True)
        message.set("intent_ranking", ranking, add_to_output=True)
    return messages


def _nlu_nodes(processor: Any) -> dict[str, Any] | None:
    """The graph nodes the NLU target needs, or None when they cannot be run over a list of messages."""
    from rasa.engine.constants import PLACEHOLDER_TRACKER

    runner = processor.graph_runner
    nodes = getattr(runner, "_instantiated_nodes", None)
    schema = getattr(runner, "_graph_schema", None)
    target = processor.model_metadata.nlu_target
    if nodes is None or schema is None or not target:
        return None
    needed = schema.minimal_graph_schema([target]).nodes
    if any(PLACEHOLDER_TRACKER in node.needs.values() for node in needed.values()):
        return None  # a component that reads the conversation: one tracker per run
    return {name: nodes[name] for name in needed}


def batch_nlu(processor: Any, max_batch: int, observe: Callable[[int], None] | None = None) -> bool:
    """Make `processor` parse concurrent messages in batches of up to `max_batch`; True if it does.

    Only models with a DIETClassifier batch: a light pipeline is pure Python under the GIL, so a list
    saves little and the worker-thread hop would cost more.
    """
    from rasa.engine.constants import PLACEHOLDER_MESSAGE
    from rasa.nlu.classifiers.diet_classifier import DIETClassifier

    if max_batch < 2 or processor.http_interpreter is not None:
        return False
    nodes = _nlu_nodes(processor)
    diets = [node for node in (nodes or {}).values() if isinstance(node._component, DIETClassifier)]
    if not diets:
        return False
    for node in diets:
        node._fn = diet_process  # GraphNode calls `_fn(component, **inputs)`
    runner = processor.graph_runner
    target = processor.model_metadata.nlu_target

    def parse(messages: Sequence[Any]) -> Sequence[Any]:
        results = runner.run(inputs={PLACEHOLDER_MESSAGE: list(messages)}, targets=[target])
        return results[target]  # type: ignore[no-any-return]

    processor.nlu_batcher = MicroBatcher(parse, max_batch, observe)
    base = type(processor)
    processor.__class__ = _CLASSES.get(base) or _CLASSES.setdefault(base, _batching_class(base))
    return True


def _batching_class(base: type) -> type:
    class BatchingProcessor(base):  # type: ignore[misc, valid-type]
        async def parse_message(
            self, message: Any, tracker: Any = None, only_output_properties: bool = True
        ) -> Any:
            if self.http_interpreter is not None:
                return await super().parse_message(message, tracker, only_output_properties)
            parsed = await self.nlu_batcher.submit(message)
            token = _PARSED.set((message, parsed))
            try:
                return await super().parse_message(message, tracker, only_output_properties)
            finally:
                _PARSED.reset(token)

        def _parse_message_with_graph(
            self, message: Any, tracker: Any, only_output_properties: bool = True
        ) -> dict[str, Any]:
            from rasa.shared.nlu.constants import (
                ENTITIES,
                INTENT,
                INTENT_NAME_KEY,
                PREDICTED_CONFIDENCE_KEY,
                TEXT,
            )

            batched = _PARSED.get()
            if batched is None or batched[0] is not message:
                return super()._parse_message_with_graph(  # type: ignore[no-any-return]
                    message, tracker, only_output_properties
                )
            # Rasa's own construction (MessageProcessor._parse_message_with_graph) from the batch's Message.
            parse_data: dict[str, Any] = {
                TEXT: "",
                INTENT: {INTENT_NAME_KEY: None, PREDICTED_CONFIDENCE_KEY: 0.0},
                ENTITIES: [],
            }
            parse_data.update(batched[1].as_dict(only_output_properties=only_output_properties))
            return parse_data

    BatchingProcessor.__name__ = BatchingProcessor.__qualname__ = f"Batching{base.__name__}"
    return BatchingProcessor
