"""Micro-batched policy prediction: concurrent turns of one model run TED once over all their trackers.

A policy prediction is the core target of the model's graph for one tracker: every policy predicts, then
the ensemble picks. Memoization and rule policies are dictionary look-ups; TED is a TensorFlow call whose
cost hardly grows with its batch. So a batch of trackers runs TED's inference once over all of them
(`ted_predict_many`, Rasa's `TEDPolicy.predict_action_probabilities` step by step with one
`run_inference`, each tracker then reading its own row), and the rest of the graph per tracker with TED's
node answered from that (SequentialGraphRunner's `known`). TED end-to-end (text features of the last
user message, a second example per tracker, precomputations) keeps Rasa's per-tracker path.

The processor asks for a prediction synchronously inside `_run_prediction_loop`, so the swapped class
fetches it beforehand where it can await: on entering the loop and after each action that lets the loop
predict again. `_predict_next_with_tracker` uses the fetched prediction only for that very tracker in
that very state (its event count), otherwise it predicts as Rasa does.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gateway.agents.batching import MicroBatcher
from gateway.agents.graph_runner import SequentialGraphRunner

logger = logging.getLogger(__name__)

# (tracker, its event count, prediction) fetched ahead; and whether the prediction loop is running.
_NEXT: contextvars.ContextVar[tuple[Any, int, Any] | None] = contextvars.ContextVar("next", default=None)
_IN_LOOP: contextvars.ContextVar[bool] = contextvars.ContextVar("in_prediction_loop", default=False)
_CLASSES: dict[type, type] = {}
_TED_NEEDS = frozenset({"tracker", "domain", "rule_only_data"})


def _row(value: Any, row: int, size: int) -> Any:
    """`value`'s part for example `row` of a batch of `size` (arrays are cut along their first axis)."""
    if isinstance(value, np.ndarray) and value.ndim > 0 and value.shape[0] == size:
        return value[row : row + 1]
    if isinstance(value, dict):
        return {key: _row(item, row, size) for key, item in value.items()}
    return value


def _layout(states: list[dict[str, list[Any]]]) -> tuple[Any, ...]:
    """What must agree for trackers to share an inference: states, attributes and feature shapes.

    TED pads each feature array to the batch's longest separately, so trackers whose states carry
    different attributes would be padded out of step with each other (TensorFlow refuses the concat).
    """
    return tuple(
        tuple(
            (attribute, tuple((f.type, f.origin, f.features.shape) for f in features))
            for attribute, features in sorted(state.items())
        )
        for state in states
    )


def ted_predict_many(ted: Any, trackers: Sequence[Any], domain: Any, rule_only_data: Any) -> list[Any] | None:
    """TED's prediction for each tracker, one inference per feature layout; None: use Rasa's own path."""
    if ted.model is None:
        return None
    groups: dict[tuple[Any, ...], list[tuple[int, Any]]] = {}
    for index, tracker in enumerate(trackers):
        one = ted._featurize_tracker(tracker, domain, None, rule_only_data=rule_only_data)
        if len(one) != 1:  # a second, text-featurised example (end-to-end): Rasa picks between the two
            return None
        groups.setdefault(_layout(one[0]), []).append((index, one[0]))
    predictions: list[Any] = [None] * len(trackers)
    for group in groups.values():
        done = _infer(ted, [states for _, states in group], domain)
        if done is None:
            return None
        for (index, _), prediction in zip(group, done, strict=True):
            predictions[index] = prediction
    return predictions


def _infer(ted: Any, features: list[Any], domain: Any) -> list[Any] | None:
    """Rasa's `TEDPolicy.predict_action_probabilities` after featurising, for several trackers at once."""
    from rasa.shared.constants import DIAGNOSTIC_DATA
    from rasa.utils import train_utils
    from rasa.utils.tensorflow import constants as tfc

    size = len(features)
    outputs = ted.model.run_inference(ted._create_model_data(features), batch_size=size)
    similarities, scores = outputs["similarities"], outputs["scores"]
    if not isinstance(similarities, np.ndarray) or not isinstance(scores, np.ndarray):
        return None
    diagnostic = outputs.get(DIAGNOSTIC_DATA)
    predictions = []
    for row in range(size):
        # the last prediction in the dialogue sequence, this tracker's row
        confidence, is_e2e = ted._pick_confidence(
            scores[row : row + 1, -1, :], similarities[row : row + 1, -1, :], domain
        )
        ranking_length = ted.config[tfc.RANKING_LENGTH]
        if 0 < ranking_length < len(confidence):
            renormalize = (
                ted.config[tfc.RENORMALIZE_CONFIDENCES] and ted.config[tfc.MODEL_CONFIDENCE] == tfc.SOFTMAX
            )
            _, confidence = train_utils.rank_and_mask(
                confidence, ranking_length=ranking_length, renormalize=renormalize
            )
        predictions.append(
            ted._prediction(
                confidence.tolist(),
                is_end_to_end_prediction=is_e2e,
                optional_events=None,  # entities come from end-to-end predictions only
                diagnostic_data=_row(diagnostic, row, size) if diagnostic is not None else None,
            )
        )
    return predictions


def batch_policies(processor: Any, max_batch: int, observe: Callable[[int], None] | None = None) -> bool:
    """Make `processor` predict concurrent turns' next actions in batches; True if it does (TED models)."""
    from rasa.core.policies.ted_policy import TEDPolicy
    from rasa.engine.constants import PLACEHOLDER_TRACKER

    runner = processor.graph_runner
    target = processor.model_metadata.core_target
    if max_batch < 2 or not isinstance(runner, SequentialGraphRunner) or not target:
        return False
    schema = runner._graph_schema.minimal_graph_schema([target])
    nodes = runner._instantiated_nodes
    teds = [name for name in schema.nodes if isinstance(nodes[name]._component, TEDPolicy)]
    if len(teds) != 1:
        return False
    (ted_name,) = teds
    needs = dict(schema.nodes[ted_name].needs)
    if set(needs) != _TED_NEEDS or needs["tracker"] != PLACEHOLDER_TRACKER:
        return False  # precomputations (end-to-end) or another layout: per tracker
    shared = (needs["domain"], needs["rule_only_data"])
    shared_schema = runner._graph_schema.minimal_graph_schema(list(shared))
    if any(PLACEHOLDER_TRACKER in node.needs.values() for node in shared_schema.nodes.values()):
        return False
    ted = nodes[ted_name]._component

    def predict(trackers: Sequence[Any]) -> Sequence[Any]:
        if len(trackers) > 1:
            given = runner.run(inputs={}, targets=list(shared))
            many = ted_predict_many(ted, trackers, given[shared[0]], given[shared[1]])
            if many is not None:
                return [
                    runner.run({PLACEHOLDER_TRACKER: tracker}, [target], known={ted_name: prediction})[target]
                    for tracker, prediction in zip(trackers, many, strict=True)
                ]
        return [runner.run({PLACEHOLDER_TRACKER: tracker}, [target])[target] for tracker in trackers]

    processor.policy_batcher = MicroBatcher(predict, max_batch, observe)
    base = type(processor)
    processor.__class__ = _CLASSES.get(base) or _CLASSES.setdefault(base, _batching_class(base))
    return True


def _batching_class(base: type) -> type:
    class PolicyBatchingProcessor(base):  # type: ignore[misc, valid-type]
        async def _run_prediction_loop(self, output_channel: Any, tracker: Any) -> None:
            in_loop = _IN_LOOP.set(True)
            try:
                await self._fetch_prediction(tracker)
                await super()._run_prediction_loop(output_channel, tracker)
            finally:
                _IN_LOOP.reset(in_loop)
                _NEXT.set(None)

        async def _run_action(self, action: Any, tracker: Any, *args: Any, **kwargs: Any) -> Any:
            another = await super()._run_action(action, tracker, *args, **kwargs)
            if another and _IN_LOOP.get():
                await self._fetch_prediction(tracker)
            return another

        async def _fetch_prediction(self, tracker: Any) -> None:
            """What `_predict_next_with_tracker` will be asked next, computed in a batch now."""
            _NEXT.set(None)
            if tracker.followup_action or not self._should_handle_message(tracker):
                return  # no prediction, or no graph run, comes next
            if self.is_action_limit_reached(
                tracker, self.should_predict_another_action(tracker.latest_action_name)
            ):
                return  # the loop stops before predicting
            prediction = await self.policy_batcher.submit(tracker)
            _NEXT.set((tracker, len(tracker.events), prediction))

        def _predict_next_with_tracker(self, tracker: Any) -> Any:
            fetched = _NEXT.get()
            _NEXT.set(None)
            if (
                fetched is None
                or tracker.followup_action
                or fetched[0] is not tracker
                or fetched[1] != len(tracker.events)
            ):
                return super()._predict_next_with_tracker(tracker)
            return fetched[2]

    PolicyBatchingProcessor.__name__ = PolicyBatchingProcessor.__qualname__ = f"PolicyBatching{base.__name__}"
    return PolicyBatchingProcessor
